"""HandOcc through the CLI: train (occupancy stage, then full by --resume), mesh, render (views, orbit,
appearance transfer), eval; bad input and method dispatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_run import HANDOCC_SMALL, handcli


@pytest.mark.slow
def test_handocc_cli_chain(tiny_cache, tmp_path):
    import cv2
    import trimesh

    from handcli.data.cache import Cache
    from handcli.methods.handocc.method import hand_crop

    run = tmp_path / "run"
    r = handcli("train", tiny_cache, "-o", run, "--method", "handocc", "--stage", "occupancy", "--steps", "60",
                "--log-every", "20", *HANDOCC_SMALL, "--set", "lr=5e-3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(run)
    doc = json.loads((run / "config.json").read_text())
    assert doc["method"] == "handocc" and doc["config"]["stage"] == "occupancy"
    r = handcli("inspect", run, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "handocc"

    # meshes: two hands -> right.ply + left.ply in a folder; one hand -> a single .ply path
    with Cache(tiny_cache) as c:
        two = next(f for f in range(c.num_frames) if len(c.frame(f).hands) == 2)
        one = next(f for f in range(c.num_frames) if len(c.frame(f).hands) == 1)
        v = c.view(c.views_of_frame(one)[0])
    r = handcli("mesh", run, tiny_cache, "--frame", two, "-o", tmp_path / "m2", "--resolution", "32")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "m2" / "right.ply"), str(tmp_path / "m2" / "left.ply")]
    r = handcli("mesh", run, "--frame", one, "-o", tmp_path / "hand.ply", "--resolution", "32")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "hand.ply")]
    mesh = trimesh.load(tmp_path / "hand.ply")
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 100
    r = handcli("mesh", run, "--frame", one, "-o", tmp_path / "hand.ply")
    assert r.returncode == 2 and "--force" in r.stderr and r.stdout == ""
    r = handcli("mesh", run, "--frame", two, "-o", tmp_path / "both.ply")
    assert r.returncode == 2 and "folder" in r.stderr and not (tmp_path / "both.ply").exists()
    r = handcli("mesh", run, "--frame", 999, "-o", tmp_path / "m3")
    assert r.returncode == 2 and "frame" in r.stderr and not (tmp_path / "m3").exists()

    # continue the same run with the full stage
    r = handcli("train", tiny_cache, "-o", run, "--method", "handocc", "--resume", "--stage", "full", "--steps", "66",
                "--log-every", "2")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 66 and "rgb" in recs[-1] and recs[-1]["samples_per_ray"] > 0
    assert json.loads((run / "config.json").read_text())["config"]["stage"] == "full"

    renders = tmp_path / "renders"
    r = handcli("render", run, tiny_cache, "-o", renders, "--frames", f"{one},{two}", "--max-views", "2", "--orbit",
                "1", "--video")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(renders)
    doc = json.loads((renders / "renders.json").read_text())
    assert doc["method"] == "handocc" and len(doc["views"]) == 2
    assert len(list((renders / "orbit" / "rgb").glob("*.png"))) == 2
    # videos come with their frames as a numbered PNG sequence (and a renders.json)
    assert [p.name for p in sorted((renders / "poses" / "rgb").glob("*.png"))] == ["0000.png", "0001.png"]
    assert json.loads((renders / "poses" / "renders.json").read_text())["kind"] == "poses"
    assert {"orbit.mp4", "poses.mp4"} <= {p.name for p in renders.iterdir()}
    r = handcli("eval", renders, tiny_cache, "-o", tmp_path / "metrics.json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["num_views"] == 2 and m["mean"]["psnr_full"] > 10

    # appearance transfer from a reference crop on black: other colours, the same silhouettes
    crop = hand_crop(v["rgb"], v["label"] == 1, 64)
    tinted = np.clip(crop.astype(np.float64) * [0.5, 1.0, 1.8], 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "ref.png"), tinted[..., ::-1])
    r = handcli("render", run, tiny_cache, "-o", tmp_path / "transfer", "--frames", f"{one},{two}", "--max-views", "1",
                "--appearance", tmp_path / "ref.png")
    assert r.returncode == 0, r.stderr
    a = cv2.imread(str(renders / "rgb" / "0000.png"))
    b = cv2.imread(str(tmp_path / "transfer" / "rgb" / "0000.png"))
    oa = cv2.imread(str(renders / "opacity" / "0000.png"), cv2.IMREAD_GRAYSCALE)
    ob = cv2.imread(str(tmp_path / "transfer" / "opacity" / "0000.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(oa, ob)
    fg = oa > 128
    assert np.abs(a[fg].astype(int) - b[fg].astype(int)).mean() > 5
    r = handcli("render", run, tiny_cache, "-o", tmp_path / "t2", "--appearance", tmp_path / "missing.png")
    assert r.returncode == 2 and "missing.png" in r.stderr and not (tmp_path / "t2").exists()


def test_options_other_methods_do_not_have(tiny_cache, tmp_path):
    r = handcli("train", tiny_cache, "-o", tmp_path / "hn", "--method", "handnerf", "--stage", "occupancy")
    assert r.returncode == 2 and "stage" in r.stderr and not (tmp_path / "hn").exists()
    r = handcli("train", tiny_cache, "-o", tmp_path / "ho", "--method", "handocc", "--set", "stage=bogus")
    assert r.returncode == 2 and "stage" in r.stderr


def test_mesh_dispatches_on_the_method(tmp_path, stub_method_run):
    from typer.testing import CliRunner

    from handcli.cli import app
    from handcli.errors import InputError

    run = stub_method_run
    res = CliRunner().invoke(app, ["mesh", str(run), "--frame", "0", "-o", str(tmp_path / "out")])
    assert isinstance(res.exception, InputError) and "no mesh extraction" in str(res.exception)


@pytest.mark.slow
def test_handocc_torchrun_two_processes_on_cpu(tiny_cache, tmp_path):
    """HandOcc under torchrun (gloo on CPU), as the other methods: both ranks train, rank 0 writes once."""
    import shutil

    import torch

    torchrun = shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent))
    run = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "handcli.cli", "train", str(tiny_cache), "-o",
                        str(run), "--method", "handocc", "--steps", "2", "--log-every", "1", *HANDOCC_SMALL],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines() == [str(run)]
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [1, 2]
    assert all(np.isfinite(x["loss"]) for x in recs)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2
    # the anneal's evidence (occ_anneal auto): step 0 of each rank counted (step 1 >= occ_anneal_start x 2 steps),
    # then summed over the two ranks so that both decide alike
    assert ckpt["model"]["label_carved"][1].item() == 2.0
    assert ckpt["model"]["label_missed"][1].item() == 2.0
