"""The occupancy HandOcc renders: the parts' training blend at inference (``blend_inference``), and the learned
calibration (``density_cal``, DensityCalibration): identity at the start, monotone, trained by the rendering
losses, applied at inference only with ``cal_render`` (in training unless ``cal_train`` is off), and a run loads
with it whatever the default."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_handocc_fast_render import _scene  # the tiny scene those tests render

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, DensityCalibration, HandOcc, occupancy_grid, render_rays

FAST = PRESETS["fast"]


@pytest.fixture(scope="module")
def trained_tiny(tiny_cache, tmp_path_factory):
    """A full-stage HandOcc trained 6 steps on the tiny cache (``finish_record``: complete.json's ``finish``)."""
    from handcli.methods.trainer import train
    from tests.test_handocc import _full

    torch.manual_seed(0)
    m = _full(tiny_cache, steps=6)
    m.run_dir = tmp_path_factory.mktemp("run")
    last = train(m, m.run_dir, steps=6, lr=5e-3, lr_final=1e-3, seed=0, resume=False, ckpt_every=10 ** 6)
    m.finish_record = last["finish"]
    return m


def test_calibration_is_identity_at_start_and_monotone():
    cal = DensityCalibration()
    o = torch.linspace(0.0, 1.0, 101)
    c0 = cal(o).detach()
    assert torch.allclose(c0, o, atol=2e-6, rtol=0) and float(c0[0]) == 0.0
    with torch.no_grad():
        cal.p.copy_(torch.tensor([0.2, -0.3]))
    c = cal(o).detach()
    assert bool((c[1:] >= c[:-1]).all()) and float((c - o).abs().max()) > 0.1
    a, b = cal.slope_offset()
    assert abs(a - float(torch.exp(torch.tensor(1.0)))) < 1e-5 and abs(b + 1.5) < 1e-6


def test_calibrated_render_starts_as_the_plain_one_and_learns_from_masks(tiny_cache):
    plain, hs, o, d = _scene(tiny_cache, 2)
    model = HandOcc(replace(FAST, density_cal=True, cal_render="on"))
    model.load_state_dict({**plain.state_dict(), "density_cal.p": torch.zeros(2)})
    for m in (plain, model):
        m.eval()
    with torch.no_grad():
        a = render_rays(plain, hs, None, o, d)
        b = render_rays(model, hs, None, o, d)
        assert float(a["opacity"].max()) > 0.9
        assert float((a["opacity"] - b["opacity"]).abs().max()) < 1e-4
        model.density_cal.p[1] = -0.4  # a lower rendered occupancy: thinner silhouettes, same field
        thin = render_rays(model, hs, None, o, d)
    assert float(thin["opacity"].sum()) < 0.97 * float(a["opacity"].sum())
    # a training render's mask loss reaches the calibration
    model.train()
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:400]
    out = render_rays(model, hs, None, o[rows], d[rows], perturb=True, gen=torch.Generator().manual_seed(1),
                      train=True)
    out["hand_opacity"].square().sum().backward()
    assert float(model.density_cal.p.grad.abs().min()) > 0


def test_calibration_serves_training_only_without_cal_render(tiny_cache):
    """``cal_render`` "auto" (the default) undecided, or "off": renders show the network's occupancy, training renders
    the calibrated one; "auto" decided for the calibration renders through it."""
    plain, hs, o, d = _scene(tiny_cache, 1)
    model = HandOcc(replace(FAST, density_cal=True))
    assert model.cfg.cal_render == "auto" and int(model.density_cal.in_render) == -1
    model.load_state_dict({**plain.state_dict(), "density_cal.p": torch.tensor([0.1, 0.3])})  # a fatter surface
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:800]
    with torch.no_grad():
        a = render_rays(plain.eval(), hs, None, o, d)
        b = render_rays(model.eval(), hs, None, o, d)
        assert torch.equal(a["opacity"], b["opacity"])
        with model.sampling(cal_render="on"):
            fat = render_rays(model, hs, None, o, d)
        assert float(fat["opacity"].sum()) > 1.03 * float(a["opacity"].sum())
        model.density_cal.in_render.fill_(1)  # "auto", decided for it
        assert torch.equal(render_rays(model, hs, None, o, d)["opacity"], fat["opacity"])
        with model.sampling(cal_render="off"):
            assert torch.equal(render_rays(model, hs, None, o, d)["opacity"], a["opacity"])
        model.density_cal.in_render.fill_(0)  # "auto", decided against it
        assert torch.equal(render_rays(model, hs, None, o, d)["opacity"], a["opacity"])
        kw = dict(perturb=True, train=True)
        t_plain = render_rays(plain, hs, None, o[rows], d[rows], gen=torch.Generator().manual_seed(1), **kw)
        t_cal = render_rays(model, hs, None, o[rows], d[rows], gen=torch.Generator().manual_seed(1), **kw)
        with model.sampling(cal_train=False):  # adapt's training: the field as the run renders it
            t_off = render_rays(model, hs, None, o[rows], d[rows], gen=torch.Generator().manual_seed(1), **kw)
    assert float(t_cal["opacity"].sum()) > 1.03 * float(t_plain["opacity"].sum())
    torch.testing.assert_close(t_off["opacity"], t_plain["opacity"], atol=1e-6, rtol=0)


def test_runs_before_cal_render_render_with_their_calibration():
    from handcli.methods.handocc.model import migrate_config

    assert migrate_config({"occ_anneal": "auto", "anneal_missed": 0.005})["cal_render"] == "on"
    assert migrate_config({"occ_anneal": "auto", "anneal_missed": 0.005, "cal_render": False})["cal_render"] == "off"
    assert migrate_config({"occ_anneal": "auto", "anneal_missed": 0.005, "cal_render": True})["cal_render"] == "on"
    # a checkpoint saved before the "auto" choice loads undecided
    state = HandOcc(FAST).state_dict()
    del state["density_cal.in_render"], state["density_cal.fitted"]
    model = HandOcc(FAST)
    model.density_cal.in_render.fill_(1)
    model.density_cal.fitted.fill_(1.0)
    model.load_state_dict(state)
    assert int(model.density_cal.in_render) == -1 and model.rendered_calibration(train=False) is None
    assert not model.density_cal.fitted.any()


def test_coordinate_search_climbs_to_the_best_grid_point():
    """From the better start, axis steps to the best neighbour while it gains; every point scored once."""
    from handcli.methods.handocc.render_calibration import coordinate_search

    calls = []

    def score(p):  # peak at (3 steps, -2 steps) of (0.5, 0.25)
        calls.append(p)
        return -((p[0] - 1.5) ** 2) - (p[1] + 0.5) ** 2

    best, seen = coordinate_search(score, [(0.0, 0.0), (5.0, 5.0)], (0.5, 0.25), 50, 0.0)
    assert best == (1.5, -0.5) and len(calls) == len(set(calls)) == len(seen)
    assert list(seen)[:2] == [(0.0, 0.0), (5.0, 5.0)] and seen[best] == max(seen.values()) == 0.0
    # the budget of scored points, and the least gain a move needs
    best, seen = coordinate_search(score, [(0.0, 0.0)], (0.5, 0.25), 5, 0.0)
    assert len(seen) == 5 and best == (0.5, 0.0)
    best, seen = coordinate_search(score, [(0.0, 0.0)], (0.5, 0.25), 50, 10.0)
    assert best == (0.0, 0.0) and len(seen) == 5


def test_view_errors_on_every_second_pixel_are_those_of_the_whole_render(trained_tiny):
    """``frame_errors(stride=2)`` renders the pixels (2r, 2c) of the view, with its camera (K's rows scaled)."""
    from handcli.eval.renders_eval import gt_image
    from handcli.methods.handocc import view_fit

    m = trained_tiny
    j = int(m.pool.view_ids[0])
    full = m.render_view(j, frozenset({"rgb"}))["rgb"]
    v = m.cache.view(j)
    gt = gt_image(v["rgb"], v["label"])
    (sq, n), = view_fit.frame_errors(m, [j], stride=2).values()
    assert n == gt[::2, ::2].size
    assert abs(sq - float(np.square(full[::2, ::2] - gt[::2, ::2]).sum())) < 1e-4 * max(sq, 1e-3)
    assert float(np.square(full - gt).sum()) > 0


def test_end_of_training_fits_the_rendered_calibration_to_the_training_views(trained_tiny, tmp_path):
    """``cal_render`` "auto": training ends by fitting the calibration that renders apply to training views (saved
    in the checkpoint; complete.json's record has the fit); a calibration that makes the hands far too thin is
    not kept."""
    from handcli.methods.base import load_checkpoint
    from handcli.methods.handocc.method import CHOICE_VIEWS
    from handcli.methods.handocc.render_calibration import FIT_STRIDE, MAX_EVALS

    m, fit = trained_tiny, trained_tiny.finish_record
    assert fit["views"] == min(CHOICE_VIEWS, len(m.pool.view_ids)) and fit["stride"] == FIT_STRIDE
    assert 2 <= fit["renders"] <= MAX_EVALS
    assert fit["psnr"] >= max(fit["psnr_without"], fit["psnr_trained"])
    saved = load_checkpoint(m.run_dir / "checkpoint.pt")["model"]
    cal = m.model.density_cal
    assert int(saved["density_cal.in_render"]) == 2 * int(fit["cal_render"]) == int(cal.in_render)
    assert torch.equal(saved["density_cal.fitted"], cal.fitted)
    trained = cal.slope_offset()  # the trained calibration is kept (training can go on from the run)
    assert trained == pytest.approx((fit["trained_slope"], fit["trained_offset"]))
    torch.testing.assert_close(saved["density_cal.p"], cal.p.detach())
    if fit["cal_render"]:
        assert cal.fitted.tolist() == pytest.approx([math.log(fit["slope"]), fit["offset"]])
        assert m.model.rendered_calibration(train=False) == cal.rendered
        assert m.model.rendered_calibration(train=True) is cal
    else:
        assert m.model.rendered_calibration(train=False) is None
    # a fit renders as the calibration with the fitted (a, b); a run that chose the trained one renders that
    o = torch.linspace(0.0, 1.0, 51)
    with torch.no_grad():
        cal.fitted.copy_(torch.tensor([0.3, -0.4]))
        cal.in_render.fill_(2)
        ref = DensityCalibration()
        ref.p.copy_(torch.tensor([0.3, -0.4]) / ref.scale)
        torch.testing.assert_close(cal.rendered(o), ref(o))
        cal.in_render.fill_(1)  # a run that chose the trained calibration renders that
        assert m.model.rendered_calibration(train=False) is cal
    with torch.no_grad():
        cal.p.copy_(torch.tensor([0.0, -1.0]))  # rendered occupancy far below the network's: thin, faint hands
    out = m.finish_training()
    assert out["trained_offset"] == -5.0 and out["psnr"] > out["psnr_trained"] + 0.5
    assert (out["cal_render"], out["offset"]) != (True, -5.0)
    m.cfg = replace(m.cfg, cal_render="off")
    assert m.finish_training() is None


def test_fit_ends_at_the_views_best_calibration_and_keeps_the_trained_one(trained_tiny, monkeypatch):
    """With view errors that are least at a = 1.5, b = -0.5 (a stand-in for the renders), the fit ends there, renders
    apply it, and the trained calibration is untouched."""
    from handcli.methods.handocc import view_fit
    from handcli.methods.handocc.render_calibration import fit_render_calibration

    m = trained_tiny
    cal = m.model.density_cal
    with torch.no_grad():
        cal.p.zero_()  # the trained calibration is the identity: both starts are (0, 0)
    p = cal.p.detach().clone()
    calls = []

    def errors(method, views, stride=1):
        calls.append((len(views), stride))
        x = (0.0, 0.0) if int(cal.in_render) == 0 else cal.fitted.tolist()
        return {0: (1.0 + (x[0] - math.log(1.5)) ** 2 + (x[1] + 0.5) ** 2, 1000)}

    monkeypatch.setattr(view_fit, "frame_errors", errors)
    out = fit_render_calibration(m, [0, 1, 2])
    assert out["cal_render"] and out["slope"] == pytest.approx(1.5) and out["offset"] == pytest.approx(-0.5)
    assert cal.fitted.tolist() == pytest.approx([math.log(1.5), -0.5]) and torch.equal(cal.p, p)
    assert set(calls) == {(3, 2)} and len(calls) == out["renders"] <= 12


def test_run_loads_with_the_calibration_it_was_trained_with():
    for trained in (False, True):
        state = HandOcc(replace(FAST, density_cal=trained)).state_dict()
        for default in (False, True):
            cfg = config_for_state(replace(FAST, density_cal=default), state)
            assert cfg.density_cal is trained
            HandOcc(cfg).load_state_dict(state)


def test_blend_inference_renders_the_training_blend(tiny_cache):
    """With ``blend_inference`` renders and meshes use the soft-max blend of the parts that training uses, which
    is never above their max (the NASA / HALO inference rule): lower opacity, and somewhere strictly."""
    model, hs, o, d = _scene(tiny_cache, 1)  # one hand: opacity is monotone in the occupancy
    model.eval()
    assert model.cfg.blend_inference  # on by default
    with torch.no_grad():
        blend = render_rays(model, hs, None, o, d)
        grid, lo, h = occupancy_grid(model, hs[0], 24)
        with model.sampling(blend_inference=False):
            peak = render_rays(model, hs, None, o, d)
            grid_max, _, _ = occupancy_grid(model, hs[0], 24)
        x = torch.stack(torch.meshgrid(*[lo[i] + h * torch.arange(n) for i, n in enumerate(grid.shape)],
                                       indexing="ij"), -1).reshape(-1, 3)
        soft = model.occ(hs[0], x, soft=True)["occ"]
    assert float(peak["opacity"].max()) > 0.9
    assert bool((blend["opacity"] <= peak["opacity"] + 1e-4).all())  # (early stop at transmittance 1e-4)
    assert float((peak["opacity"] - blend["opacity"]).max()) > 0.05
    inside = grid.reshape(-1) > 0
    assert torch.allclose(grid.reshape(-1)[inside], soft[inside], atol=1e-5)
    assert bool((grid <= grid_max + 1e-6).all()) and float((grid_max - grid).max()) > 0.01
