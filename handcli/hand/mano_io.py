"""Read official MANO ``.pkl`` files without chumpy, and write plain-numpy MANO-format pickles.

The official files are Python 2 pickles holding chumpy objects (``chumpy.ch.Ch`` and friends). chumpy does not
import on current Python/numpy; :mod:`handcli.safe_pickle` (the one restricted unpickler) maps the chumpy
classes to an inert stub that keeps its pickled state and exposes the array inside, and refuses every global
outside its exact allow-list, so a hostile pickle cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from handcli.errors import InputError
from handcli.safe_pickle import ChumpyStub, load_pickle

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
                 "hands_components", "hands_mean")


def _to_numpy(val):
    if isinstance(val, ChumpyStub):
        return val.array()
    if hasattr(val, "tocsr") and hasattr(val, "toarray"):  # scipy.sparse stays sparse (smplx accepts it)
        return val.tocsr()
    if isinstance(val, (list, tuple)) and val and all(isinstance(x, (int, float)) for x in val):
        return np.asarray(val)
    return val


def load_mano_dict(path: str | Path) -> dict:
    """Read a MANO-format pickle (official chumpy one or ours) into a dict of numpy arrays.

    ``J_regressor`` may stay scipy.sparse. Raises InputError for unreadable files and missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("MANO model file not found", path=path)
    raw = load_pickle(path, "MANO pickle")
    if not isinstance(raw, dict):
        raise InputError(f"expected a dict in the pickle, found {type(raw).__name__}", path=path)
    try:
        d = {str(k): _to_numpy(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as e:  # a crafted sparse/chumpy state
        raise InputError(f"malformed MANO value ({type(e).__name__}: {e})", path=path) from None
    for key in REQUIRED_KEYS:
        if key not in d:
            raise InputError("missing key in MANO model", path=path, field=key)
    for key in REQUIRED_KEYS:
        if key != "J_regressor":
            d[key] = np.asarray(d[key])
    check_mano_arrays(d, path)
    return d


def check_mano_arrays(d: dict, path: str | Path, prefix: str = "") -> None:
    """``InputError`` naming the key unless the MANO arrays agree: V vertices, J joints (``kintree_table``
    (2, J)), v_template (V, 3), shapedirs (V, 3, S), posedirs (V, 3, 9(J-1)), J_regressor (J, V), weights
    (V, J), f (F, 3) indices in [0, V), hands_components (n, 3(J-1)), hands_mean (3(J-1),); all finite.
    The field named is ``prefix + key``."""

    def bad(key: str, msg: str):
        raise InputError(msg, path=path, field=f"{prefix}{key}")

    def arr(key: str) -> np.ndarray:
        if key not in d:
            bad(key, "missing")
        a = d[key]
        a = a.toarray() if hasattr(a, "toarray") else np.asarray(a)
        if a.dtype.kind not in "biuf":
            bad(key, f"expected a numeric array, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            bad(key, "non-finite values")
        return a

    vt, kt = arr("v_template"), arr("kintree_table")
    if vt.ndim != 2 or vt.shape[1] != 3 or vt.shape[0] < 1:
        bad("v_template", f"shape {vt.shape}, expected (V, 3)")
    if kt.ndim != 2 or kt.shape[0] != 2 or kt.shape[1] < 2:
        bad("kintree_table", f"shape {kt.shape}, expected (2, J)")
    V, J = vt.shape[0], kt.shape[1]
    shapes = {"shapedirs": (V, 3, None), "posedirs": (V, 3, 9 * (J - 1)), "J_regressor": (J, V), "weights": (V, J),
              "f": (None, 3), "hands_components": (None, 3 * (J - 1)), "hands_mean": (3 * (J - 1),)}
    for key, want in shapes.items():
        a = arr(key)
        if a.ndim != len(want) or any(w is not None and s != w for s, w in zip(a.shape, want)):
            exp = ", ".join("n" if w is None else str(w) for w in want)
            bad(key, f"shape {a.shape}, expected ({exp}{',' if len(want) == 1 else ''}) for {V} vertices and "
                f"{J} joints")
    f = arr("f")
    if f.size and (f.min() < 0 or f.max() >= V or (f != np.round(f)).any()):
        bad("f", f"face indices must be integers in [0, {V}), got [{f.min()}, {f.max()}]")


def save_mano_dict(d: dict, path: str | Path) -> None:
    """Write a MANO-format dict as a plain pickle (numpy arrays, scipy.sparse, str, int only)."""
    clean = {k: _to_numpy(v) for k, v in d.items()}
    with open(path, "wb") as fh:
        pickle.dump(clean, fh, protocol=4)


def convert_mano(in_path: str | Path, out_path: str | Path) -> None:
    """Write a chumpy-free copy of an official MANO pickle (same keys, numpy values)."""
    save_mano_dict(load_mano_dict(in_path), out_path)
