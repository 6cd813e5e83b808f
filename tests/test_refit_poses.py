"""bench/refit_poses.py on a tiny HandOcc run: ``polish`` starts from the run's own offsets and moves only them;
``reanchor`` writes the refined joints minus the common offset into a copy of the cache, nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_handocc_adapt import CAMERAS, TINY_FULL, handcli

_spec = importlib.util.spec_from_file_location(
    "refit_poses", Path(__file__).resolve().parents[1] / "bench" / "refit_poses.py")
refit_poses = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refit_poses)

FRAMES = [0, 1, 3]


@pytest.fixture(scope="module")
def run(tiny_cache, tmp_path_factory):
    """A tiny run whose offsets are learned from the first step (so that they are not zero)."""
    out = tmp_path_factory.mktemp("refit") / "run"
    sets = [a for k, v in TINY_FULL.items() if k != "enc_channels" for a in ("--set", f"{k}={v}")]
    r = handcli("train", tiny_cache, "-o", out, "--method", "handocc", "--steps", "6", "--frames", "0,1,3",
                "--cameras", ",".join(CAMERAS), "--set", "refine_start=0", "--set", "lr=5e-3", *sets)
    assert r.returncode == 0, r.stderr
    return out


def _model(run_dir):
    from handcli.methods.handocc.method import HandOccMethod

    return HandOccMethod.from_run(run_dir, device="cpu").model


def test_reanchor_writes_refined_joints_without_the_common_offset(run, tiny_cache, tmp_path):
    ref = _model(run).refine
    assert float(ref.offset_m().detach().abs().max()) > 0
    out = tmp_path / "reanchored.h5"
    moved = refit_poses.reanchor(run, tiny_cache, out)
    assert sorted(moved) == sorted((int(f), ("right", "left")[int(s)]) for f, s in ref.keys.tolist())
    with h5py.File(tiny_cache, "r") as a, h5py.File(out, "r") as b:
        for side in ("right", "left"):
            old, new = a[f"frames/{side}/joints"][()], b[f"frames/{side}/joints"][()]
            rows = [i for i, (f, s) in enumerate(ref.keys.tolist()) if ("right", "left")[s] == side]
            trained = {int(ref.keys[i, 0]) for i in rows}
            for f in range(len(old)):  # frames the run did not train on keep their annotation
                if f not in trained:
                    assert np.array_equal(old[f], new[f])
            if not rows:
                continue
            delta = torch.as_tensor(new[ref.keys[rows, 0].numpy()] - old[ref.keys[rows, 0].numpy()])
            # the per-hand moves are the offsets less one common offset: offsets minus moves is the same for all
            # hands once each is expressed in its hand's canonical frame
            common = delta - ref.offset_m()[rows].detach()
            from handcli.hand.skeleton_frames import canonical_frame, mirror_x

            anchor = ref.anchor[rows]
            if side == "left":
                anchor, common = mirror_x(anchor), mirror_x(common)
            R, _ = canonical_frame(anchor)
            local = torch.einsum("nij,nkj->nki", R, common)
            torch.testing.assert_close(local, -ref.common_offset(side)[None].expand_as(local), atol=2e-6, rtol=0)
    with h5py.File(out, "r") as b, h5py.File(tiny_cache, "r") as a:  # everything else is the cache's
        assert np.array_equal(a["frames/right/vertices"][()], b["frames/right/vertices"][()])


def test_polish_starts_from_the_runs_offsets_and_freezes_the_networks(run, tiny_cache, tmp_path):
    trained = _model(run)
    out = tmp_path / "polished"
    lr = 1e-3
    last = refit_poses.polish(run, tiny_cache, out, steps=2, lr=lr, cameras=None)
    assert "mask" in last and (out / "checkpoint.pt").exists()
    doc = json.loads((out / "config.json").read_text())
    assert doc["data"]["cameras"] == CAMERAS and doc["data"]["frames"] == FRAMES
    polished = _model(out)
    expected = dict(trained.state_dict())
    if int(trained.density_cal.in_render) == 2:  # adapt trains through the calibration the run renders, frozen
        expected["density_cal.p"] = trained.density_cal.fitted / trained.density_cal.scale
    for k, v in polished.state_dict().items():
        if not k.startswith(("refine.", "label_align.", "colour.")):
            assert torch.equal(v, expected[k]), k
    assert torch.equal(polished.refine.anchor, trained.refine.anchor)
    move = (polished.refine.offset_m() - trained.refine.offset_m()).detach().abs()
    # two Adam steps from the trained offsets: each coordinate moves at most ~lr x scale per step
    assert 0 < float(move.max()) <= 2 * lr * trained.refine.scale * 1.01
    with pytest.raises(SystemExit, match="exists"):
        refit_poses.main(["polish", str(run), str(tiny_cache), "-o", str(out)])
