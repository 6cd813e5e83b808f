"""Per-camera colour maps: they separate cameras of different gain, train inside HandOcc, and renders ignore
them (identity at test time)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from handcli.nn.camera_colour import CameraColour


def _fit(colour_model: bool, steps: int = 400):
    """A shared colour per point (a stand-in for the field) seen by two cameras with gains 0.8 and 1.2."""
    g = torch.Generator().manual_seed(0)
    truth = 0.2 + 0.6 * torch.rand(64, 3, generator=g)
    cams = torch.arange(128) % 2
    pts = torch.arange(128) // 2
    gains = torch.tensor([0.8, 1.2])
    seen = truth[pts] * gains[cams][:, None]
    field = torch.nn.Parameter(torch.full((64, 3), 0.5))
    cc = CameraColour(2)
    params = [field] + (list(cc.parameters()) if colour_model else [])
    opt = torch.optim.Adam(params, lr=2e-2)
    for _ in range(steps):
        rgb = field[pts]
        if colour_model:
            rgb = cc(rgb, cams)
        loss = ((rgb - seen) ** 2).mean() + (1e-3 * cc.penalty() if colour_model else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = float(((cc(field[pts], cams) if colour_model else field[pts]) - seen).pow(2).mean())
    return err, cc, field, truth


def test_identity_at_start():
    cc = CameraColour(3)
    rgb = torch.rand(10, 3)
    assert torch.equal(cc(rgb, torch.randint(3, (10,))), rgb) and float(cc.penalty().detach()) == 0.0


def test_two_cameras_of_different_gain_are_separated():
    err, cc, field, truth = _fit(True)
    err_plain, *_ = _fit(False)
    gains = cc.gains().detach()
    assert abs(float(gains[1] / gains[0]) - 1.5) < 0.05, gains  # the learned gains keep the 1.2 / 0.8 ratio
    assert err < 1e-4 < err_plain  # one colour per point cannot explain both cameras without the maps
    # the field keeps one colour per point, between the two cameras' records
    ratio = (field.detach() / truth).mean()
    assert 0.8 < float(ratio) < 1.2


def test_handocc_trains_the_maps_and_renders_without_them(tiny_cache, tmp_path):
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.model import PRESETS
    from handcli.methods.trainer import train

    torch.manual_seed(0)
    tiny = dict(rays_per_step=128, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
                color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16, steps=4)
    cfg = replace(PRESETS["fast"], **tiny, camera_colour=True)
    m = HandOccMethod(cfg, tiny_cache, train_cameras=["400002", "400009", "400004"])
    before = m.model.colour.A.detach().clone()
    last = train(m, tmp_path, steps=4, lr=1e-2, lr_final=1e-3, seed=0, resume=False, log_every=2, ckpt_every=4)
    assert "colour" in last and not torch.equal(m.model.colour.A.detach(), before)
    # a rendering does not depend on the colour maps
    cam = m.cache.cameras()[0]
    K = np.array(cam["K"], np.float64) * np.array([[0.25], [0.25], [1.0]])
    m.model.eval()
    with torch.no_grad():
        a = m.render_camera(m.frames[0], K, cam["world_to_cam"], 24, 16)["rgb"]
        m.model.colour.A.mul_(2.0)
        b = m.render_camera(m.frames[0], K, cam["world_to_cam"], 24, 16)["rgb"]
    assert np.array_equal(a, b)
    # the checkpoint holds the maps and loads into a fresh run with the same config
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("colour.") for k in state["model"])
    fresh = HandOccMethod(cfg, tiny_cache, train_cameras=["400002", "400009", "400004"])
    fresh.model.load_state_dict(state["model"])
