"""No code runs from an input file: hostile pickles (HO-3D metas, MANO files) and checkpoints are refused.

Every payload, if it ran, would create a marker file; the tests check the refusal (exit 2 through the CLI)
and that the marker does not exist.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from handcli import safe_pickle
from handcli.errors import InputError


# ------------------------------------------------------------------------------------------------- payloads
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _call(module: str, name: str, *args: str) -> bytes:
    """Protocol-2 opcodes that call ``module.name(*args)`` while unpickling (built by hand: the target need not
    be importable here)."""
    tup = {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(args)]
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + b"".join(_str(a) for a in args) + tup + b"R"


def _nested(payload: bytes) -> bytes:
    """``{"handPose": [payload], "meta": {"x": payload}}``: the call hides inside containers."""
    return (b"\x80\x02}(" + _str("handPose") + b"](" + payload + b"e" + _str("meta") + b"}(" + _str("x") + payload
            + b"uu.")


def _payloads(marker) -> dict[str, bytes]:
    m = str(marker)
    code = f"open({m!r}, 'w').write('pwned')"
    return {
        "os.system": _call("os", "system", f"touch {m}"),
        "posix.system": _call("posix", "system", f"touch {m}"),
        "builtins.exec": _call("builtins", "exec", code),
        "builtins.eval": _call("builtins", "eval", code),
        "__builtin__.eval (py2 name)": _call("__builtin__", "eval", code),
        "builtins.getattr": _call("builtins", "getattr", "os", "system"),
        "numpy.testing runstring": _call("numpy.testing._private.utils", "runstring", code),
        "numpy.f2py run_main": _call("numpy.f2py.f2py2e", "run_main", "--help"),
        "numpy.f2py compile": _call("numpy.f2py", "compile", f"touch {m}"),
        "numpy.distutils exec_command": _call("numpy.distutils.exec_command", "exec_command", f"touch {m}"),
        "numpy.lib.format (not an allowed numpy name)": _call("numpy.lib.format", "read_array", m),
        "numpy.load": _call("numpy", "load", m),
        "copyreg._reconstructor with os.system": (b"ccopy_reg\n_reconstructor\n" + b"cos\nsystem\n"
                                                   + b"c__builtin__\nobject\n" + _str(f"touch {m}") + b"\x87R"),
        "chumpy name that is not a chumpy class": _call("chumpy.ch", "system", f"touch {m}"),
    }


class _Reduce:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_every_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    for label, payload in _payloads(marker).items():
        for data in (payload + b".", _nested(payload)):
            p = tmp_path / "x.pkl"
            p.write_bytes(b"\x80\x02" + data if not data.startswith(b"\x80") else data)
            with pytest.raises(InputError, match="refusing to load global") as e:
                safe_pickle.load_pickle(p)
            assert str(p) in str(e.value), label
            assert not marker.exists(), label
    for proto in (0, 2, 4, 5):  # a real __reduce__, every protocol, nested
        p = tmp_path / f"r{proto}.pkl"
        p.write_bytes(pickle.dumps({"a": [1, {"b": _Reduce(marker)}]}, protocol=proto))
        with pytest.raises(InputError, match="refusing"):
            safe_pickle.load_pickle(p)
        assert not marker.exists()


def test_allow_list_is_exact_names_only():
    for module, _name in safe_pickle.ALLOWED:
        assert "*" not in module
    modules = {m for m, _ in safe_pickle.ALLOWED}
    assert not any(m.startswith(("numpy.f2py", "numpy.testing", "numpy.distutils", "numpy.lib", "os", "posix",
                                 "subprocess")) for m in modules)
    assert ("builtins", "eval") not in safe_pickle.ALLOWED and ("builtins", "getattr") not in safe_pickle.ALLOWED


def test_plain_data_and_arrays_still_load(tmp_path):
    from handcli.synth.ho3d import py2_pickle_bytes

    arrs = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "i64": np.arange(3), "u8": np.zeros(4, np.uint8),
            "bool": np.array([True, False])}
    doc = {**arrs, "none": None, "s": "x", "n": 3, "f": 1.5, "t": (1, 2), "l": [1, "a"], "set": {1},
           "scalar": np.float64(2.5), "iscalar": np.int32(7), "nested": {"k": [np.ones(2)]}}
    for proto in (0, 2, 4, 5):
        got = safe_pickle.loads(pickle.dumps(doc, protocol=proto))
        for k, v in arrs.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype
        assert got["none"] is None and got["t"] == (1, 2) and got["scalar"] == 2.5 and got["iscalar"] == 7
    # a python-2 HO-3D meta (byte strings, latin1) through the HO-3D reader
    from handcli.data.ho3d import load_pickle

    p = tmp_path / "0000.pkl"
    p.write_bytes(py2_pickle_bytes({"handPose": np.arange(48.0), "objName": "011_banana", "handBeta": None}))
    d = load_pickle(p)
    assert d["objName"] == "011_banana" and d["handBeta"] is None
    np.testing.assert_array_equal(d["handPose"], np.arange(48.0))


def test_mano_reader_uses_the_same_unpickler(tmp_path):
    from handcli.hand.mano_io import load_mano_dict

    marker = tmp_path / "pwned"
    for label, payload in _payloads(marker).items():
        p = tmp_path / "MANO_RIGHT.pkl"
        p.write_bytes(_nested(payload))
        with pytest.raises(InputError, match="refusing"):
            load_mano_dict(p)
        assert not marker.exists(), label
    assert "chumpy" not in sys.modules


def _run(args, monkeypatch, capsys):
    from handcli import cli

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_preprocess_ho3d_with_a_hostile_meta_exits_2(tmp_path, monkeypatch, capsys):
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path / "ho3d"
    write_ho3d(root, HO3DSynthConfig(frames=2, cameras=1, single=None, seed=1))
    marker = tmp_path / "pwned"
    metas = sorted(root.glob("train/*/meta/*.pkl"))
    metas[-1].write_bytes(_nested(_payloads(marker)["os.system"]))
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = _run(["preprocess", "ho3d", root, "-o", out / "c.h5"], monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and metas[-1].name in lines[0] and "os.system" in lines[0], err
    assert stdout == "" and list(out.iterdir()) == [] and not marker.exists()


# ------------------------------------------------------------------------------------------------- checkpoints
TINY_SET = ["--set", "rays_per_step=64", "--set", "n_samples=8", "--set", "hidden=16", "--set", "layers=2",
            "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=8", "--set", "ec_layers=2"]


@pytest.fixture(scope="module")
def tiny_run(tiny_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("saferun") / "run"
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "train", str(tiny_cache), "-o", str(run), "--steps",
                        "1", *TINY_SET], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return run


def test_checkpoint_is_tensors_and_plain_data(tiny_run):
    state = torch.load(tiny_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 1 and isinstance(state["model"], dict) and isinstance(state["optimizer"], dict)


@pytest.mark.parametrize("stage", ["render", "resume", "mesh"])
def test_checkpoint_with_a_pickled_object_exits_2(tiny_run, tiny_cache, tmp_path, monkeypatch, capsys, stage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    state["extra"] = _Reduce(marker)
    torch.save(state, run / "checkpoint.pt")
    before = (run / "checkpoint.pt").read_bytes()
    args = {"render": ("render", run, tiny_cache, "-o", tmp_path / "r", "--max-views", "1"),
            "resume": ("train", tiny_cache, "-o", run, "--resume", "--steps", "2"),
            "mesh": ("mesh", run, "--frame", "0", "-o", tmp_path / "m.ply")}[stage]
    rc, out, err = _run(args, monkeypatch, capsys)
    assert rc == 2 and "checkpoint.pt" in err and "refusing" in err and "Traceback" not in err, err
    assert not marker.exists() and out == ""
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.ply").exists()


def test_truncated_checkpoint_exits_2(tiny_run, tiny_cache, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:100])
    rc, out, err = _run(["render", run, tiny_cache, "-o", tmp_path / "r", "--max-views", "1"], monkeypatch, capsys)
    assert rc == 2 and "checkpoint.pt" in err and "Traceback" not in err, err


def test_crafted_sparse_state_is_an_input_error(tmp_path):
    """An allowed class with a nonsense state (attributes set by BUILD) is bad input, not a crash."""
    import scipy.sparse as sp

    from handcli.hand.mano_io import load_mano_dict

    m = sp.csc_matrix(np.eye(3))
    m.indptr = "not an index array"
    p = tmp_path / "MANO_RIGHT.pkl"
    p.write_bytes(pickle.dumps({"J_regressor": m}, protocol=2))
    with pytest.raises(InputError, match="malformed MANO value") as e:
        load_mano_dict(p)
    assert str(p) in str(e.value)
