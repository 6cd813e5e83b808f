"""Chumpy-free reading of MANO pickles, refusal of hostile pickles, and `handcli mano convert`."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from handcli.errors import InputError
from handcli.hand.mano_io import REQUIRED_KEYS, convert_mano, load_mano_dict, save_mano_dict


def _mano_like(rng: np.random.Generator, v: int = 40) -> dict:
    return {
        "v_template": rng.normal(size=(v, 3)),
        "shapedirs": rng.normal(size=(v, 3, 10)),
        "posedirs": rng.normal(size=(v, 3, 135)),
        "J_regressor": sp.csc_matrix(np.abs(rng.normal(size=(16, v))) * (rng.random((16, v)) < 0.2)),
        "weights": rng.random((v, 16)),
        "kintree_table": np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14],
                                   list(range(16))], dtype=np.int64),
        "f": rng.integers(0, v, size=(60, 3)).astype(np.uint32),
        "hands_components": rng.normal(size=(45, 45)),
        "hands_mean": rng.normal(size=45),
        "bs_style": "lbs",
    }


def _write_chumpy_pickle(d: dict, path, chumpy_keys=("v_template", "shapedirs", "weights", "hands_components"),
                         select_keys=("hands_mean",), protocol: int = 2, numpy_core: bool = True) -> None:
    """Pickle ``d`` with some values wrapped in objects of a fake ``chumpy`` package, like the official files.

    The fake classes exist only while pickling: loading must work without them.
    """
    pkg = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:  # chumpy.ch.Ch keeps its value in the attribute 'x'
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    class Select:  # a chumpy reordering wrapper: value in 'a', selected with 'idxs'
        def __init__(self, a, idxs, shape):
            self.a = a
            self.idxs = idxs
            self.preferred_shape = shape

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select = Ch, Select
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": ch, "chumpy.reordering": reordering})
    try:
        out = dict(d)
        for k in chumpy_keys:
            out[k] = Ch(d[k])
        for k in select_keys:
            arr = np.asarray(d[k])
            out[k] = Select(Ch(arr[::-1].copy()), np.arange(arr.size)[::-1], arr.shape)
        data = pickle.dumps(out, protocol=protocol)
    finally:
        for k, mod in saved.items():
            if mod is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = mod
    if numpy_core and protocol <= 2:  # the official files reference numpy.core (numpy 1.x), not numpy._core
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(data)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickle_loads_without_chumpy(tmp_path, protocol):
    rng = np.random.default_rng(0)
    d = _mano_like(rng)
    path = tmp_path / "MANO_RIGHT.pkl"
    _write_chumpy_pickle(d, path, protocol=protocol)
    assert "chumpy" not in sys.modules
    out = load_mano_dict(path)
    assert "chumpy" not in sys.modules
    for k in REQUIRED_KEYS:
        got = out[k].toarray() if sp.issparse(out[k]) else out[k]
        ref = d[k].toarray() if sp.issparse(d[k]) else d[k]
        assert isinstance(got, np.ndarray), k
        np.testing.assert_array_equal(got, ref, err_msg=k)
    assert sp.issparse(out["J_regressor"])
    assert out["bs_style"] == "lbs"


def test_hostile_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(InputError, match="refusing"):
        load_mano_dict(path)
    assert not marker.exists()


def test_numpy_functions_are_refused(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return (np.save, (str(tmp_path / "x.npy"), np.zeros(2)))

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"a": Sneaky()}))
    with pytest.raises(InputError, match="refusing"):
        load_mano_dict(path)
    assert not (tmp_path / "x.npy").exists()


def test_missing_key_names_file_and_key(tmp_path):
    d = _mano_like(np.random.default_rng(1))
    del d["hands_mean"]
    path = tmp_path / "MANO_LEFT.pkl"
    save_mano_dict(d, path)
    with pytest.raises(InputError) as e:
        load_mano_dict(path)
    assert e.value.field == "hands_mean" and e.value.path == str(path)
    with pytest.raises(InputError, match="not found"):
        load_mano_dict(tmp_path / "nope.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(InputError):
        load_mano_dict(tmp_path / "garbage.pkl")


def test_convert_roundtrip(tmp_path):
    d = _mano_like(np.random.default_rng(2))
    src = tmp_path / "MANO_RIGHT.pkl"
    _write_chumpy_pickle(d, src)
    dst = tmp_path / "clean.pkl"
    convert_mano(src, dst)
    # the converted file is a plain pickle: the standard unpickler reads it (no stubs needed)
    with open(dst, "rb") as fh:
        plain = pickle.load(fh)
    np.testing.assert_array_equal(plain["shapedirs"], d["shapedirs"])
    np.testing.assert_array_equal(plain["hands_mean"], d["hands_mean"])
    assert isinstance(plain["v_template"], np.ndarray)


def test_mano_convert_cli(tmp_path):
    from typer.testing import CliRunner

    from handcli.commands.hand_cmd import mano_app

    d = _mano_like(np.random.default_rng(3))
    src = tmp_path / "MANO_LEFT.pkl"
    _write_chumpy_pickle(d, src)
    dst = tmp_path / "out.pkl"
    runner = CliRunner()
    res = runner.invoke(mano_app, ["convert", str(src), "-o", str(dst)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(dst)
    np.testing.assert_array_equal(load_mano_dict(dst)["weights"], d["weights"])
    # refuses to overwrite without --force, and leaves no temporary file behind
    res = runner.invoke(mano_app, ["convert", str(src), "-o", str(dst)])
    assert isinstance(res.exception, InputError)
    res = runner.invoke(mano_app, ["convert", str(src), "-o", str(dst), "--force"])
    assert res.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANO_LEFT.pkl", "out.pkl"]
