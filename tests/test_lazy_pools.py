"""HandOcc's labelled occupancy points: drawn per hand on first use, bounded in memory, reproducible."""

from __future__ import annotations

from dataclasses import replace

import torch

from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.model import PRESETS
from handcli.methods.trainer import train

TINY = dict(rays_per_step=128, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
            color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16, steps=2, pool_cache=2)


def test_pools_are_drawn_on_first_use_bounded_and_redrawn_identically(tiny_cache, tmp_path):
    m = HandOccMethod(replace(PRESETS["fast"], **TINY), tiny_cache, train_cameras=["400002", "400009"])
    assert m.pools.drawn == 0 and len(m.pools) == 0  # construction draws no occupancy points
    train(m, tmp_path, steps=2, lr=1e-3, lr_final=1e-4, seed=0, resume=False, ckpt_every=100)
    assert 1 <= m.pools.drawn <= 4 and len(m.pools) <= 2  # only the drawn frames' hands, at most 2 kept
    keys = [(f, s) for f in m.frames for s, _ in m.joints[f]]
    first = {k: tuple(t.clone() for t in m.pools[k]) for k in keys[:3]}
    assert len(m.pools) == 2  # the bound holds while more hands are drawn
    for k, (p, y) in first.items():  # evicted pools come back the same
        p2, y2 = m.pools[k]
        assert torch.equal(p, p2) and torch.equal(y, y2)
    other = HandOccMethod(replace(PRESETS["fast"], **TINY), tiny_cache, train_cameras=["400002"], seed=1)
    assert not torch.equal(other.pools[keys[0]][0], first[keys[0]][0])  # the run's seed picks the points
