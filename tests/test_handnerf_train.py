"""HandNeRF and Pose-NeRF train on CPU; resume reproduces an uninterrupted run; pose adaptation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from handcli.methods.handnerf.method import HandNeRFMethod
from handcli.methods.handnerf.model import preset
from handcli.methods.trainer import read_metrics, train

TINY = dict(rays_per_step=96, n_samples=12, steps=4, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4,
            feat_dim=8, ec_hidden=16, ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01)


def _method(cache, depth, name="handnerf", **kw):
    cfg = replace(preset("fast", name), **{**TINY, **kw})
    return HandNeRFMethod(cfg, cache, method=name, depth_path=depth, train_cameras=["400002", "400009"],
                          eval_cameras=["400004"])


@pytest.mark.parametrize("name", ["handnerf", "posenerf"])
def test_method_trains_a_few_steps(tiny_cache, tiny_depth, tmp_path, name):
    torch.manual_seed(0)
    m = _method(tiny_cache, tiny_depth, name)
    assert (name == "posenerf") == (not hasattr(m.model, "ec"))
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    last = train(m, tmp_path, steps=4, lr=1e-3, lr_final=1e-4, seed=0, resume=False, log_every=2, ckpt_every=2,
                 snapshot_every=4)
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == [2, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs)
    assert {"rgb", "depth", "hs"} <= set(last) and last["samples_per_ray"] > 0
    assert (tmp_path / "checkpoint.pt").is_file() and list((tmp_path / "snapshots").glob("*.png"))
    changed = [k for k, v in m.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("field.") for k in changed)
    # samples are only evaluated near the mesh: far fewer than n_samples per ray
    assert last["samples_per_ray"] < 12


def test_resume_matches_uninterrupted(tiny_cache, tiny_depth, tmp_path):
    torch.manual_seed(1)
    a = _method(tiny_cache, tiny_depth)
    init = {k: v.clone() for k, v in a.model.state_dict().items()}
    (tmp_path / "a").mkdir()
    train(a, tmp_path / "a", steps=4, lr=1e-3, lr_final=1e-4, seed=5, resume=False, ckpt_every=100)
    b = _method(tiny_cache, tiny_depth)
    b.model.load_state_dict(init)
    (tmp_path / "b").mkdir()
    train(b, tmp_path / "b", steps=4, lr=1e-3, lr_final=1e-4, seed=5, resume=False, ckpt_every=100, stop_at=2)
    c = _method(tiny_cache, tiny_depth)  # a fresh process would rebuild the method like this
    train(c, tmp_path / "b", steps=4, lr=1e-3, lr_final=1e-4, seed=5, resume=True, ckpt_every=100)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    diff = {k: float((sa[k] - sc[k]).abs().max()) for k in sa}
    assert max(diff.values()) < 1e-6, diff
    assert any(not torch.equal(sa[k], init[k]) for k in sa)


def test_two_hand_frames_render_both_hands(tiny_cache, tiny_depth):
    m = _method(tiny_cache, tiny_depth)
    two = [f for f in m.frames if len(m.geoms[f]) == 2]
    assert two, "the tiny dataset has interacting frames"
    g = m.geoms[two[0]]
    centre = 0.5 * (g[0].box_min + g[0].box_max)
    origins = centre[None] - torch.tensor([[0.0, 0.0, 1.0]])
    out = m.model.render(g, origins, torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([1e-3]), 0)
    assert out["weights"].shape[1] == 2 * m.cfg.n_samples  # both hands' sample sets, merged
