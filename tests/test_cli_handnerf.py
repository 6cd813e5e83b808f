"""The HandNeRF CLI chain on a tiny synthetic dataset: targets -> train -> resume -> render -> eval -> inspect;
adapt -> render."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TINY_SET = ["--set", "rays_per_step=96", "--set", "n_samples=12", "--set", "hidden=32", "--set", "layers=2",
            "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=16", "--set", "ec_layers=2",
            "--set", "voxel=0.01"]


def handcli(*args):
    r = subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, (args[:2], r.stderr[-2000:])
    return r.stdout.strip().splitlines()


@pytest.mark.slow
def test_handnerf_cli_chain(tiny_cache, tmp_path):
    depth, feats, run = tmp_path / "depth.h5", tmp_path / "feats.h5", tmp_path / "run"
    assert handcli("targets", "depth", tiny_cache, "-o", depth) == [str(depth)]
    assert handcli("targets", "features", tiny_cache, "-o", feats, "--teacher", "efficientnet-lite0", "--dim",
                   "8") == [str(feats)]
    out = handcli("train", tiny_cache, "-o", run, "--method", "handnerf", "--steps", "3", "--depth", depth,
                  "--features", feats, "--cameras", "400002,400009", "--eval-cameras", "400004", *TINY_SET,
                  "--log-every", "1", "--ckpt-every", "1")
    assert out == [str(run)]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["schema"] == "handcli.run/1" and cfg["method"] == "handnerf" and cfg["config"]["feat_dim"] == 8
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3] and all("dst" in r and "depth" in r for r in recs)
    assert (run / "curves.png").is_file() and (run / "checkpoint.pt").is_file()
    handcli("train", tiny_cache, "-o", run, "--method", "handnerf", "--steps", "4", "--resume")
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 4
    renders = tmp_path / "renders"
    out = handcli("render", run, tiny_cache, "-o", renders, "--views", "400004", "--max-views", "2",
                  "--orbit", "2")
    assert out[0] == str(renders) and any(p.endswith(("orbit.mp4", "orbit.gif")) for p in out)
    doc = json.loads((renders / "renders.json").read_text())
    assert len(doc["views"]) == 2 and (renders / "contact_sheet.png").is_file()
    metrics = tmp_path / "metrics.json"
    assert handcli("eval", renders, tiny_cache, "-o", metrics, "--depth", depth) == [str(metrics)]
    m = json.loads(metrics.read_text())
    mean = m["mean"]
    assert {"psnr_full", "psnr_box", "ssim_gaussian", "ssim_skimage_default", "depth_error_mm"} <= set(mean)
    assert mean["lpips_alex"] is None  # no backbone weights offline: null with a reason, never made up
    kinds = {}
    for art in (run, renders, metrics, depth):
        kinds[art.name] = json.loads(handcli("inspect", art, "--json")[0])
    assert kinds["run"]["kind"] == "run" and kinds["run"]["complete"] and kinds["run"]["steps_logged"] == 4
    assert kinds["renders"]["num_views"] == 2 and kinds["metrics.json"]["schema"] == "handcli.metrics.images/1"
    assert kinds["depth.h5"]["kind"] == "targets" and kinds["depth.h5"]["depth_kind"] == "z"


def test_adapt_from_the_cli_writes_a_run_that_renders(tiny_cache, tiny_depth, tmp_path):
    """The adapt stage end to end (its logic is tested in test_adapt.py): train 2 steps, adapt, render."""
    run, adapted = tmp_path / "run", tmp_path / "adapted"
    handcli("train", tiny_cache, "-o", run, "--method", "handnerf", "--steps", "2", "--depth", tiny_depth, *TINY_SET)
    assert handcli("adapt", run, tiny_cache, "-o", adapted, "--steps", "2", "--frames", "0-1",
                   "--depth", tiny_depth) == [str(adapted)]
    acfg = json.loads((adapted / "config.json").read_text())
    assert acfg["data"]["adapted_from"] == str(run.resolve()) and acfg["data"]["frames"] == [0, 1]
    recs = [json.loads(x) for x in (adapted / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 2 and "depth" in recs[-1] and "rgb" not in recs[-1]  # depth-only supervision
    handcli("render", adapted, tiny_cache, "-o", tmp_path / "r2", "--frames", "0", "--max-views", "1")
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "adapt", str(run), str(tiny_cache), "-o",
                        str(tmp_path / "x"), "--depth", str(tiny_depth), "--check-cameras", "400002"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "check-cameras" in r.stderr and not (tmp_path / "x").exists(), r.stderr


def test_posenerf_trains_from_the_cli(tiny_cache, tmp_path):
    run = tmp_path / "pose"
    handcli("train", tiny_cache, "-o", run, "--method", "posenerf", "--steps", "2", *TINY_SET)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["deform"] == "none" and not cfg["config"]["error_correction"]
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "adapt", str(run), str(tiny_cache), "-o",
                        str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "error-correction" in r.stderr  # Pose-NeRF has no deformation to adapt


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_cache, tmp_path):
    """Multi-process training through torchrun (gloo on CPU): both ranks train to the end, rank 0 writes.

    That the gradients are averaged exactly is tested in test_ddp_gradients.py."""
    import shutil

    torchrun = shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent))
    run = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "handcli.cli", "train", str(tiny_cache), "-o",
                        str(run), "--steps", "2", "--log-every", "1", *TINY_SET], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines() == [str(run)]  # printed once, by rank 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [1, 2]
