"""Fuzz suite of the bad-input contract (docs/validation.md), parametrised over (stage, input class).

Each case builds one broken input from the tiny shared fixtures (a damaged copy of the cache, run folder,
dataset, mesh or MANO file, or an out-of-range option), runs the CLI and asserts the contract: exit 2, one
line naming the file and the field, no traceback, no output written, and every file that existed before
left byte-for-byte as it was. The stages run in-process (``invoke`` maps exceptions exactly as
``handcli.cli.main`` does); ``test_real_entry_point`` checks the same through ``python -m handcli.cli``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError

TINY_SET = ["--set", "rays_per_step=64", "--set", "n_samples=8", "--set", "hidden=16", "--set", "layers=2",
            "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=8", "--set", "ec_layers=2",
            "--set", "pose_hidden=8", "--set", "pose_layers=2", "--set", "pose_embed=8", "--set", "voxel=0.01",
            "--set", "feat_dim=4"]


def invoke(*args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the CLI run in-process, with ``main``'s mapping: InputError -> 2 and
    ``error: <message>``; any other exception -> 1 with its traceback."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(r.exception, InputError):
        return 2, r.stdout, f"error: {r.exception}"
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return 1, r.stdout, "".join(traceback.format_exception(r.exception))
    return r.exit_code, r.stdout, r.stderr


def snapshot(*dirs: Path) -> dict[str, str]:
    """Every file under ``dirs`` -> sha256 (hidden temp files included: none may be left behind)."""
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_contract(code: int, out: str, err: str, names: list[str], fields: tuple[str, ...] | None,
                    before: dict, after: dict, outputs: list[Path]) -> None:
    """Exit 2, one ``error:`` line naming each of ``names`` and one of ``fields``, nothing written or lost."""
    assert code == 2, f"exit {code}: {err[-3000:]}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in names:
        assert n in lines[0], (n, lines[0])
    if fields is not None:
        assert any(f in lines[0] for f in fields), (fields, lines[0])
    assert out.strip() == "", out
    for p in outputs:
        assert not p.exists(), f"{p} written on failure"
    assert after == before, "files changed, appeared or vanished: " + str(
        sorted(set(after.items()) ^ set(before.items())))


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tiny_cache, tmp_path_factory) -> dict:
    """A copy of the tiny cache, a 2-step HandNeRF run trained on it and a renders folder of one view."""
    d = tmp_path_factory.mktemp("fuzzbase")
    cache = d / "cache.h5"
    shutil.copy(tiny_cache, cache)
    run = d / "run"
    code, out, err = invoke("train", cache, "-o", run, "--steps", "2", "--log-every", "1", "--ckpt-every", "1",
                            "--cameras", "400002,400009", *TINY_SET)
    assert code == 0, err
    renders = d / "renders"
    code, out, err = invoke("render", run, cache, "-o", renders, "--max-views", "1")
    assert code == 0, err
    return {"dir": d, "cache": cache, "run": run, "renders": renders}


# ------------------------------------------------------------------------------- cache input classes
def _edit(name: str, index, value):
    def f(p: Path) -> None:
        with h5py.File(p, "r+") as h:
            a = h[name][()]
            a[index] = value
            h[name][...] = a
    return f


def _drop(name: str):
    def f(p: Path) -> None:
        with h5py.File(p, "r+") as h:
            del h[name]
    return f


def _replace(name: str, fn):
    def f(p: Path) -> None:
        with h5py.File(p, "r+") as h:
            a = fn(h[name][()])
            del h[name]
            h.create_dataset(name, data=a)
    return f


def _attr(key: str, value):
    def f(p: Path) -> None:
        with h5py.File(p, "r+") as h:
            if value is None:
                del h.attrs[key]
            else:
                h.attrs[key] = value
    return f


def _skew_rotation(p: Path) -> None:
    with h5py.File(p, "r+") as h:
        m = h["cameras/world_to_cam"][()]
        m[0, :3, :3] *= 1.5
        h["cameras/world_to_cam"][...] = m


def _truncate(frac: float):
    def f(p: Path) -> None:
        data = p.read_bytes()
        p.write_bytes(data[:int(len(data) * frac)])
    return f


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())


BITROT = ("views/rgb", "views/label", "frames/right/vertices", "frames/left/vertices", "frames/right/joints",
          "frames/left/joints")


def _bitrot(p: Path) -> None:
    """Random bytes in the middle of the stored first chunk of every large dataset (as a failing disk)."""
    spots = []
    with h5py.File(p, "r") as h:
        for name in BITROT:
            info = h[name].id.get_chunk_info(0)
            spots.append(info.byte_offset + info.size // 2)
    rng = np.random.default_rng(1)
    with open(p, "r+b") as fh:
        for off in spots:
            fh.seek(off)
            fh.write(rng.integers(0, 256, 8, dtype=np.uint8).tobytes())


CACHE_CASES = {
    "no-cameras-group": (_drop("cameras"), ("cameras",)),
    "no-K": (_drop("cameras/K"), ("cameras/K",)),
    "nan-intrinsics": (_edit("cameras/K", (0, 0, 0), np.nan), ("cameras/K",)),
    "zero-focal": (_edit("cameras/K", (1, 1, 1), 0.0), ("cameras/K",)),
    "inf-translation": (_edit("cameras/world_to_cam", (0, 0, 3), np.inf), ("cameras/world_to_cam",)),
    "non-orthonormal-rotation": (_skew_rotation, ("cameras/world_to_cam",)),
    "zero-image-size": (_edit("cameras/width", 0, 0), ("cameras/width",)),
    "view-size-mismatch": (_edit("views/width", 0, 7), ("views/height",)),
    "camera-index-out-of-range": (_edit("views/camera", 0, 99), ("views/camera",)),
    "frame-index-out-of-range": (_edit("views/frame", 0, -1), ("views/frame",)),
    "pixels-outside-buffer": (_edit("views/offset", -1, 10 ** 9), ("views/offset",)),
    "nan-near-far": (_edit("views/near_far", (0, 1), np.nan), ("views/near_far",)),
    "no-rgb": (_drop("views/rgb"), ("views/rgb",)),
    "short-label-buffer": (_replace("views/label", lambda a: a[:len(a) // 2]), ("views/label",)),
    "joints-wrong-shape": (_replace("frames/right/joints", lambda a: a[:, :20]), ("frames/right/joints",)),
    "faces-out-of-range": (_edit("hand_model/right/faces", (0, 0), 10 ** 6), ("hand_model/right/faces",)),
    "wrong-schema": (_attr("schema", "handcli.cache/0"), ("schema",)),
    "no-schema": (_attr("schema", None), ("schema",)),
    "truncated-file": (_truncate(0.5), None),
    "garbage-file": (_garbage, None),
    "empty-file": (_truncate(0.0), None),
    "bitrot": (_bitrot, BITROT),
}

# stage -> argv builder (workspace, cache, base) and its output paths
CACHE_STAGES = {
    "targets-depth": lambda ws, c, b: (["targets", "depth", c, "-o", ws / "depth.h5"], [ws / "depth.h5"]),
    "targets-features": lambda ws, c, b: (["targets", "features", c, "-o", ws / "f.h5", "--dim", "4"],
                                          [ws / "f.h5"]),
    "train": lambda ws, c, b: (["train", c, "-o", ws / "run", "--steps", "1", *TINY_SET], [ws / "run"]),
    "adapt": lambda ws, c, b: (["adapt", b["run"], c, "-o", ws / "adapted", "--steps", "1"], [ws / "adapted"]),
    "render": lambda ws, c, b: (["render", b["run"], c, "-o", ws / "r", "--max-views", "1"], [ws / "r"]),
    "eval": lambda ws, c, b: (["eval", b["renders"], c, "-o", ws / "m.json"], [ws / "m.json", ws / "m_sheet.png"]),
    "inspect": lambda ws, c, b: (["inspect", c, "--json"], []),
    "cache-merge": lambda ws, c, b: (["cache", "merge", c, "-o", ws / "all.h5"], [ws / "all.h5"]),
    "mesh": lambda ws, c, b: (["mesh", b["run"], c, "--frame", "0", "-o", ws / "m"], [ws / "m"]),
}
# handnerf has no mesh extraction: `mesh` stops at "no mesh extraction" without reading the damaged chunks
_CACHE_PARAMS = [(s, k) for s in CACHE_STAGES for k in CACHE_CASES if not (s == "mesh" and k == "bitrot")]


@pytest.mark.parametrize("stage,case", _CACHE_PARAMS)
def test_damaged_cache(base, tmp_path, stage, case):
    breaker, fields = CACHE_CASES[case]
    ws = tmp_path / "ws"
    ws.mkdir()
    cache = ws / "bad.h5"
    shutil.copy(base["cache"], cache)
    breaker(cache)
    argv, outputs = CACHE_STAGES[stage](ws, cache, base)
    before = snapshot(ws, base["dir"])
    code, out, err = invoke(*argv)
    assert_contract(code, out, err, [str(cache)], fields, before, snapshot(ws, base["dir"]), outputs)


@pytest.mark.parametrize("stage", ["train", "render", "adapt"])
def test_bad_hand_model_arrays_in_cache(base, tmp_path, stage):
    """The cache's stored hand model (rebuilt by the stages that pose it) is checked like a MANO file."""
    ws = tmp_path / "ws"
    ws.mkdir()
    cache = ws / "bad.h5"
    shutil.copy(base["cache"], cache)
    _replace("hand_model/right/mano/posedirs", lambda a: a[..., :-9])(cache)
    argv, outputs = CACHE_STAGES[stage](ws, cache, base)
    before = snapshot(ws, base["dir"])
    code, out, err = invoke(*argv)
    assert_contract(code, out, err, [str(cache)], ("hand_model/right/mano/posedirs",), before,
                    snapshot(ws, base["dir"]), outputs)


def test_merging_a_shard_twice_is_refused(base, tmp_path):
    """Frame keys stay unique: the same shard twice is an error naming the second copy."""
    other = tmp_path / "again.h5"
    shutil.copy(base["cache"], other)
    before = snapshot(tmp_path, base["dir"])
    code, out, err = invoke("cache", "merge", base["cache"], other, "-o", tmp_path / "all.h5")
    assert_contract(code, out, err, [str(other)], ("frames/key",), before, snapshot(tmp_path, base["dir"]),
                    [tmp_path / "all.h5"])


def _arrays(path: Path) -> dict:
    with h5py.File(path, "r") as h:
        out = {}
        h.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("where", [0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
def test_random_bytes_anywhere_are_found_or_harmless(base, tmp_path, where):
    """16 random bytes at a fraction of the file: `cache merge` (reads every dataset) either fails with
    exit 2 naming the file, or the bytes hit unused space and every array reads back unchanged."""
    bad = tmp_path / "bad.h5"
    shutil.copy(base["cache"], bad)
    data = bytearray(bad.read_bytes())
    off = int(len(data) * where)
    data[off:off + 16] = np.random.default_rng(int(where * 100)).integers(0, 256, 16, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.h5"
    code, o, err = invoke("cache", "merge", bad, "-o", out)
    if code == 2:
        assert err.startswith(f"error: {bad}") and len(err.splitlines()) == 1 and not out.exists(), err
        return
    assert code == 0, err
    clean, got = _arrays(base["cache"]), _arrays(out)
    assert clean.keys() == got.keys()
    for k in clean:
        assert np.array_equal(clean[k], got[k]), f"{k} changed silently"


def test_every_numeric_dataset_carries_a_checksum(base, tmp_path):
    """Cache and targets files: Fletcher-32 on every numeric dataset (strings cannot carry filters)."""
    depth = tmp_path / "depth.h5"
    assert invoke("targets", "depth", base["cache"], "-o", depth)[0] == 0
    for path in (base["cache"], depth):
        unprotected = []
        with h5py.File(path, "r") as h:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O" and obj.ndim and not obj.fletcher32:
                    unprotected.append(name)
            h.visititems(visit)
            assert unprotected == [], (path, unprotected)
    code, out, err = invoke("inspect", base["cache"], "--json")
    assert code == 0 and json.loads(out)["num_views"] > 0


def test_bitrot_in_targets_file(base, tmp_path):
    """Random bytes inside a depth-targets chunk: training reports the targets file and dataset."""
    depth = tmp_path / "depth.h5"
    assert invoke("targets", "depth", base["cache"], "-o", depth)[0] == 0
    with h5py.File(depth, "r") as h:
        info = h["depth"].id.get_chunk_info(0)
    with open(depth, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\x13\x37" * 4)
    before = snapshot(tmp_path, base["dir"])
    code, out, err = invoke("train", base["cache"], "-o", tmp_path / "run", "--steps", "1", "--depth", depth,
                            *TINY_SET)
    assert_contract(code, out, err, [str(depth)], ("depth",), before, snapshot(tmp_path, base["dir"]),
                    [tmp_path / "run"])


# ---------------------------------------------------------------------------------- run folder classes
def _ckpt(fn):
    def f(run: Path) -> None:
        p = run / "checkpoint.pt"
        p.write_bytes(fn(p.read_bytes()))
    return f


def _foreign_ckpt(run: Path) -> None:
    import torch

    torch.save({"weights": [1, 2, 3]}, run / "checkpoint.pt")


def _cfg(fn):
    def f(run: Path) -> None:
        p = run / "config.json"
        doc = json.loads(p.read_text())
        fn(doc)
        p.write_text(json.dumps(doc))
    return f


def _set_config(key, value):
    return _cfg(lambda d: d["config"].__setitem__(key, value))


RUN_CASES = {
    "ckpt-truncated": (_ckpt(lambda b: b[:len(b) // 2]), "checkpoint.pt", None),
    "ckpt-garbage": (_ckpt(lambda b: bytes(np.random.default_rng(2).integers(0, 256, len(b), dtype=np.uint8))),
                     "checkpoint.pt", None),
    "ckpt-empty": (_ckpt(lambda b: b""), "checkpoint.pt", None),
    "ckpt-foreign": (_foreign_ckpt, "checkpoint.pt", ("model",)),
    "config-not-json": (lambda run: (run / "config.json").write_text("{\"schema\": "), "config.json", None),
    "config-lr-string": (_set_config("lr", "fast"), "config.json", ("config.lr",)),
    "config-negative-steps": (_set_config("steps", -5), "config.json", ("config.steps",)),
    "config-nan": (_set_config("ec_scale", float("nan")), "config.json", ("config.ec_scale",)),
    "config-unknown-key": (_set_config("bogus", 1), "config.json", ("config.bogus",)),
    "config-skips-string": (_set_config("skips", "abc"), "config.json", ("config.skips",)),
    "config-bool-as-int": (_set_config("error_correction", 1), "config.json", ("config.error_correction",)),
    "config-unknown-method": (_cfg(lambda d: d.__setitem__("method", "nerf9000")), "config.json", ("method",)),
    "config-no-data": (_cfg(lambda d: d.pop("data")), "config.json", ("data",)),
    "config-seed-string": (_cfg(lambda d: d.__setitem__("seed", "0")), "config.json", ("seed",)),
}

RUN_STAGES = {
    "render": lambda ws, run, b: (["render", run, b["cache"], "-o", ws / "r", "--max-views", "1"], [ws / "r"]),
    "adapt": lambda ws, run, b: (["adapt", run, b["cache"], "-o", ws / "a", "--steps", "1"], [ws / "a"]),
    "train-resume": lambda ws, run, b: (["train", b["cache"], "-o", run, "--resume", "--steps", "3"], []),
}


@pytest.mark.parametrize("stage,case", [(s, k) for s in RUN_STAGES for k in RUN_CASES])
def test_damaged_run(base, tmp_path, stage, case):
    breaker, fname, fields = RUN_CASES[case]
    ws = tmp_path / "ws"
    ws.mkdir()
    run = ws / "run"
    shutil.copytree(base["run"], run)
    breaker(run)
    argv, outputs = RUN_STAGES[stage](ws, run, base)
    before = snapshot(ws, base["dir"])
    code, out, err = invoke(*argv)
    assert_contract(code, out, err, [str(run / fname)], fields, before, snapshot(ws, base["dir"]), outputs)


# ------------------------------------------------------------------------------------ option classes
OPTION_CASES = {
    "train-steps-negative": (["train", "{cache}", "-o", "{ws}/run", "--steps", "-5"], "--steps"),
    "train-steps-zero": (["train", "{cache}", "-o", "{ws}/run", "--steps", "0"], "--steps"),
    "train-log-every-zero": (["train", "{cache}", "-o", "{ws}/run", "--log-every", "0"], "--log-every"),
    "train-time-budget-zero": (["train", "{cache}", "-o", "{ws}/run", "--time-budget", "0"], "--time-budget"),
    "train-set-lr-notjson": (["train", "{cache}", "-o", "{ws}/run", "--set", "lr=notjson"], "--set lr"),
    "train-set-lr-negative": (["train", "{cache}", "-o", "{ws}/run", "--set", "lr=-1"], "--set lr"),
    "train-set-lr-nan": (["train", "{cache}", "-o", "{ws}/run", "--set", "lr=NaN"], "--set lr"),
    "train-set-samples-float": (["train", "{cache}", "-o", "{ws}/run", "--set", "n_samples=2.5"], "--set n_samples"),
    "train-set-skips-scalar": (["train", "{cache}", "-o", "{ws}/run", "--set", "skips=5"], "--set skips"),
    "train-set-unknown": (["train", "{cache}", "-o", "{ws}/run", "--set", "bogus=1"], "bogus"),
    "train-set-no-equals": (["train", "{cache}", "-o", "{ws}/run", "--set", "lr"], "set"),
    "train-frames-out-of-range": (["train", "{cache}", "-o", "{ws}/run", "--frames", "100"], "--frames"),
    "train-frames-garbage": (["train", "{cache}", "-o", "{ws}/run", "--frames", "abc"], "selection"),
    "train-frames-reversed": (["train", "{cache}", "-o", "{ws}/run", "--frames", "5-2"], "selection"),
    "train-unknown-preset": (["train", "{cache}", "-o", "{ws}/run", "--preset", "nope"], "preset"),
    "train-unknown-method": (["train", "{cache}", "-o", "{ws}/run", "--method", "nope"], "method"),
    "render-frames-out-of-range": (["render", "{run}", "{cache}", "-o", "{ws}/r", "--frames", "100"], "--frames"),
    "render-max-views-zero": (["render", "{run}", "{cache}", "-o", "{ws}/r", "--max-views", "0"], "--max-views"),
    "render-orbit-negative": (["render", "{run}", "{cache}", "-o", "{ws}/r", "--orbit", "-1"], "--orbit"),
    "render-unknown-camera": (["render", "{run}", "{cache}", "-o", "{ws}/r", "--views", "999"], "cameras"),
    "mesh-resolution-zero": (["mesh", "{run}", "--frame", "0", "-o", "{ws}/m", "--resolution", "0"],
                             "--resolution"),
    "mesh-resolution-huge": (["mesh", "{run}", "--frame", "0", "-o", "{ws}/m", "--resolution", "100000"],
                             "--resolution"),
    "adapt-steps-negative": (["adapt", "{run}", "{cache}", "-o", "{ws}/a", "--steps", "-5"], "--steps"),
    "adapt-lr-zero": (["adapt", "{run}", "{cache}", "-o", "{ws}/a", "--lr", "0"], "--lr"),
    "adapt-frames-out-of-range": (["adapt", "{run}", "{cache}", "-o", "{ws}/a", "--frames", "100"], "--frames"),
    "features-dim-zero": (["targets", "features", "{cache}", "-o", "{ws}/f.h5", "--dim", "0"], "--dim"),
    "features-batch-zero": (["targets", "features", "{cache}", "-o", "{ws}/f.h5", "--batch", "0"], "--batch"),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_option(base, tmp_path, case):
    argv, field = OPTION_CASES[case]
    ws = tmp_path / "ws"
    ws.mkdir()
    subst = {"{cache}": str(base["cache"]), "{run}": str(base["run"]), "{ws}": str(ws)}
    args = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        args.append(a)
    before = snapshot(ws, base["dir"])
    code, out, err = invoke(*args)
    assert_contract(code, out, err, [], (field,), before, snapshot(ws, base["dir"]),
                    [ws / "run", ws / "r", ws / "m", ws / "a", ws / "f.h5"])


class EmptyMesher:
    """A registered method whose surfaces are all empty (an untrained field)."""

    capabilities = frozenset({"mesh"})

    @classmethod
    def from_run(cls, run, cache, device):
        from handcli.data.cache import Cache

        m = cls()
        m.cache = Cache(cache)
        return m

    def extract_meshes(self, frame, resolution):
        import trimesh

        return {"right": trimesh.Trimesh(), "left": trimesh.Trimesh()}


@pytest.mark.parametrize("frame,field", [("100", "--frame"), ("0", "frame")])
def test_mesh_frame_out_of_range_or_empty_surface(base, tmp_path, monkeypatch, frame, field):
    from handcli import registry
    from handcli.methods.base import write_run_config
    from handcli.methods.handnerf.model import PRESETS

    monkeypatch.setitem(registry.METHODS, "emptymesher", f"{__name__}:EmptyMesher")
    run = tmp_path / "run"
    run.mkdir()
    write_run_config(run, "emptymesher", "fast", PRESETS["fast"], {"cache": str(base["cache"])}, 0, "test")
    before = snapshot(tmp_path, base["dir"])
    code, out, err = invoke("mesh", run, base["cache"], "--frame", frame, "-o", tmp_path / "m")
    named = str(base["cache"]) if field == "--frame" else str(run)
    assert_contract(code, out, err, [named], (field,), before, snapshot(tmp_path, base["dir"]), [tmp_path / "m"])


# -------------------------------------------------------------------------------- image input classes
SEQ = "0000_rh_wave"


@pytest.fixture(scope="module")
def ih_copy(synth_ih, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzzih") / "ih"
    shutil.copytree(synth_ih, d)
    return d


def _one_image(root: Path) -> Path:
    return sorted((root / "images").rglob(f"{SEQ}/cam*/*.jpg"))[0]


def _prep(root: Path, out: Path, *extra) -> tuple[int, str, str]:
    return invoke("preprocess", "interhand", root, "-o", out, "--seq", SEQ, "--scale", "0.25", *extra)


@pytest.mark.parametrize("case", ["truncated", "garbage", "header-only", "png-as-jpg-truncated"])
def test_bad_image(ih_copy, tmp_path, case):
    img = _one_image(ih_copy)
    orig = img.read_bytes()
    try:
        if case == "truncated":
            img.write_bytes(orig[:len(orig) * 2 // 3])
        elif case == "garbage":
            img.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        elif case == "header-only":
            img.write_bytes(orig[:600])
        else:
            import cv2

            ok, png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(orig, np.uint8), cv2.IMREAD_COLOR))
            img.write_bytes(png.tobytes()[:-40])
        out = tmp_path / "c.h5"
        before = snapshot(tmp_path, ih_copy)
        code, o, err = _prep(ih_copy, out)
        assert_contract(code, o, err, [str(img)], ("decode",), before, snapshot(tmp_path, ih_copy), [out])
    finally:
        img.write_bytes(orig)


def test_skip_bad_images_counts_and_reports(ih_copy, tmp_path):
    """--skip-bad-images: the truncated view is left out, counted and reported; the cache has the rest."""
    img = _one_image(ih_copy)
    orig = img.read_bytes()
    try:
        img.write_bytes(orig[:len(orig) // 2])
        code, out, err = _prep(ih_copy, tmp_path / "skip.h5", "--skip-bad-images")
        assert code == 0, err
        assert "1 bad image" in " ".join(err.split()), err
        from handcli.data.cache import Cache

        img.write_bytes(orig)
        code, out, err = _prep(ih_copy, tmp_path / "good.h5")
        assert code == 0, err
        with Cache(tmp_path / "skip.h5") as a, Cache(tmp_path / "good.h5") as b:
            assert a.num_views == b.num_views - 1
    finally:
        img.write_bytes(orig)


def test_every_image_bad_is_an_empty_output_error(ih_copy, tmp_path):
    """--skip-bad-images that leaves no frame: exit 2 and no cache (an empty cache is never written)."""
    imgs = sorted((ih_copy / "images").rglob(f"{SEQ}/cam*/*.jpg"))
    saved = {p: p.read_bytes() for p in imgs}
    try:
        for p, b in saved.items():
            p.write_bytes(b[:len(b) // 2])
        out = tmp_path / "c.h5"
        before = snapshot(tmp_path)
        code, o, err = _prep(ih_copy, out, "--skip-bad-images")
        assert_contract(code, o, err, [str(ih_copy)], ("frames",), before, snapshot(tmp_path), [out])
        assert "bad image" in err
    finally:
        for p, b in saved.items():
            p.write_bytes(b)


@pytest.fixture(scope="module")
def ho_root(tmp_path_factory) -> Path:
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path_factory.mktemp("fuzzho") / "ho"
    write_ho3d(root, HO3DSynthConfig(frames=2, cameras=2, single=None, seed=4))
    return root


@pytest.mark.parametrize("kind", ["depth", "seg"])
def test_wrongly_sized_depth_or_seg(ho_root, tmp_path, kind):
    """HO-3D depth must match its image; seg must be full or half size (v3): anything else is an error."""
    import cv2

    root = tmp_path / "ho"
    shutil.copytree(ho_root, root)
    files = sorted(root.rglob(f"{kind}/*.png"))
    assert files, kind
    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(files[0]), cv2.resize(img, (img.shape[1] - 30, img.shape[0] - 10)))
    out = tmp_path / "c.h5"
    before = snapshot(tmp_path)
    code, o, err = invoke("preprocess", "ho3d", root, "-o", out, "--depth")
    assert_contract(code, o, err, [str(files[0])], (f"{kind if kind == 'depth' else 'segmentation'} image is",),
                    before, snapshot(tmp_path), [out])


def test_wrongly_sized_dexycb_depth(tmp_path):
    """DexYCB aligned depth must be 640x480 like its colour image; another size is an error, not a resize."""
    import cv2

    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    root = tmp_path / "dex"
    write_dexycb(root, DexYCBSynthConfig(subjects=1, seqs=1, frames=3, cameras=1, distractors=0,
                                         unannotated_frame=False, seed=6))
    files = sorted(root.rglob("aligned_depth_to_color_*.png"))
    assert files
    for p in files:
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(p), cv2.resize(d, (320, 240), interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "c.h5"
    before = snapshot(tmp_path)
    code, o, err = invoke("preprocess", "dexycb", root, "-o", out, "--depth")
    assert_contract(code, o, err, ["aligned_depth_to_color_"], ("depth image is 320x240",), before,
                    snapshot(tmp_path), [out])


# --------------------------------------------------------------------------------- MANO input classes
def _mano_like(V: int = 40, J: int = 16) -> dict:
    rng = np.random.default_rng(0)
    return {"v_template": rng.normal(size=(V, 3)), "shapedirs": rng.normal(size=(V, 3, 10)),
            "posedirs": rng.normal(size=(V, 3, 9 * (J - 1))), "J_regressor": rng.random((J, V)),
            "weights": rng.random((V, J)), "kintree_table": np.stack([np.arange(J) - 1, np.arange(J)]),
            "f": rng.integers(0, V, (60, 3)), "hands_components": rng.normal(size=(45, 3 * (J - 1))),
            "hands_mean": np.zeros(3 * (J - 1))}


def _mano_edit(key, fn):
    def f(d):
        d[key] = fn(d[key])
    return f


MANO_CASES = {
    "v-template-2d": (_mano_edit("v_template", lambda a: a[:, :2]), "v_template"),
    "shapedirs-wrong-vertices": (_mano_edit("shapedirs", lambda a: a[:-1]), "shapedirs"),
    "posedirs-wrong-joints": (_mano_edit("posedirs", lambda a: a[:, :, :-9]), "posedirs"),
    "regressor-transposed": (_mano_edit("J_regressor", lambda a: a.T), "J_regressor"),
    "weights-nan": (_mano_edit("weights", lambda a: np.where(a > 0.5, np.nan, a)), "weights"),
    "faces-out-of-range": (_mano_edit("f", lambda a: a + 100), "f"),
    "faces-negative": (_mano_edit("f", lambda a: a - 100), "f"),
    "faces-two-columns": (_mano_edit("f", lambda a: a[:, :2]), "f"),
    "hands-mean-short": (_mano_edit("hands_mean", lambda a: a[:10]), "hands_mean"),
    "kintree-1d": (_mano_edit("kintree_table", lambda a: a[0]), "kintree_table"),
    "string-array": (_mano_edit("hands_components", lambda a: np.array(["x"] * 3)), "hands_components"),
}


@pytest.mark.parametrize("case", list(MANO_CASES))
def test_bad_mano_file(tmp_path, case):
    fn, key = MANO_CASES[case]
    d = _mano_like()
    fn(d)
    src = tmp_path / "MANO_RIGHT.pkl"
    src.write_bytes(pickle.dumps(d, protocol=4))
    out = tmp_path / "out.pkl"
    before = snapshot(tmp_path)
    code, o, err = invoke("mano", "convert", src, "-o", out)
    assert_contract(code, o, err, [str(src)], (key,), before, snapshot(tmp_path), [out])


def test_valid_mano_like_file_converts(tmp_path):
    """The shape rules accept a consistent model of any size (not only 778 vertices)."""
    src = tmp_path / "MANO_RIGHT.pkl"
    src.write_bytes(pickle.dumps(_mano_like(V=55), protocol=4))
    code, out, err = invoke("mano", "convert", src, "-o", tmp_path / "out.pkl")
    assert code == 0, err


# --------------------------------------------------------------------------------- grasp-eval classes
def _ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> Path:
    head = (f"ply\nformat ascii 1.0\nelement vertex {len(verts)}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    body = "".join(f"{x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in verts)
    body += "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)
    path.write_text(head + body)
    return path


def _box():
    import trimesh

    m = trimesh.creation.box(extents=(0.04, 0.04, 0.1))
    return np.asarray(m.vertices), np.asarray(m.faces)


GRASP_CASES = {
    "object-face-out-of-range": ("object", lambda v, f: (v, np.vstack([f, [[0, 1, 99]]])), "faces"),
    "object-huge-coordinate": ("object", lambda v, f: (np.vstack([v, [[1e30, 0, 0]]]), f), "vertices"),
    "object-nan-coordinate": ("object", lambda v, f: (np.vstack([v, [[np.nan, 0, 0]]]), f), "vertices"),
    "hand-face-out-of-range": ("hand", lambda v, f: (v, np.vstack([f, [[0, 1, 1000]]])), "faces"),
    "gt-huge-coordinate": ("gt", lambda v, f: (np.vstack([v, [[0, 1e30, 0]]]), f), "vertices"),
    "gt-points-huge": ("gt-points", None, "points"),
}


@pytest.mark.parametrize("case", list(GRASP_CASES))
def test_bad_grasp_eval_mesh(tmp_path, case):
    which, fn, field = GRASP_CASES[case]
    v, f = _box()
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    obj = _ply(meshes / "object.ply", *(fn(v, f) if which == "object" else (v, f)))
    hand_v = v * 0.5 + [0.2, 0, 0]
    hand = _ply(meshes / "hand.ply", *(fn(hand_v, f) if which == "hand" else (hand_v, f)))
    if which == "gt-points":
        gt = tmp_path / "gt.xyz"
        np.savetxt(gt, np.vstack([v, [[0, 0, 1e30]]]))
    else:
        gt = _ply(tmp_path / "gt.ply", *(fn(v, f) if which == "gt" else (v, f)))
    bad = {"object": obj, "hand": hand, "gt": gt, "gt-points": gt}[which]
    out = tmp_path / "grasp.json"
    before = snapshot(tmp_path)
    code, o, err = invoke("grasp-eval", meshes, "--gt-object", gt, "-o", out, "--samples", "50", "--top-k", "5")
    assert_contract(code, o, err, [str(bad)], (field,), before, snapshot(tmp_path),
                    [out, tmp_path / "grasps.png"])


# ------------------------------------------------------------------------------------ real entry point
def test_real_entry_point(base, tmp_path):
    """Through ``python -m handcli.cli``: exit 2 and exactly one stderr line, for a cache without cameras
    and a bad --set value (the in-process cases above use the same mapping)."""
    cache = tmp_path / "bad.h5"
    shutil.copy(base["cache"], cache)
    _drop("cameras")(cache)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cases = [(["targets", "depth", cache, "-o", tmp_path / "d.h5"], f"{cache}: cameras"),
             (["train", base["cache"], "-o", tmp_path / "run", "--set", "lr=notjson"], "--set lr")]
    for argv, expect in cases:
        r = subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, argv)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
        assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]
