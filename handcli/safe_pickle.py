"""The one unpickler for pickles that come from datasets or users (HO-3D metas, MANO models).

A pickle can name any importable callable and call it while loading (``__reduce__``), so
``pickle.load`` on a downloaded file runs whatever the file says. :func:`load_pickle` resolves only the
exact ``(module, name)`` pairs listed in ``ALLOWED``: plain builtin containers and numbers, the numpy
functions that rebuild arrays and scalars, and scipy.sparse matrix classes (the official MANO files hold
their joint regressor as one). There are no module wildcards: ``numpy.f2py``, ``numpy.testing``,
``builtins.eval``... are refused like ``os.system``.

chumpy classes (the official MANO files are Python 2 pickles of chumpy objects) are never imported: each
listed chumpy name resolves to :class:`ChumpyStub`, an inert holder of the pickled state whose
``array()`` returns the numpy value inside.

Any refused name, truncated stream or malformed opcode raises ``InputError`` naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from handcli.errors import InputError

_BUILTIN_TYPES = ("object", "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str",
                  "bytes", "bytearray", "bool", "slice", "range")
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1.x and 2.x spellings
_SPARSE = ("csc_matrix", "csr_matrix", "coo_matrix")

#: every global a safe pickle may name, as exact (module, name) pairs
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(m, n) for m in ("builtins", "__builtin__") for n in _BUILTIN_TYPES]
    + [("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),  # protocol 0/1 object rebuild
       ("_codecs", "encode")]  # bytes in protocol-2 pickles written by Python 3
    + [(m, n) for m in _NUMPY_CORE for n in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]  # protocol 5 arrays
    + [(m, n) for n in _SPARSE for m in ("scipy.sparse", f"scipy.sparse.{n[:3]}", f"scipy.sparse._{n[:3]}")]
)

#: chumpy classes seen in MANO/SMPL pickles; all become :class:`ChumpyStub` (chumpy is never imported)
CHUMPY: frozenset[tuple[str, str]] = frozenset(
    [("chumpy.ch", n) for n in ("Ch", "MatVecMult")]
    + [("chumpy.reordering", n) for n in ("Select", "transpose", "Reorder", "Concatenate", "Permute",
                                          "Rollaxis", "Reshape", "Transpose")]
    + [("chumpy.ch_ops", n) for n in ("add", "subtract", "multiply", "divide", "dot", "sum")]
)


class ChumpyStub:
    """Stands in for a chumpy object in a pickle; ``array()`` returns its value as numpy."""

    def __init__(self, *args, **kwargs):
        self.__dict__["_state"] = {}

    def __setstate__(self, state):
        self.__dict__["_state"] = state if isinstance(state, dict) else {"x": state}

    def array(self) -> np.ndarray:
        st = self._state
        for key in ("x", "a"):  # Ch stores its value in 'x'; select/transpose-like wrappers hold 'a'
            if key in st:
                val = st[key]
                val = val.array() if isinstance(val, ChumpyStub) else val
                arr = val.toarray() if hasattr(val, "toarray") else np.asarray(val)
                if "idxs" in st and key == "a":
                    arr = arr.ravel()[np.asarray(st["idxs"]).ravel()].reshape(st.get("preferred_shape", (-1,)))
                return arr
        raise ValueError(f"chumpy object without a value (state keys: {sorted(st)})")


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` globals (and :data:`CHUMPY` names to the stub)."""

    def find_class(self, module: str, name: str):
        if (module, name) in CHUMPY:
            return ChumpyStub
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise RefusedGlobal(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        raise RefusedGlobal("refusing a persistent id")


def loads(data: bytes, *, encoding: str = "latin1"):
    """Unpickle ``data`` with :class:`SafeUnpickler` (pickle errors propagate)."""
    return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()


def load_pickle(path: str | Path, what: str = "pickle", *, encoding: str = "latin1"):
    """Read a pickle from a dataset or a user with :class:`SafeUnpickler`.

    ``encoding='latin1'`` reads Python 2 pickles (their str are bytes; numpy arrays need latin1).
    A refused global, a malformed or truncated file raises ``InputError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh, encoding=encoding).load()
    except RefusedGlobal as e:
        raise InputError(f"unsafe {what}: {e} (only plain data and numpy arrays are read)", path=path) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as e:
        raise InputError(f"malformed or truncated {what} ({type(e).__name__}: {e})", path=path) from None
