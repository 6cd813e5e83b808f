"""HandOcc pose adaptation (handcli.methods.handocc.adapt, ``handcli adapt`` on a HandOcc run): the networks
stay bit-identical, only the novel frames' joint offsets change, the photometric loss of the novel frames
drops, and the adapted run renders those frames with their refined skeletons."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from handcli.methods.handocc.adapt import (
    ADAPTED_PREFIXES,
    keep_checked,
    prepare_adaptation,
    split_check_cameras,
)
from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.model import PRESETS
from handcli.methods.trainer import train
from tests.cli_run import handcli

TINY_FULL = dict(rays_per_step=256, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
                 color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16)
BASE_FRAMES, NOVEL_FRAMES = [0, 1, 3], [2, 4, 5]
CAMERAS = ["400002", "400009", "400004"]


def _train_base(cache, steps: int, tmp) -> HandOccMethod:
    """A tiny HandOcc trained on three frames; the other three are the novel poses."""
    torch.manual_seed(0)
    cfg = replace(PRESETS["fast"], **TINY_FULL, steps=steps)
    m = HandOccMethod(cfg, cache, train_cameras=CAMERAS, train_frames=BASE_FRAMES)
    train(m, tmp, steps=steps, lr=5e-3, lr_final=1e-3, seed=0, resume=False, ckpt_every=10 ** 6)
    return m


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    return _train_base(tiny_cache, 30, tmp_path_factory.mktemp("base"))


def shifted_cache(cache, tmp_path, frames: list[int], shift_m) -> tuple:
    """A copy of ``cache`` whose joints of ``frames`` are moved by ``shift_m`` (3,) metres (an annotation
    error: the images still show the hands where they were); returns (path, {(frame, side): true joints})."""
    import shutil

    import h5py

    out = tmp_path / "shifted.h5"
    shutil.copy(cache, out)
    truth = {}
    with h5py.File(out, "r+") as h5:
        for side in ("right", "left"):
            J = h5[f"frames/{side}/joints"]
            for f in frames:
                if h5[f"frames/{side}/present"][f]:
                    truth[(f, side)] = np.array(J[f], dtype=np.float32)
                    J[f] = J[f] + np.asarray(shift_m, np.float32)
    return out, truth


def joint_error_mm(m: HandOccMethod, truth: dict) -> float:
    """Mean distance (mm) of the joints ``m`` renders its training frames with from the true joints."""
    errs = [np.linalg.norm(j - truth[(f, s)], axis=-1).mean() for f in m.frames for s, j in m.skeletons(f)
            if (f, s) in truth]
    return 1000.0 * float(np.mean(errs))


def test_adaptation_trains_only_the_novel_offsets(trained, tiny_cache, tmp_path):
    trained_state = {k: v.clone() for k, v in trained.model.state_dict().items()}
    m, adapted = prepare_adaptation(trained, tiny_cache, frames=NOVEL_FRAMES, steps=10, lr=1e-2, seed=0,
                                    cameras=CAMERAS)
    assert m.frames == NOVEL_FRAMES and adapted == ["refine.offsets"]
    assert all(n.startswith(ADAPTED_PREFIXES) for n in adapted)
    n_hands = sum(len(m.joints[f]) for f in NOVEL_FRAMES)
    params = dict(m.model.named_parameters())
    assert params["refine.offsets"].shape == (n_hands, 21, 3)
    for i, (side, anchor) in enumerate(zip(m.model.refine.keys[:, 1].tolist(), m.model.refine.anchor)):
        # the offsets start where the trained run renders an unseen frame: at its common offset
        moved = trained.model.refine.transfer(("right", "left")[side], anchor)
        torch.testing.assert_close(anchor + m.model.refine.offset_m()[i].detach(), moved, atol=1e-6, rtol=0)
    frozen = sorted(set(params) - set(adapted))
    assert any(n.startswith("occ.") for n in frozen) and any(n.startswith("color.") for n in frozen)
    expected = dict(trained_state)
    if int(trained_state["density_cal.in_render"]) == 2:
        # the calibration the run renders (fitted when training ended) is the one the adaptation trains through
        expected["density_cal.p"] = trained_state["density_cal.fitted"] / trained.model.density_cal.scale
    for k, v in m.model.state_dict().items():  # the trained networks, copied
        if not k.startswith("refine."):
            assert torch.equal(v, expected[k]), k
    before = {n: p.detach().clone() for n, p in params.items()}
    train(m, tmp_path, steps=10, lr=1e-2, lr_final=1e-2, seed=0, resume=False, ckpt_every=10 ** 6)
    changed = [n for n in frozen if not torch.equal(params[n].detach(), before[n])]
    assert not changed, f"frozen parameters changed: {changed}"
    assert params["refine.offsets"].detach().abs().max() > 0
    f = NOVEL_FRAMES[0]  # a novel frame renders with its refined skeleton
    cache_joints = {s: j.cpu().numpy() for s, j in m.joints[f]}
    assert any(not np.allclose(j, cache_joints[s]) for s, j in m.skeletons(f))
    assert all(torch.equal(v, trained_state[k]) for k, v in trained.model.state_dict().items())


@pytest.mark.parametrize("cal_render", ["off", "on"])
def test_adaptation_fits_the_field_the_run_renders(trained, tiny_cache, cal_render):
    """The novel skeletons are fitted through the density calibration only where the run renders with it."""
    assert trained.model.rendered_calibration(train=True) is trained.model.density_cal  # training: calibrated
    with trained.model.sampling(cal_render=cal_render):
        m, _ = prepare_adaptation(trained, tiny_cache, frames=NOVEL_FRAMES, steps=1, lr=1e-2, cameras=CAMERAS)
    assert m.model.cfg.cal_train == (cal_render == "on")
    chosen = int(trained.model.density_cal.in_render)
    assert chosen in (0, 2) and m.finish_training() is None  # no check camera among 3 cameras
    assert int(m.model.density_cal.in_render) == chosen  # the adapted run keeps the trained run's choice


def test_adaptation_fits_through_the_calibration_fitted_for_renders(trained, tiny_cache):
    """``cal_render`` auto with a fitted render calibration: the adaptation's (frozen) calibration is the fitted
    one, so its training renders the field the run renders; the trained run is not modified."""
    cal = trained.model.density_cal
    before = {k: v.clone() for k, v in cal.state_dict().items()}
    try:
        with torch.no_grad():
            cal.fitted.copy_(torch.tensor([0.4, -0.5]))
            cal.in_render.fill_(2)
        m, _ = prepare_adaptation(trained, tiny_cache, frames=NOVEL_FRAMES, steps=1, lr=1e-2, cameras=CAMERAS)
        adapted = m.model.density_cal
        assert m.model.cfg.cal_train and not adapted.p.requires_grad
        a, b = adapted.slope_offset()
        assert abs(a - math.exp(0.4)) < 1e-5 and abs(b + 0.5) < 1e-6
        assert torch.equal(adapted.fitted, cal.fitted) and int(adapted.in_render) == 2
        assert torch.equal(cal.fitted, torch.tensor([0.4, -0.5])) and torch.equal(cal.p, before["p"])
    finally:
        cal.load_state_dict(before)


def test_check_cameras_are_held_back_from_the_fit(tiny_cache):
    from handcli.data.cache import Cache
    from handcli.errors import InputError

    with Cache(tiny_cache) as c:
        names = [cam["name"] for cam in c.cameras()]
    assert 1 < len(names) < 5
    assert split_check_cameras(tiny_cache, None, NOVEL_FRAMES, None) == (None, [])  # too few cameras to hold any back
    assert split_check_cameras(tiny_cache, CAMERAS, NOVEL_FRAMES, []) == (CAMERAS, [])
    fit, check = split_check_cameras(tiny_cache, CAMERAS, NOVEL_FRAMES, [CAMERAS[1]])
    assert (fit, check) == ([n for n in names if n in (CAMERAS[0], CAMERAS[2])], [CAMERAS[1]])
    fit, check = split_check_cameras(tiny_cache, None, NOVEL_FRAMES, [names[0]])
    assert (fit, check) == (names[1:], [names[0]])
    with pytest.raises(InputError, match="check cameras not in the cache"):
        split_check_cameras(tiny_cache, None, NOVEL_FRAMES, ["499999"])
    with pytest.raises(InputError, match="none is left to fit"):
        split_check_cameras(tiny_cache, [CAMERAS[0]], NOVEL_FRAMES, [CAMERAS[0]])


def test_check_returns_frames_fitted_worse_to_the_start(trained, tiny_cache):
    """A frame whose adapted skeletons are 15 mm off its start goes back; one whose start was 15 mm off and whose
    adaptation returned it keeps the adaptation; one adaptation left alone is kept."""
    m, _ = prepare_adaptation(trained, tiny_cache, frames=NOVEL_FRAMES, steps=1, lr=1e-2, cameras=CAMERAS[:2],
                              check_cameras=[CAMERAS[2]])
    refine = m.model.refine
    assert m.check_cameras == [CAMERAS[2]] and torch.equal(m.adapt_start, refine.offsets.detach())
    worse, better, same = NOVEL_FRAMES
    shift = torch.tensor([0.15, -0.15, 0.0])  # 15 mm in offset units (refine_scale 0.1 m)
    good = refine.offsets.detach().clone()
    with torch.no_grad():
        rows = refine.keys[:, 0]
        refine.offsets[rows == worse] += shift
        m.adapt_start[rows == better] += shift
    adapted = refine.offsets.detach().clone()
    out = keep_checked(m)
    assert out["reverted"] == [worse] and out["kept"] == sorted([better, same]), out
    assert out["check_psnr"] > out["check_psnr_start"]
    assert torch.equal(refine.offsets[rows == worse], m.adapt_start[rows == worse])  # back to the start
    assert torch.equal(refine.offsets[rows != worse], adapted[rows != worse])
    assert torch.equal(refine.offsets[rows == better], good[rows == better])
    m.check_cameras = []
    assert keep_checked(m) is None


@pytest.mark.slow
def test_adaptation_repairs_an_annotation_error(tiny_cache, tmp_path):
    """Novel frames annotated 5.8 mm off the hands their images show: adaptation moves the rendered
    skeletons toward the truth."""
    (tmp_path / "base").mkdir()
    base = _train_base(tiny_cache, 200, tmp_path / "base")
    shift = [0.004, -0.003, 0.003]
    cache, truth = shifted_cache(tiny_cache, tmp_path, NOVEL_FRAMES, shift)
    m, _ = prepare_adaptation(base, cache, frames=NOVEL_FRAMES, steps=60, lr=5e-3, seed=0, cameras=CAMERAS)
    err_before = joint_error_mm(m, truth)  # from the trained run's common offset (transfer)
    annotated = [np.linalg.norm(j.cpu().numpy() - truth[(f, s)], axis=-1).mean() for f in m.frames
                 for s, j in m.joints[f] if (f, s) in truth]
    assert abs(1000.0 * float(np.mean(annotated)) - 1000.0 * np.linalg.norm(shift)) < 1e-3  # the error is there
    (tmp_path / "run").mkdir()
    train(m, tmp_path / "run", steps=60, lr=5e-3, lr_final=5e-3, seed=0, resume=False, ckpt_every=10 ** 6)
    err_after = joint_error_mm(m, truth)
    print(f"joint error of the novel frames: {err_before:.2f} -> {err_after:.2f} mm")
    assert err_after < 0.8 * err_before, (err_before, err_after)




def test_adapt_cli_on_a_handocc_run(tiny_cache, tmp_path):
    run, out = tmp_path / "run", tmp_path / "adapted"
    sets = [a for k, v in TINY_FULL.items() if k != "enc_channels" for a in ("--set", f"{k}={v}")]
    r = handcli("train", tiny_cache, "-o", run, "--method", "handocc", "--steps", "4", "--frames", "0,1,3",
                "--cameras", ",".join(CAMERAS), *sets)
    assert r.returncode == 0, r.stderr
    r = handcli("adapt", run, tiny_cache, "-o", out, "--steps", "3", "--frames", "2", "--lr", "1e-2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    doc = json.loads((out / "config.json").read_text())
    assert doc["method"] == "handocc" and doc["data"]["adapted_from"] == str(run.resolve())
    assert doc["config"]["w_occ"] == 0 and doc["config"]["refine"] and (out / "curves.png").exists()
    m = HandOccMethod.from_run(out)
    assert m.model.refine.keys[:, 0].tolist() == [2] * len(m.model.refine.keys)  # the novel frame's hands
    # --cameras keeps held-out cameras out of the adaptation (and is recorded)
    only = tmp_path / "only"
    r = handcli("adapt", run, tiny_cache, "-o", only, "--steps", "2", "--frames", "2", "--cameras", "400002,cam400004")
    assert r.returncode == 0, r.stderr
    assert json.loads((only / "config.json").read_text())["data"]["cameras"] == ["400002", "400004"]
    m, _ = HandOccMethod.adaptation(run, tiny_cache, frames=[2], steps=2, lr=1e-2, seed=0, device="cpu", depth=None,
                                    workdir=tmp_path, cameras=["400004"])
    names = [c["name"] for c in m.cache.cameras()]
    used = {names[int(m.cache.view_table()["camera"][j])] for j in m.pool.view_ids}
    assert used == {"400004"}
    r = handcli("adapt", run, tiny_cache, "-o", tmp_path / "bad_cam", "--steps", "2", "--cameras", "499999")
    assert r.returncode == 2 and "cameras" in r.stderr and not (tmp_path / "bad_cam").exists(), r.stderr
    # --check-cameras: checked on the camera held back, recorded in complete.json
    checked = tmp_path / "checked"
    r = handcli("adapt", run, tiny_cache, "-o", checked, "--steps", "2", "--frames", "2", "--check-cameras", "400009")
    assert r.returncode == 0, r.stderr
    check = json.loads((checked / "complete.json").read_text())["finish"]
    assert check["check_cameras"] == ["400009"] and sorted(check["kept"] + check["reverted"]) == [2]
    assert "400009" not in json.loads((checked / "config.json").read_text())["data"]["cameras"]
    assert "finish" not in json.loads((out / "complete.json").read_text())  # too few cameras to hold one back
    r = handcli("adapt", run, tiny_cache, "-o", tmp_path / "bad_check", "--steps", "2", "--check-cameras", "499999")
    assert r.returncode == 2 and "check" in r.stderr and not (tmp_path / "bad_check").exists(), r.stderr
    # --depth is HandNeRF's: one line naming the option, exit 2, nothing written
    bad = tmp_path / "bad"
    r = handcli("adapt", run, tiny_cache, "-o", bad, "--steps", "2", "--depth", tiny_cache)
    assert r.returncode == 2 and "depth" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not bad.exists()
