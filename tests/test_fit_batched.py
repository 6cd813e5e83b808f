"""Batched and sequence (warm-started) fitting of the open hand model to 3D joints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handcli.errors import InputError
from handcli.hand.fit import fit_sequence, fit_to_joints, sequence_runs
from handcli.hand.model import HandModel, plausible_poses


def _sequence(m, n_seq=2, length=4, seed=0):
    """Smooth synthetic sequences: joints (T, 21, 3), starts (T,), ground-truth vertices (T, V, 3)."""
    rng = np.random.default_rng(seed)
    poses, shapes, trans, starts = [], [], [], []
    for _ in range(n_seq):
        t = np.arange(length)
        fingers = plausible_poses(m, 0.5 + 0.4 * np.sin(0.3 * t + rng.uniform(0, 6)), 0.3 + 0 * t,
                                  0.5 + 0.3 * np.sin(0.2 * t), rng=rng, noise_deg=3.0)
        axis = rng.normal(size=3)
        r0 = Rotation.random(random_state=rng)
        orient = np.stack([(Rotation.from_rotvec(axis / np.linalg.norm(axis) * 0.1 * k) * r0).as_rotvec()
                           for k in t])
        poses.append(np.concatenate([orient, fingers], 1))
        shapes.append(np.tile(rng.normal(0, 1, 10), (length, 1)))
        trans.append(np.cumsum(rng.normal(0, 0.01, (length, 3)), 0))
        starts.append(t == 0)
    f = lambda x: torch.as_tensor(np.concatenate(x), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = m(f(poses), f(shapes), f(trans))
    return out.joints, np.concatenate(starts), out.vertices


def test_sequence_runs_never_cross_a_sequence_start():
    starts = np.array([1, 0, 0, 0, 0, 1, 0, 0], bool)
    assert sequence_runs(8, starts, 3).tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert sequence_runs(8, None, 1).tolist() == [0] * 8
    with pytest.raises(InputError):
        sequence_runs(8, starts[:3], 3)


def test_batched_fit_gives_each_frame_its_own_fit():
    m = HandModel.load("right")
    joints, _, _ = _sequence(m, 1, 3, seed=1)
    pb, sb, tb, eb = fit_to_joints(m, joints, None, steps=60)
    for i in range(3):
        p, s, t, e = fit_to_joints(m, joints[i:i + 1], None, steps=60)
        assert float(eb[i]) <= float(e[0]) + 2e-5  # within 0.02 mm of the per-frame reference
        assert torch.allclose(pb[i], p[0], atol=1e-3) and torch.allclose(tb[i], t[0], atol=1e-4)


def test_fit_sequence_error_no_worse_than_per_frame_reference():
    m = HandModel.load("right")
    joints, starts, gt = _sequence(m, 2, 4, seed=2)
    steps = 120
    ref = [fit_to_joints(m, joints[i:i + 1], None, steps=steps) for i in range(len(joints))]
    ref_err = torch.cat([r[3] for r in ref])
    pose, shape, trans, err = fit_sequence(m, joints, None, starts, segment=4, min_batch=1, steps=steps,
                                           warm_steps=steps)
    assert err.shape == (8,) and pose.shape == (8, 48)
    # warm-started frames: no worse than the per-frame reference on average (0.1 mm slack)
    assert float(err.mean()) <= float(ref_err.mean()) + 1e-4, (err, ref_err)
    with torch.no_grad():
        v = m(pose, shape, trans).vertices
        v_ref = m(*(torch.cat([r[k] for r in ref]) for k in range(3))).vertices
    verr, verr_ref = (v - gt).norm(dim=-1).mean(), (v_ref - gt).norm(dim=-1).mean()
    assert float(verr) <= float(verr_ref) + 5e-4  # mesh error vs the ground truth: within 0.5 mm


def test_cost_per_call_does_not_grow_with_the_number_of_frames():
    """Model evaluations per fit are the same for 1 frame and for 16 (what makes batching fast)."""
    m = HandModel.load("right")
    joints, starts, _ = _sequence(m, 2, 8, seed=3)
    calls = []
    real = m.forward_joints

    def counting(pose, *a, **k):
        calls.append(pose.shape[0])
        return real(pose, *a, **k)

    m.forward_joints = counting
    fit_to_joints(m, joints[:1], None, steps=5)
    one = len(calls)
    calls.clear()
    fit_to_joints(m, joints, None, steps=5)
    assert len(calls) == one and max(calls) == 16
    calls.clear()
    fit_sequence(m, joints, None, starts, segment=4, min_batch=1, steps=5, warm_steps=5)
    assert max(calls) == 4  # 4 runs of 4 frames in lockstep
    assert len(calls) <= 4 * (one + 1)  # 4 rounds, whatever the number of runs


def test_interhand_joints_mode_fits_all_frames_at_once(synth_ih, synth_cache, tmp_path, monkeypatch):
    """Without MANO files: one batched fit per hand side for the whole selection, meshes near the truth."""
    from handcli.data import interhand_preprocess as ip
    from handcli.data.cache import Cache
    from handcli.hand import fit

    calls = []
    real = fit.fit_sequence

    def counting(model, joints, *a, **k):
        calls.append(len(joints))
        return real(model, joints, *a, **{**k, "steps": 150, "warm_steps": 150})

    monkeypatch.setattr(fit, "fit_sequence", counting)
    out = tmp_path / "joints.h5"
    ip.preprocess_interhand(synth_ih, out, scale=0.25, mesh_from="joints", seqs="0001_dh_touch")
    with Cache(out) as c, Cache(synth_cache) as ref:
        assert c.hand_model("right")["mesh_source"] == "fit-to-joints"
        truth = {ref.frame(i).key: ref.frame(i) for i in range(ref.num_frames)}
        errs = []
        n = c.num_frames
        for i in range(n):
            rec = c.frame(i)
            if rec.key not in truth:  # the params cache drops the frame whose MANO entry is null
                continue
            for side, h in rec.hands.items():
                errs.append(np.linalg.norm(h.vertices - truth[rec.key].hands[side].vertices, axis=1).mean())
    assert calls == [n, n]  # right and left: each one call for all frames
    assert len(errs) >= 4 and np.mean(errs) < 0.006, errs  # metres: the open model refitted to its own joints
