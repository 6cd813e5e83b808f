"""HandOcc's occupancy-label options: the learned rigid label alignment (handocc/label_align.py) and the label
margin around the annotated mesh (sampler.outside_margin); hand-computed values."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from handcli.errors import InputError
from handcli.methods.handocc.label_align import ALIGN_RADIUS, LabelAlignment
from handcli.methods.handocc.model import PRESETS
from handcli.methods.handocc.sampler import outside_margin

TINY = dict(rays_per_step=128, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
            color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16)  # a step in milliseconds


def _align() -> LabelAlignment:
    joints = torch.zeros(21, 3)
    joints[:, 0] = torch.linspace(0.0, 0.2, 21)  # mean joint (0.1, 0, 0): the right hand's centre
    return LabelAlignment.for_hands({4: [("right", joints)], 7: [("left", -joints)]}, scale=0.1)


def test_alignment_starts_at_identity_and_moves_only_training_hands():
    a = _align()
    x = torch.randn(50, 3)
    assert torch.allclose(a.apply(4, "right", x), x, atol=1e-6)
    assert a.penalty(4, ["right"], 1.0).item() == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        a.trans[0] = torch.tensor([0.01, 0.0, 0.0])  # 1 mm at scale 0.1
    assert a.apply(5, "right", x) is x and a.apply(4, "left", x) is x  # not a training hand
    assert torch.allclose(a.apply(4, "right", x), x + torch.tensor([0.001, 0.0, 0.0]), atol=1e-6)


def test_rotation_about_the_hand_centre_and_its_prior():
    a = _align()
    with torch.no_grad():
        a.rot[0] = torch.tensor([0.0, 0.0, math.pi / 2]) / a.scale  # 90 degrees about z
    c = torch.tensor([[0.1, 0.0, 0.0]])
    p = torch.tensor([[0.15, 0.0, 0.0]])  # 5 cm from the centre along x -> 5 cm along y
    assert torch.allclose(a.apply(4, "right", c), c, atol=1e-6)
    assert torch.allclose(a.apply(4, "right", p), torch.tensor([[0.1, 0.05, 0.0]]), atol=1e-6)
    # prior: rotation displacement at ALIGN_RADIUS, (pi/2 * 50 mm)^2
    assert a.penalty(4, ["right"], 1.0).item() == pytest.approx((math.pi / 2 * ALIGN_RADIUS * 1000) ** 2, rel=1e-5)
    assert a.penalty(7, ["left"], 1.0).item() == pytest.approx(0.0, abs=1e-9)


def test_alignment_gradient_reaches_the_transform():
    a = _align()
    x = torch.randn(20, 3) * 0.02 + torch.tensor([0.1, 0.0, 0.0])
    (a.apply(4, "right", x)[:, 1].sum()).backward()
    assert a.trans.grad[0, 1] == pytest.approx(20 * a.scale) and a.trans.grad[1].abs().sum() == 0
    assert torch.isfinite(a.rot.grad).all()


def test_outside_margin_of_a_box():
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    V = torch.as_tensor(box.vertices, dtype=torch.float32)
    F = torch.as_tensor(box.faces)
    pts = torch.tensor([[0.0, 0.0, 0.051], [0.0, 0.0, 0.06], [0.0, 0.0, 0.0], [0.0, 0.0, 0.046]])
    keep = outside_margin(pts, V, F, 0.003, torch.Generator().manual_seed(0))
    # 1 mm outside, 10 mm outside, 50 mm inside (centre), 4 mm inside
    assert keep.tolist() == [False, True, True, True]


def test_label_margin_must_not_be_negative():
    with pytest.raises(InputError) as e:
        replace(PRESETS["fast"], label_margin=-0.001).check()
    assert e.value.field == "label_margin"
    np.testing.assert_equal(PRESETS["fast"].label_margin, 0.0)


def test_alignment_is_on_by_default_learns_after_refine_start_and_loads(tiny_cache, tmp_path):
    from handcli.methods.base import write_run_config
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.trainer import checkpoint_state, save_atomic, train

    assert PRESETS["fast"].align_labels and PRESETS["paper"].align_labels
    cfg = replace(PRESETS["fast"], **TINY, steps=8, refine_start=0.5)
    torch.manual_seed(0)
    m = HandOccMethod(cfg, tiny_cache, train_cameras=["400002", "400009", "400004"])
    a = m.model.label_align
    assert a.rot.shape == a.trans.shape == (sum(len(m.joints[f]) for f in m.frames), 3)
    assert not a.trans.any() and not a.rot.any()
    (tmp_path / "half").mkdir()
    train(m, tmp_path / "half", steps=8, lr=1e-2, lr_final=1e-2, seed=0, resume=False, ckpt_every=100, stop_at=4)
    assert not a.trans.any() and not a.rot.any()  # nothing before refine_start
    (tmp_path / "run").mkdir()
    train(m, tmp_path / "run", steps=8, lr=1e-2, lr_final=1e-2, seed=0, resume=False, ckpt_every=100)
    assert a.trans.abs().max() > 0  # learned from the occupancy loss
    write_run_config(tmp_path / "run", "handocc", "fast", m.cfg, {"cache": str(tiny_cache)}, 0, "test")
    save_atomic(checkpoint_state(m.model, None, 0), tmp_path / "run" / "checkpoint.pt")
    loaded = HandOccMethod.from_run(tmp_path / "run")
    assert torch.equal(loaded.model.label_align.trans.cpu(), a.trans.detach().cpu())


def test_labels_pose_skeleton_carries_the_labels_from_the_mesh_skeleton(tiny_cache):
    """labels_pose=refined: the labels' source skeletons are those of the cache's posed hand model, and a
    label set carried onto a translated copy of that skeleton moves with it rigidly."""
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.refine import carry_points
    from handcli.methods.handocc.skeletons import frame_joints

    with pytest.raises(InputError) as e:
        replace(PRESETS["fast"], labels_pose="world").check()
    assert e.value.field == "labels_pose"
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, steps=4, labels_pose="refined"), tiny_cache,
                      train_cameras=["400002", "400009", "400004"])
    f = m.frames[0]
    src = m._label_skeletons(f)
    mesh = frame_joints(m.cache, f, "mesh")
    assert [h.side for h in src] == [s for s, _ in mesh] == [s for s, _ in m.joints[f]]
    for h, (_, j) in zip(src, mesh):
        np.testing.assert_allclose(h.joints.cpu().numpy(), j, atol=1e-6)
    P, _ = m.pools[(f, src[0].side)]
    x = P[:500]
    shift = torch.tensor([0.004, -0.002, 0.001])
    moved = m.model.hand(src[0].joints + shift, src[0].side)
    np.testing.assert_allclose(carry_points(x, src[0], src[0]).numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(carry_points(x, src[0], moved).numpy(), (x + shift).numpy(), atol=1e-5)


def _occ_term(m, pose: str) -> float:
    m.cfg = replace(m.cfg, labels_pose=pose)
    loss, logs = m.train_step(0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    return logs["occ"]


def test_reposed_labels_are_the_drawn_labels_when_mesh_and_joints_agree(tiny_cache):
    """On ideal data the posed mesh's skeleton is the annotated one: reposing the labels changes nothing."""
    from handcli.methods.handocc.method import HandOccMethod

    torch.manual_seed(0)
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, steps=4), tiny_cache, train_cameras=["400002", "400009"])
    assert m.cfg.labels_pose == "auto" and PRESETS["paper"].labels_pose == "auto"
    assert m.labels_pose() == "joints"  # "auto" before (and, on data the labels fit, after) the anneal's decision
    joints = _occ_term(m, "joints")
    assert joints == pytest.approx(_occ_term(m, "mesh"), rel=1e-4)
    assert _occ_term(m, "auto") == joints


def test_reposed_labels_differ_when_the_mesh_fit_is_off(tmp_path):
    """Realistic data (MANO fits 8 mm per frame off, joints exact): the reposed labels give another loss."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import realism_config

    write_interhand(tmp_path / "ih", InterHandSynthConfig(
        frames=1, cameras=3, mono_cameras=0, seqs=("right",), seed=3, black_frame=False, null_mano=False,
        realism=realism_config("realistic", "interhand", mano_frame_mm=8.0, joint_frame_mm=0.0, joint_seq_mm=0.0)))
    preprocess_interhand(tmp_path / "ih", tmp_path / "c.h5", scale=0.25)
    torch.manual_seed(0)
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, steps=4), tmp_path / "c.h5")
    src = m._label_skeletons(m.frames[0])[0].joints.cpu().numpy()
    ann = m.joints[m.frames[0]][0][1].cpu().numpy()
    assert np.sqrt(((src - ann) ** 2).sum(-1).mean()) > 0.003  # the fit's skeleton is off the joints
    assert abs(_occ_term(m, "joints") - _occ_term(m, "mesh")) > 1e-3
