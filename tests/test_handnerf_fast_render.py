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
    assert 0 < fast["evaluated"] < ref["evaluated"]  # opaque rays stop early (STOP_TRANSMITTANCE)


def test_early_stop_bounds_and_waves(tiny_cache, monkeypatch):
    """Without the stop every kept sample is evaluated and the outputs are the same as with it within
    STOP_TRANSMITTANCE (times the largest ray distance for depth); the waves cover every place once."""
    from handcli.methods.handnerf import model as mm

    assert mm._waves(10) == [(0, 4), (4, 8), (8, 10)] and mm._waves(3) == [(0, 3)]
    eps = mm.STOP_TRANSMITTANCE
    cache, f, o, d, radii = _rays(tiny_cache, 2)
    cfg = replace(preset("fast", "handnerf"), **SMALL, chunk=64)
    torch.manual_seed(0)
    model = HandNeRF(cfg, 2)
    with torch.no_grad():
        model.field.density.bias.fill_(200.0)
        geoms = frame_geometry(cache, f, cfg)
        stop = model.render(geoms, o, d, radii, 0, want_feature=False)
        monkeypatch.setattr(mm, "STOP_TRANSMITTANCE", 0.0)
        full = model.render(geoms, o, d, radii, 0, want_feature=False)
        ref = model.render(geoms, o, d, radii, 0, reference=True)
    assert full["evaluated"] == ref["evaluated"] > stop["evaluated"]
    for k in ("rgb", "opacity", "weights"):
        assert torch.allclose(full[k], ref[k], atol=1e-5, rtol=0), k
        assert float((stop[k] - full[k]).abs().max()) <= eps + 1e-6, k
    far = float(torch.linalg.norm(o, dim=-1).max()) + 1.0  # beyond every hand box (the camera is < 1 m from the hands)
    assert float((stop["depth"] - full["depth"]).abs().max()) <= eps * far + 1e-6
