"""Every method trains and renders on each device (CPU always, CUDA when present): the model, the losses and
the rendered view stay on the method's device, and on CUDA the rendered view matches the CPU render of the
same weights."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from handcli.methods.trainer import step_generator

NERF = dict(rays_per_step=64, n_samples=12, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4,
            feat_dim=8, ec_hidden=16, ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01)
OCC = dict(rays_per_step=128, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
           color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16, steps=4)
HO = dict(rays_per_step=64, n_samples=8, hidden=32, layers=2, skips=(1,), color_hidden=16, cnn_channels=8,
          volume_feat_dim=8, img_feat_dim=16, render_size=24, input_size=32, voxel=0.02, grid_multiple=8,
          pe_deg=4, mesh_voxel=0.01, chunk=1024)


def _build(name: str, request, device):
    if name == "handnerf":
        from handcli.methods.handnerf.method import HandNeRFMethod
        from handcli.methods.handnerf.model import preset

        return HandNeRFMethod(replace(preset("fast", "handnerf"), **NERF), request.getfixturevalue("tiny_cache"),
                              depth_path=request.getfixturevalue("tiny_depth"),
                              train_cameras=["400002", "400009"], device=str(device))
    if name == "handocc":
        from handcli.methods.handocc.method import HandOccMethod
        from handcli.methods.handocc.model import PRESETS

        return HandOccMethod(replace(PRESETS["fast"], **OCC), request.getfixturevalue("tiny_cache"),
                             train_cameras=["400002", "400009", "400004"], device=str(device))
    from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
    from handcli.methods.handnerf_ho.model import preset

    return HandNeRFHOMethod(replace(preset("fast", "handnerf-ho"), **HO), request.getfixturevalue("dex_cache"),
                            device=str(device))


@pytest.mark.parametrize("name", ["handnerf", "handocc", "handnerf-ho"])
def test_method_trains_and_renders_on_the_device(name, device, request):
    torch.manual_seed(0)
    m = _build(name, request, device)
    params = [p for p in m.model.parameters() if p.requires_grad]
    assert all(p.device.type == device.type for p in m.model.parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    for step in range(2):
        loss, logs = m.train_step(step, step_generator(0, step))
        assert loss.device.type == device.type and math.isfinite(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))

    vt = m.cache.view_table()
    j = int(np.flatnonzero(vt["frame"] == m.frames[0])[0])
    m.model.eval()
    with torch.no_grad():
        r = m.render_view(j)
    h, w = m.cache.cameras()[int(vt["camera"][j])]["height"], m.cache.cameras()[int(vt["camera"][j])]["width"]
    assert r["rgb"].shape == (h, w, 3) and np.isfinite(r["rgb"]).all() and np.isfinite(r["depth"]).all()
    assert 0 < r["rays"] and r["opacity"].max() > 0
    if device.type != "cpu":  # the same weights rendered on the CPU give the same picture
        torch.manual_seed(0)
        ref = _build(name, request, "cpu")
        ref.model.load_state_dict({k: v.cpu() for k, v in m.model.state_dict().items()})
        ref.model.eval()
        with torch.no_grad():
            rc = ref.render_view(j)
        assert float(np.abs(r["rgb"] - rc["rgb"]).mean()) < 1e-3
        assert float(np.abs(r["opacity"] - rc["opacity"]).mean()) < 1e-3
