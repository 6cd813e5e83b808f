"""HandNeRF's fast render path (measured chunk size, in-place writes, feature only when asked) equals the
reference path it replaced, for one and two hands, with and without gradients."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from handcli.methods.handnerf.method import frame_geometry
from handcli.methods.handnerf.model import HandNeRF, field_chunk, preset
from handcli.render.rays import camera_rays, pixel_grid, pixel_radii

SMALL = dict(n_samples=16, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4, feat_dim=8, ec_hidden=16,
             ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01)


def _rays(cache_path, hands: int):
    from handcli.data.cache import Cache

    cache = Cache(cache_path)
    vt, cams = cache.view_table(), cache.cameras()
    for j in range(len(vt["frame"])):
        f = int(vt["frame"][j])
        if sum(bool(cache.frame_value(f"{s}/present", f)) for s in ("right", "left")) == hands:
            cam = cams[int(vt["camera"][j])]
            K, W = torch.as_tensor(cam["K"]).float(), torch.as_tensor(cam["world_to_cam"]).float()
            pix = pixel_grid(cam["height"], cam["width"])
            pix = pix[::4]  # a quarter of the pixels: still thousands of kept samples, a fast test
            o, d = camera_rays(K, W, pix)
            return cache, f, o, d, pixel_radii(K, W, pix)
    raise AssertionError(f"no {hands}-hand frame in the tiny cache")


@pytest.mark.parametrize("hands", [1, 2])
@pytest.mark.parametrize("method", ["handnerf", "posenerf"])
def test_fast_render_equals_reference(tiny_cache, hands, method):
    cache, f, o, d, radii = _rays(tiny_cache, hands)
    # a 64-point chunk: the rays below need many chunks, on the fast path and on the reference path
    cfg = replace(preset("fast", method), **SMALL, chunk=64)
    assert field_chunk(cfg, torch.device("cpu")) == 64
    torch.manual_seed(0)
    model = HandNeRF(cfg, 2)
    with torch.no_grad():  # untrained densities are tiny: scale them up so that rays become opaque
        model.field.density.bias.fill_(200.0)
    geoms = frame_geometry(cache, f, cfg)
    assert len(geoms) == hands
    with torch.no_grad():
        ref = model.render(geoms, o, d, radii, 0, reference=True)
        fast = model.render(geoms, o, d, radii, 0, want_feature=False)
        fast_feat = model.render(geoms, o, d, radii, 0, want_feature=True)
    assert ref["evaluated"] > 10 * 64 and float(ref["opacity"].max()) > 0.5
    assert "feat" not in fast and fast_feat["feat"].shape == (len(o), cfg.feat_dim)
    for k in ("rgb", "depth", "opacity", "weights"):
        assert torch.allclose(fast[k], ref[k], atol=1e-4, rtol=0), k
    for k in ("rgb", "depth", "opacity", "feat"):
        assert torch.allclose(fast_feat[k], ref[k], atol=1e-4, rtol=0), k
    assert fast["evaluated"] == ref["evaluated"]


def test_fast_training_render_has_reference_gradients(tiny_cache):
    cache, f, o, d, radii = _rays(tiny_cache, 2)
    cfg = replace(preset("fast", "handnerf"), **SMALL, chunk=64)
    torch.manual_seed(0)
    model = HandNeRF(cfg, 2)
    geoms = frame_geometry(cache, f, cfg)
    sel = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:400]
    grads = []
    for reference in (True, False):
        model.zero_grad()
        out = model.render(geoms, o[sel], d[sel], radii[sel], 1, perturb=True, gen=torch.Generator().manual_seed(3),
                           reference=reference)
        loss = out["rgb"].square().sum() + out["depth"].sum() + out["feat"].square().sum() + out["offsets"].sum()
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    ref, fast = grads
    assert ref.keys() == fast.keys() and any(k.startswith("field.trunk") for k in ref)
    for k in ref:
        scale = float(ref[k].abs().max())
        assert float((fast[k] - ref[k]).abs().max()) <= 1e-4 * max(scale, 1e-6), k
