"""HandOcc's per-frame skeleton refinement (handocc/refine.py): it lowers the joint error against the realistic
profile's exact sidecar, a training frame renders with its refined skeleton (other skeletons do not), and a
resumed run with refinement is exact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from handcli.methods.handocc.method import HandOccMethod, frames_joints
from handcli.methods.handocc.model import PRESETS
from handcli.methods.trainer import checkpoint_state, save_atomic, train

TINY_FULL = dict(rays_per_step=128, occ_points=256, pool_points=2048, occ_hidden=16, occ_layers=2, color_hidden=16,
                 color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16)


def _tiny(cache, **kw) -> HandOccMethod:
    cfg = replace(PRESETS["fast"], **{**TINY_FULL, "steps": 6, **kw})
    return HandOccMethod(cfg, cache, train_cameras=["400002", "400009", "400004"])


def _view(m: HandOccMethod, frame: int):
    vt = m.cache.view_table()
    j = int(np.nonzero(vt["frame"] == frame)[0][0])
    cam = m.cache.cameras()[int(vt["camera"][j])]
    return cam["K"], cam["world_to_cam"], cam["height"], cam["width"]


def test_refinement_is_on_by_default_and_starts_at_zero(tiny_cache):
    assert PRESETS["fast"].refine and PRESETS["paper"].refine
    torch.manual_seed(0)
    m = _tiny(tiny_cache)
    ref = m.model.refine
    n_hands = sum(len(m.joints[f]) for f in m.frames)
    assert ref.offsets.shape == (n_hands, 21, 3) and not ref.offsets.any()
    f = m.frames[0]
    for (side, j), (side2, j2) in zip(m.joints[f], m.skeletons(f)):
        assert side == side2 and np.array_equal(j.cpu().numpy(), j2)
    assert not _tiny(tiny_cache, refine=False).model.__dict__["_modules"].get("refine")


def test_training_frame_renders_with_its_refined_skeleton(tiny_cache, tmp_path):
    torch.manual_seed(0)
    m = _tiny(tiny_cache)
    f = next(f for f in m.frames if len(m.joints[f]) == 2)
    side, joints = m.joints[f][0]
    shift = torch.zeros(21, 3)
    shift[5:9] = torch.tensor([0.004, -0.003, 0.002])  # bend the index finger by a few mm
    row = m.model.refine.index(f, side, joints)
    with torch.no_grad():
        m.model.refine.offsets[row] = shift / m.model.refine.scale
    view = _view(m, f)
    refined = m.render_camera(f, *view)
    assert np.allclose(m.skeletons(f)[0][1], (joints.cpu() + shift).numpy(), atol=1e-6)
    # the same frame with the refined joints given explicitly (an edited pose is not refined again)
    moved = [(s, (j.cpu() + shift).numpy() if s == side else j.cpu().numpy()) for s, j in m.joints[f]]
    m.set_skeletons(f, moved)
    explicit = m.render_camera(f, *view)
    m.set_skeletons(f, None)
    np.testing.assert_allclose(refined["opacity"], explicit["opacity"], atol=1e-5)
    np.testing.assert_allclose(refined["rgb"], explicit["rgb"], atol=1e-5)
    # set_skeletons renders what it is given: the annotation itself, given explicitly, gets no offsets either
    m.set_skeletons(f, [(s, j.cpu().numpy()) for s, j in m.joints[f]])
    assert np.allclose(m.skeletons(f)[0][1], joints.cpu().numpy())
    m.set_skeletons(f, None)
    assert np.allclose(m.skeletons(f)[0][1], (joints.cpu() + shift).numpy(), atol=1e-6)
    without = m.model.refine.offsets.detach().clone()
    with torch.no_grad():
        m.model.refine.offsets.zero_()
    annotated = m.render_camera(f, *view)
    assert np.abs(annotated["opacity"] - refined["opacity"]).max() > 0.1  # the offsets do change the render
    with torch.no_grad():
        m.model.refine.offsets.copy_(without)
    # a run folder keeps the refinement: from_run renders the training frame with it
    run = tmp_path / "run"
    run.mkdir()
    from handcli.methods.base import write_run_config

    write_run_config(run, "handocc", "fast", m.cfg, {"cache": str(tiny_cache)}, 0, "test")
    save_atomic(checkpoint_state(m.model, None, 0), run / "checkpoint.pt")
    loaded = HandOccMethod.from_run(run)
    again = loaded.render_camera(f, *view)
    np.testing.assert_allclose(again["opacity"], refined["opacity"], atol=1e-5)
    np.testing.assert_allclose(loaded.skeletons(f)[0][1], m.skeletons(f)[0][1], atol=1e-7)


def test_resume_with_refinement_is_exact(tiny_cache, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    torch.manual_seed(1)
    a = _tiny(tiny_cache, refine_start=0.0, w_refine=0.0)
    init = {k: v.clone() for k, v in a.model.state_dict().items()}
    train(a, tmp_path / "a", steps=6, lr=1e-3, lr_final=1e-4, seed=5, resume=False, ckpt_every=100)
    b = _tiny(tiny_cache, refine_start=0.0, w_refine=0.0)
    b.model.load_state_dict(init)
    train(b, tmp_path / "b", steps=6, lr=1e-3, lr_final=1e-4, seed=5, resume=False, ckpt_every=100, stop_at=3)
    c = _tiny(tiny_cache, refine_start=0.0, w_refine=0.0)
    train(c, tmp_path / "b", steps=6, lr=1e-3, lr_final=1e-4, seed=5, resume=True, ckpt_every=100)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert set(sa) == set(sc) and "refine.offsets" in sa
    assert sa["refine.offsets"].abs().max() > 0  # the offsets were learned ...
    for k in sa:  # ... and the resumed run ends exactly where the uninterrupted one did
        assert torch.equal(sa[k], sc[k]), k


@pytest.mark.slow
def test_refinement_reduces_the_joint_error(tmp_path):
    """Tiny realistic InterHand data (joint noise raised to 6 mm so that a short run can show it): after a
    brief training the refined joints are closer to the sidecar's exact joints than the annotated ones."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.data.shards import open_cache
    from handcli.synth.interhand import InterHandSynthConfig, exact_annotation_copy, write_interhand
    from handcli.synth.realism import realism_config

    root, exact = tmp_path / "ih", tmp_path / "ih_exact"
    write_interhand(root, InterHandSynthConfig(frames=2, cameras=6, mono_cameras=0, seqs=("right",), seed=3,
                                               black_frame=False, null_mano=False,
                                               realism=realism_config("realistic", "interhand", joint_frame_mm=6.0)))
    exact_annotation_copy(root, exact)  # the same dataset with the sidecar's exact annotations
    preprocess_interhand(root, tmp_path / "ann.h5", scale=0.25)
    preprocess_interhand(exact, tmp_path / "exact.h5", scale=0.25)
    (tmp_path / "run").mkdir()
    torch.manual_seed(0)
    cfg = replace(PRESETS["fast"], steps=200, rays_per_step=512, occ_points=1024, pool_points=4096)
    m = HandOccMethod(cfg, tmp_path / "ann.h5", seed=0)
    train(m, tmp_path / "run", steps=cfg.steps, lr=cfg.lr, lr_final=cfg.lr_final, seed=0, resume=False,
          log_every=100)
    with open_cache(tmp_path / "exact.h5") as c:
        truth = frames_joints(c, m.frames)
    ann, ref = [], []
    for f in m.frames:
        for (side, j), (side_t, jt) in zip(m.joints[f], truth[f]):
            assert side == side_t
            ann.append(np.linalg.norm(j.cpu().numpy() - jt, axis=-1))
            ref.append(np.linalg.norm(m.skeletons(f)[[s for s, _ in m.joints[f]].index(side)][1] - jt, axis=-1))
    rms = [float(np.sqrt(np.mean(np.concatenate(e) ** 2))) * 1000 for e in (ann, ref)]
    assert 5.0 < rms[0] < 8.0, rms  # the configured annotation error is there
    assert rms[1] < 0.95 * rms[0], rms


def test_bone_gradient_is_finite_for_points_on_a_bone():
    """The refinement backpropagates into the bones through the point-to-bone distance; a sample lying on a
    bone (distance 0) must give a zero gradient, not NaN (which would poison the offsets)."""
    from handcli.hand.skeleton_frames import segment_distance

    a = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[0.03, 0.0, 0.0]], requires_grad=True)
    x = torch.tensor([[0.01, 0.0, 0.0], [0.01, 0.01, 0.0]])
    d = segment_distance(x, a, b)
    d.sum().backward()
    assert d[0, 0] == 0 and abs(float(d[1, 0].detach()) - 0.01) < 1e-6
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert torch.allclose(a.grad + b.grad, torch.tensor([[0.0, -1.0, 0.0]]))  # only the off-bone point pulls


def test_label_points_follow_their_bones(tiny_cache):
    """carry_points: the identity for the same skeleton, a rigid motion of the whole skeleton moves the points
    with it, and moving one fingertip moves only the points attached to that finger's last bone."""
    from handcli.methods.handocc.refine import carry_points
    from handcli.methods.handocc.sampler import inside_capsules

    torch.manual_seed(0)
    m = _tiny(tiny_cache)
    f = next(f for f in m.frames if len(m.joints[f]) == 2)
    g = torch.Generator().manual_seed(1)
    for side, j in m.joints[f]:
        a = m.model.hand(j, side)
        x = a.box_min + (a.box_max - a.box_min) * torch.rand(4000, 3, generator=g)
        x = x[inside_capsules(x, a.start, a.end, a.radii)]
        assert len(x) > 200
        assert torch.allclose(carry_points(x, a, a), x, atol=1e-6)
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
        R = q * torch.sign(torch.linalg.det(q))  # a proper rotation
        t = torch.tensor([0.01, -0.02, 0.005])
        moved = m.model.hand(j @ R.T + t, side)
        assert torch.allclose(carry_points(x, a, moved), x @ R.T + t, atol=2e-5)
        tip = j.clone()
        tip[8] += 0.004 * (j[8] - j[7]) / (j[8] - j[7]).norm() + torch.tensor([0.0, 0.002, 0.0])
        y = carry_points(x, a, m.model.hand(tip, side))
        shift = (y - x).norm(dim=-1)
        bone = (segment_distance_to_bones(a, x) - a.radii).argmin(-1)
        assert float(shift[bone != 7].max()) < 1e-6 and float(shift[bone == 7].min()) > 1e-4


def segment_distance_to_bones(hand, x):
    from handcli.hand.skeleton_frames import segment_distance

    return segment_distance(hand.to_right(x), hand.frames.start, hand.frames.end)


def test_training_step_with_labels_following_bones(tiny_cache):
    """The occupancy term of a step sees the carried points: same step, same offsets, another loss."""
    torch.manual_seed(0)
    m = _tiny(tiny_cache, refine_start=0.0, labels_pose="bones")
    with torch.no_grad():
        m.model.refine.offsets.normal_(0.0, 0.03)  # refined skeletons ~5 mm off the annotation
    occ = {}
    for follow in (True, False):
        m.cfg = replace(m.cfg, labels_pose="bones" if follow else "mesh")
        loss, logs = m.train_step(0, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss)
        occ[follow] = logs["occ"]
    assert occ[True] != occ[False]


def test_older_runs_labels_follow_bones_loads_as_bones(tmp_path):
    """``labels_follow_bones`` was folded into ``labels_pose``: an older config.json still loads, as trained."""
    import json

    from handcli.errors import InputError
    from handcli.methods.base import read_run_config, write_run_config

    write_run_config(tmp_path, "handocc", "fast", replace(PRESETS["fast"], labels_pose="mesh"),
                     {"cache": "c.h5"}, 0, "test")
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["config"]["labels_follow_bones"] = True  # as a run written before the fold has it
    (tmp_path / "config.json").write_text(json.dumps(doc))
    read = read_run_config(tmp_path)  # every command reads a run through this
    assert read["config"]["labels_pose"] == "bones" and "labels_follow_bones" not in read["config"]

    old = {"labels_pose": "mesh", "labels_follow_bones": True, "steps": 7}
    cfg = HandOccMethod.config_from_dict(old)
    assert cfg.labels_pose == "bones" and cfg.steps == 7 and "labels_follow_bones" in old  # the input is not changed
    assert HandOccMethod.config_from_dict({"labels_follow_bones": True}).labels_pose == "bones"  # before labels_pose
    for pose in ("joints", "refined"):  # the switch applied only to "mesh"
        assert HandOccMethod.config_from_dict({"labels_pose": pose, "labels_follow_bones": True}).labels_pose == pose
    assert HandOccMethod.config_from_dict({"labels_pose": "mesh", "labels_follow_bones": False}).labels_pose == "mesh"
    with pytest.raises(InputError, match="unknown config key"):
        HandOccMethod.config_from_dict({"labels_follow_bone": True})


def test_older_runs_without_occ_anneal_load_as_trained(tmp_path):
    """A config.json written before ``occ_anneal`` annealed as its fields said (the defaults then: no anneal); its
    checkpoint has no ``label_carved`` and still loads."""
    import json

    from handcli.methods.base import read_run_config, write_run_config

    write_run_config(tmp_path, "handocc", "fast", PRESETS["fast"], {"cache": "c.h5"}, 0, "test")
    doc = json.loads((tmp_path / "config.json").read_text())
    for key, before in (("occ_anneal_start", 1.0), ("occ_anneal_end", 1.0), ("w_occ_final", 0.0)):
        doc["config"][key] = before
    del doc["config"]["occ_anneal"], doc["config"]["anneal_carved"]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    cfg = HandOccMethod.config_from_dict(read_run_config(tmp_path)["config"])
    assert (cfg.occ_anneal, cfg.occ_anneal_start, cfg.occ_anneal_end, cfg.w_occ_final) == ("on", 1.0, 1.0, 0.0)
    cfg = HandOccMethod.config_from_dict({"occ_anneal_start": 0.2, "occ_anneal_end": 0.5})  # an older anneal run
    assert (cfg.occ_anneal, cfg.occ_anneal_start, cfg.w_occ_final) == ("on", 0.2, 0.0)
    assert HandOccMethod.config_from_dict({"occ_anneal": "auto"}).w_occ_final == 0.25  # today's keep the defaults
    _assert_loads_without("label_carved")


def _assert_loads_without(buffer: str) -> None:
    """A HandOcc checkpoint without ``buffer`` (an anneal-evidence buffer newer than it) loads it as zeros."""
    from handcli.methods.handocc.model import HandOcc

    state = HandOcc(PRESETS["fast"]).state_dict()
    del state[buffer]
    model = HandOcc(PRESETS["fast"])
    getattr(model, buffer).fill_(3.0)
    model.load_state_dict(state)
    assert getattr(model, buffer).tolist() == [0.0, 0.0]


def test_older_auto_anneal_runs_decide_by_the_hull_check_alone(tmp_path):
    """A run written before ``anneal_missed`` loads with 1 (its labels' coverage was never measured, and nothing
    exceeds a share of 1) and a checkpoint without ``label_missed`` loads with zeros; today's runs keep 0.005."""
    import json

    from handcli.methods.base import read_run_config, write_run_config

    write_run_config(tmp_path, "handocc", "fast", PRESETS["fast"], {"cache": "c.h5"}, 0, "test")
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["config"]["anneal_missed"] == 0.005
    assert HandOccMethod.config_from_dict(read_run_config(tmp_path)["config"]).anneal_missed == 0.005
    del doc["config"]["anneal_missed"]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    cfg = HandOccMethod.config_from_dict(read_run_config(tmp_path)["config"])
    assert (cfg.occ_anneal, cfg.anneal_missed) == ("auto", 1.0)
    _assert_loads_without("label_missed")


def _rotation(axis, angle) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.tensor(Rotation.from_rotvec(np.asarray(axis, float) * angle).as_matrix(), dtype=torch.float32)


def test_transfer_moves_an_unseen_hand_by_the_common_offset_in_its_own_frame():
    """Two training hands (one rotated and moved) whose offsets are the same vector in their canonical frames: an
    unseen hand, rotated again, gets that vector rotated with it; left hands mirror it."""
    from handcli.hand.skeleton_frames import canonical_frame, mirror_x
    from handcli.methods.handocc.refine import SkeletonRefinement

    torch.manual_seed(0)
    base = torch.randn(21, 3) * 0.03
    Q1, Q2 = _rotation([0, 0, 1], 0.7), _rotation([1, 1, 0] / np.sqrt(2), -1.1)
    hands = {0: [("right", base)], 1: [("right", base @ Q1.T + torch.tensor([0.1, 0.0, 0.2]))]}
    ref = SkeletonRefinement.for_hands(hands, np.zeros(2, int), scale=0.1)
    c = torch.randn(21, 3) * 0.002  # the common offset, canonical frame
    with torch.no_grad():
        for i, (_, [(_, j)]) in enumerate(sorted(hands.items())):
            R, _ = canonical_frame(j)
            ref.offsets[i] = (c @ R) / ref.scale  # world offset R^T c per joint
    torch.testing.assert_close(ref.common_offset("right"), c, atol=1e-6, rtol=0)
    unseen = base @ Q2.T - 0.05
    R, _ = canonical_frame(unseen)
    torch.testing.assert_close(ref.transfer("right", unseen), unseen + c @ R, atol=1e-6, rtol=0)
    assert ref.common_offset("left") is None
    torch.testing.assert_close(ref.transfer("left", unseen), unseen)  # no left training hand: unchanged
    left = SkeletonRefinement.for_hands({0: [("left", mirror_x(base))]}, np.zeros(1, int), scale=0.1)
    with torch.no_grad():
        left.offsets[0] = mirror_x(ref.offsets[0])  # the mirror image of the right hand's offset
    torch.testing.assert_close(left.transfer("left", mirror_x(unseen)), mirror_x(ref.transfer("right", unseen)),
                               atol=1e-6, rtol=0)


def test_unseen_frames_render_with_the_transfer_edited_ones_as_given(tiny_cache):
    torch.manual_seed(0)
    cfg = replace(PRESETS["fast"], **{**TINY_FULL, "steps": 6})
    m = HandOccMethod(cfg, tiny_cache, train_cameras=["400002", "400009", "400004"], train_frames=[0])
    unseen = next(f for f in range(1, m.cache.num_frames) if frames_joints(m.cache, [f])[f])
    with torch.no_grad():
        m.model.refine.offsets.normal_(0.0, 0.02)  # ~2 mm per joint, with a common part
    cache = frames_joints(m.cache, [unseen])[unseen]
    got = dict(m.skeletons(unseen))
    for side, j in cache:
        want = m.model.refine.transfer(side, torch.as_tensor(j)).numpy()
        assert np.allclose(got[side], want, atol=1e-6) and np.abs(want - j).max() > 1e-4
    m.set_skeletons(unseen, cache)  # an edited pose renders as given
    assert all(np.allclose(dict(m.skeletons(unseen))[s], j) for s, j in cache)
    m.set_skeletons(unseen, None)  # restored: the cache's joints, with the transfer again
    assert all(np.allclose(dict(m.skeletons(unseen))[s], got[s], atol=1e-6) for s, _ in cache)
