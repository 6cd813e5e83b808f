"""HandNeRF per-frame geometry: built on first use, bounded in memory, stored in the run and reused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from handcli.methods.base import write_run_config
from handcli.methods.handnerf.geometry_store import STORE_DIR, FrameGeometry, GeometryStore
from handcli.methods.handnerf.method import HandNeRFMethod, frame_geometry
from handcli.methods.handnerf.model import preset
from handcli.methods.trainer import train

TINY = dict(rays_per_step=64, n_samples=8, steps=4, hidden=16, layers=2, skips=(), color_hidden=8, latent_dim=4,
            feat_dim=8, ec_hidden=8, ec_layers=2, pose_hidden=8, pose_layers=1, pose_embed=4, voxel=0.01)


def _method(cache, depth, frames, **kw):
    cfg = replace(preset("fast"), **{**TINY, **kw})
    return HandNeRFMethod(cfg, cache, depth_path=depth, train_cameras=["400002", "400009"], train_frames=frames)


def _stored(run):
    return sorted((run / STORE_DIR).rglob("*.npz"))


def test_nothing_is_built_before_the_first_step_and_resume_render_build_nothing(tiny_cache, tiny_depth, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    a = _method(tiny_cache, tiny_depth, [1])
    assert a.geoms.built == 0 and len(a.geoms) == 0  # construction builds no geometry
    train(a, run, steps=4, lr=1e-3, lr_final=1e-4, seed=0, resume=False, ckpt_every=1, stop_at=2)
    assert a.geoms.built == 1 and a.geoms.hits == 1  # one frame, built once, then served from memory
    assert len(_stored(run)) == 1
    data = {"cache": str(tiny_cache), "frames": [1], **a.run_data()}
    write_run_config(run, "handnerf", "fast", a.cfg, data, 0, "test")
    b = _method(tiny_cache, tiny_depth, [1])  # a fresh process resuming the run
    train(b, run, steps=4, lr=1e-3, lr_final=1e-4, seed=0, resume=True, ckpt_every=1)
    assert (b.geoms.built, b.geoms.loaded) == (0, 1)
    r = HandNeRFMethod.from_run(run)
    view = r.cache.views_of_frame(1)[0]
    with torch.no_grad():
        out = r.render_view(view)
        assert out["rays"] > 0 and (r.geoms.built, r.geoms.loaded) == (0, 1)
        r.render_view(r.cache.views_of_frame(2)[0])  # a frame training never drew: built once, then stored
    assert r.geoms.built == 1 and len(_stored(run)) == 2


def test_stored_geometry_is_exactly_the_built_one(tiny_cache, tmp_path):
    from handcli.data.cache import Cache

    cfg = replace(preset("fast"), **TINY)
    cache = Cache(tiny_cache)
    two = next(f for f in range(cache.num_frames) if len(cache.frame(f).hands) == 2)
    g = FrameGeometry(cache, cfg.voxel, cfg.norm_th + cfg.voxel, "cpu", capacity=4)
    g.attach(tmp_path)
    built = g[two]
    again = FrameGeometry(cache, cfg.voxel, cfg.norm_th + cfg.voxel, "cpu", capacity=4, store=GeometryStore(
        tmp_path / STORE_DIR))[two]
    fresh = frame_geometry(cache, two, cfg)
    assert [x.side for x in again] == ["right", "left"] == [x.side for x in fresh]
    for x, y, z in zip(built, again, fresh):
        for k in ("box_min", "box_max", "grid", "A_pose", "A_can", "trans", "pose", "wrist"):
            assert torch.equal(getattr(x, k), getattr(y, k)) and torch.equal(getattr(y, k), getattr(z, k)), k


def test_memory_is_bounded_and_evicted_frames_come_back_from_the_store(tiny_cache, tmp_path):
    from handcli.data.cache import Cache

    cache = Cache(tiny_cache)
    g = FrameGeometry(cache, 0.01, 0.03, "cpu", capacity=2)
    g.attach(tmp_path)
    for f in range(4):
        g[f]
    assert len(g) == 2 and 0 not in g and 3 in g
    g[0]
    assert (g.built, g.loaded) == (4, 1) and len(g) == 2
    # another grid spacing is another key: built, never read from the first one's entries
    h = FrameGeometry(cache, 0.02, 0.03, "cpu", capacity=2)
    h.attach(tmp_path)
    h[0]
    assert (h.built, h.loaded) == (1, 0)
    assert len(list((tmp_path / STORE_DIR).rglob("f0000000-*.npz"))) == 2


def test_a_damaged_store_entry_is_rebuilt(tiny_cache, tmp_path):
    from handcli.data.cache import Cache

    cache = Cache(tiny_cache)
    g = FrameGeometry(cache, 0.01, 0.03, "cpu", capacity=1)
    g.attach(tmp_path)
    grid = g[0][0].grid.clone()
    (p,) = (tmp_path / STORE_DIR).rglob("*.npz")
    p.write_bytes(p.read_bytes()[:100])  # truncated, as a full disk would leave it
    h = FrameGeometry(cache, 0.01, 0.03, "cpu", capacity=1)
    h.attach(tmp_path)
    assert torch.equal(h[0][0].grid, grid) and (h.built, h.loaded) == (1, 0)
    assert np.load(p, allow_pickle=False)["0_grid"].shape == tuple(grid.shape)  # rewritten whole
