"""A directory of shard caches is one dataset: the same data, batches, runs, renders and metrics as the
merged cache, for every cache-reading stage; plus the documented SLURM job-array recipe (docs/scale.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from handcli.data.cache import Cache, merge_caches
from handcli.data.raybatch import sample_batch, select_views
from handcli.data.shards import ShardedCache, open_cache, shard_paths
from handcli.data.viewpool import ViewPool
from handcli.errors import InputError
from handcli.methods.trainer import step_generator

HANDNERF_TINY = ["--set", "rays_per_step=96", "--set", "n_samples=12", "--set", "hidden=32", "--set", "layers=2",
                 "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=16", "--set", "ec_layers=2",
                 "--set", "voxel=0.01"]
HANDOCC_TINY = ["--set", "rays_per_step=128", "--set", "occ_points=512", "--set", "pool_points=2048", "--set",
                "occ_hidden=16", "--set", "color_hidden=16", "--set", "max_samples=16"]


def handcli(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=900)
    assert r.returncode == 0, (args[:2], r.stderr[-2000:])
    return r.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def shards(synth_ih, tmp_path_factory) -> tuple[Path, Path]:
    """(directory of 3 shard caches, their merged cache) of the tiny dataset at quarter resolution; the shard
    names sort differently as strings (part-10 < part-2) and naturally (part-2 < part-10)."""
    from handcli.data.interhand_preprocess import preprocess_interhand

    root = tmp_path_factory.mktemp("shards")
    d = root / "parts"
    d.mkdir()
    names = ["part-1.h5", "part-2.h5", "part-10.h5"]
    for i, name in enumerate(names):
        preprocess_interhand(synth_ih, d / name, shard=f"{i}/3", scale=0.25)
    merged = root / "merged.h5"
    merge_caches([d / n for n in names], merged)
    return d, merged


def test_shard_directory_reads_as_the_merged_cache(shards):
    d, merged = shards
    assert [p.name for p in shard_paths(d)] == ["part-1.h5", "part-2.h5", "part-10.h5"]
    with open_cache(d) as s, Cache(merged) as m:
        assert isinstance(s, ShardedCache)
        assert (s.num_frames, s.num_views) == (m.num_frames, m.num_views) and len(s.shards) == 3
        vs, vm = s.view_table(), m.view_table()
        for k in vm:
            assert np.array_equal(vs[k], vm[k]), k
        assert [(c["capture"], c["name"]) for c in s.cameras()] == [(c["capture"], c["name"]) for c in m.cameras()]
        for j in range(m.num_views):
            a, b = s.view(j), m.view(j)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        for i in range(m.num_frames):
            assert s.views_of_frame(i) == m.views_of_frame(i)
            fa, fb = s.frame(i), m.frame(i)
            assert fa.key == fb.key and fa.hands.keys() == fb.hands.keys()
            assert all(np.array_equal(fa.hands[h].vertices, fb.hands[h].vertices) for h in fa.hands)
        assert np.array_equal(s.frame_column("capture"), m.frame_column("capture"))
        ss, sm = s.summary(all_frames=True), m.summary(all_frames=True)
        assert {k for k in sm if ss[k] != sm[k]} == {"path", "inputs"}


def test_shard_directory_gives_the_same_ray_batches(shards):
    d, merged = shards
    with open_cache(d) as s, Cache(merged) as m:
        pools = []
        for c in (s, m):
            ids = select_views(c, None, None)
            pools.append(ViewPool(c, ids, list(range(c.num_frames)), capacity=9, refresh_every=2, seed=5))
        for step in range(8):
            out = []
            for p in pools:
                g = step_generator(5, step)
                vs, f = p.draw(step, g)
                out.append(sample_batch(vs, f, 48, 0.5, g))
            assert all(torch.equal(out[0][k], out[1][k]) for k in out[0])


def test_bad_shard_directories(tmp_path, shards):
    with pytest.raises(InputError, match="no shard caches"):
        open_cache(tmp_path)
    d, _ = shards
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "a.h5").write_bytes((d / "part-1.h5").read_bytes())
    (odd / "b.h5").write_bytes((d / "part-2.h5").read_bytes())
    with h5py.File(odd / "b.h5", "r+") as f:
        f.attrs["scale"] = 0.5
    with pytest.raises(InputError, match="differs from a.h5") as e:
        open_cache(odd)
    assert e.value.field == "scale"


@pytest.mark.parametrize("command", ["inspect", "targets-depth", "targets-features"])
def test_cache_reading_commands_accept_a_directory(shards, tmp_path, command):
    d, merged = shards
    if command == "inspect":
        a, b = (json.loads(handcli("inspect", p, "--json")[0]) for p in (d, merged))
        assert a["num_views"] == b["num_views"] and a["frames"] == b["frames"] and a["path"] == str(d)
        return
    kind = command.split("-")[1]
    extra = ["--teacher", "efficientnet-lite0", "--dim", "4"] if kind == "features" else []
    outs = [tmp_path / f"{n}.h5" for n in ("dir", "merged")]
    for p, o in zip((d, merged), outs):
        assert handcli("targets", kind, p, "-o", o, *extra) == [str(o)]
    key = "depth" if kind == "depth" else "features"
    with h5py.File(outs[0]) as fa, h5py.File(outs[1]) as fb:
        assert np.array_equal(fa[key][()], fb[key][()]) and np.array_equal(fa["views/offset"][()],
                                                                           fb["views/offset"][()])


def _without_paths(doc):
    """A JSON document without its path-valued entries (they name the directory or the merged file)."""
    if isinstance(doc, dict):
        return {k: _without_paths(v) for k, v in doc.items() if not (isinstance(v, str) and "/" in v)}
    if isinstance(doc, list):
        return [_without_paths(v) for v in doc]
    return doc


def test_training_steps_on_a_directory_equal_the_merged_cache(shards):
    """Same seed, same model init: the directory and the merged cache give the same losses step by step
    (bounded pool with refreshes, HandOcc: rays, appearance crops and labelled occupancy points)."""
    from dataclasses import replace

    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.model import PRESETS

    d, merged = shards
    cfg = replace(PRESETS["fast"], rays_per_step=64, occ_points=256, pool_points=1024, occ_hidden=16,
                  color_hidden=16, max_samples=16, view_pool=9, pool_refresh=2)
    losses = []
    for cache in (d, merged):
        torch.manual_seed(0)
        m = HandOccMethod(cfg, cache, seed=2)
        assert not m.pool.complete
        out = []
        for step in range(5):
            loss, logs = m.train_step(step, step_generator(2, step))
            out.append((float(loss.detach()), logs["rays"], m.pool.resident_frames))
        losses.append(out)
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_shard_directory_renders_evaluates_and_meshes_like_the_merged_cache(shards, tmp_path):
    """train and adapt take the directory; render, eval (images and geometry) and mesh give the merged
    cache's outputs for the same run. (HandNeRF renders use the run's frame codes only on its training
    cache, so its renders are compared through eval: the same renders score the same on both.)"""
    d, merged = shards
    run, occ = tmp_path / "run", tmp_path / "occ"
    handcli("targets", "depth", d, "-o", tmp_path / "depth.h5")
    handcli("train", d, "-o", run, "--steps", "2", "--log-every", "1", "--depth", tmp_path / "depth.h5",
            "--set", "view_pool=9", "--set", "pool_refresh=1", *HANDNERF_TINY)
    handcli("adapt", run, d, "-o", tmp_path / "adapted", "--steps", "2", "--frames", "0-1")
    # a surface to mesh after 40 tiny steps: the max over the parts (the training blend stays below the 0.5 level
    # that early); this test is about the shard directory, not the occupancy rule
    handcli("train", d, "-o", occ, "--method", "handocc", "--steps", "40", "--log-every", "10", *HANDOCC_TINY,
            "--set", "blend_inference=false")
    res = {}
    handcli("render", run, d, "-o", tmp_path / "nerf_renders", "--max-views", "2")
    for tag, cache in (("dir", d), ("merged", merged)):
        t = tmp_path / tag
        t.mkdir()
        handcli("render", occ, cache, "-o", t / "renders", "--max-views", "2")
        handcli("eval", t / "renders", cache, "-o", t / "metrics.json")
        handcli("eval", tmp_path / "nerf_renders", cache, "-o", t / "metrics_dir_renders.json")
        handcli("mesh", occ, cache, "--frame", "0", "-o", t / "mesh", "--resolution", "16")
        handcli("eval", t / "mesh", cache, "--frame", "0", "-o", t / "geometry.json")
        res[tag] = {"renders": sorted((str(p.relative_to(t)), p.read_bytes()) for p in (t / "renders").rglob("*")
                                      if p.is_file() and p.parent != t / "renders"),  # rgb/, depth/, opacity/
                    "eval": json.loads((t / "metrics.json").read_text())["mean"],
                    "eval_same_renders": json.loads((t / "metrics_dir_renders.json").read_text())["mean"],
                    "mesh": sorted((p.name, p.read_bytes()) for p in (t / "mesh").iterdir()),
                    "geometry": {k: v for k, v in _without_paths(json.loads((t / "geometry.json").read_text())).items()
                                 if k not in ("inputs", "seconds")}}
    for k in res["dir"]:
        assert res["dir"][k] == res["merged"][k], k
    assert res["dir"]["renders"] and res["dir"]["eval"]["psnr_full"] is not None


@pytest.mark.slow
def test_slurm_array_recipe_builds_shards_that_train_like_the_merged_cache(synth_ih, tmp_path):
    """The per-task command of docs/scale.md, run for every SLURM_ARRAY_TASK_ID, writes a shard directory
    equal to the unsharded cache."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    block = doc.split("```bash preprocess-task", 1)[1].split("```", 1)[0]
    script = tmp_path / "task.sh"
    script.write_text(block)
    n = 3
    out = tmp_path / "cache"
    for i in range(n):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": str(n),
               "DATASET": "interhand", "DATA_ROOT": str(synth_ih), "OUT": str(out), "SCALE": "0.25",
               "HANDCLI": f"{sys.executable} -m handcli.cli"}
        r = subprocess.run(["bash", "-eu", str(script)], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    assert len(shard_paths(out)) == n
    from handcli.data.interhand_preprocess import preprocess_interhand

    whole = tmp_path / "whole.h5"
    preprocess_interhand(synth_ih, whole, scale=0.25)
    with open_cache(out) as s, Cache(whole) as w:
        assert (s.num_frames, s.num_views) == (w.num_frames, w.num_views)
        for j in range(w.num_views):
            assert np.array_equal(s.view(j)["rgb"], w.view(j)["rgb"])


def test_ranks_train_on_disjoint_views(tiny_cache, monkeypatch):
    """Under torchrun (RANK/WORLD_SIZE) each rank's pool holds a disjoint part of the training views."""
    from dataclasses import replace

    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.model import PRESETS

    cfg = replace(PRESETS["fast"], supervision="silhouette", occ_hidden=16, color_hidden=16)
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        m = HandOccMethod(cfg, tiny_cache)
        parts.append(set(m.pool.view_ids.tolist()))
    with Cache(tiny_cache) as c:
        assert not parts[0] & parts[1] and parts[0] | parts[1] == set(range(c.num_views))


@pytest.mark.slow
def test_c10d_rendezvous_two_processes(shards, tmp_path):
    """Multi-node style torchrun (c10d rendezvous on localhost, 2 processes) trains on a shard directory."""
    import shutil
    import socket

    d, _ = shards
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    run = tmp_path / "run"
    r = subprocess.run([torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "handcli-test", "-m", "handcli.cli",
                        "train", str(d), "-o", str(run), "--method", "handocc", "--steps", "2", "--log-every", "1",
                        *HANDOCC_TINY], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines() == [str(run)]
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "config.json").read_text())["data"]["cache"] == str(d.resolve())
