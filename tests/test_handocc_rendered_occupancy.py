"""The occupancy HandOcc renders: the parts' training blend at inference (``blend_inference``), and the learned
calibration (``density_cal``, DensityCalibration): identity at the start, monotone, trained by the rendering
losses, applied at inference only with ``cal_render`` (in training unless ``cal_train`` is off), and a run loads
with it whatever the default."""

from __future__ import annotations

from dataclasses import replace

import torch
from test_handocc_fast_render import _scene  # the tiny scene those tests render

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, DensityCalibration, HandOcc, occupancy_grid, render_rays

FAST = PRESETS["fast"]


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
    del state["density_cal.in_render"]
    model = HandOcc(FAST)
    model.density_cal.in_render.fill_(1)
    model.load_state_dict(state)
    assert int(model.density_cal.in_render) == -1 and model.rendered_calibration(train=False) is None


def test_end_of_training_chooses_the_render_that_fits_the_training_views(tiny_cache, tmp_path, monkeypatch):
    """``cal_render`` "auto": training ends by rendering training views with and without the calibration and keeps
    the better (stored in the checkpoint; complete.json's record says which); a calibration that makes the hands
    far too thin loses."""
    from handcli.methods.base import load_checkpoint
    from handcli.methods.handocc import view_fit
    from handcli.methods.handocc.method import CHOICE_VIEWS
    from handcli.methods.trainer import train
    from tests.test_handocc import _full

    torch.manual_seed(0)
    m = _full(tiny_cache, steps=6)
    last = train(m, tmp_path, steps=6, lr=5e-3, lr_final=1e-3, seed=0, resume=False, ckpt_every=10 ** 6)
    chosen = last["finish"]
    assert chosen["views"] == min(CHOICE_VIEWS, len(m.pool.view_ids))
    assert chosen["cal_render"] == (chosen["psnr_with"] > chosen["psnr_without"])
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["model"]["density_cal.in_render"]
    assert int(saved) == int(chosen["cal_render"]) == int(m.model.density_cal.in_render)
    with torch.no_grad():
        m.model.density_cal.p[1] = -1.0  # rendered occupancy far below the network's: thin, faint hands
    out = m.finish_training()
    assert out["psnr_with"] < out["psnr_without"] - 0.5 and out["cal_render"] is False
    assert m.model.rendered_calibration(train=False) is None
    calls = []

    def fits(method, views):  # with the calibration the views fit better
        calls.append(len(views))
        return {0: (1.0 if int(method.model.density_cal.in_render) == 1 else 2.0, 10)}

    monkeypatch.setattr(view_fit, "frame_errors", fits)
    assert m.finish_training()["cal_render"] is True and calls == [chosen["views"]] * 2
    assert m.model.rendered_calibration(train=False) is m.model.density_cal
    m.cfg = replace(m.cfg, cal_render="off")
    assert m.finish_training() is None


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
