"""HandModel through smplx: LBS against hand-computed rotations, hands_mean, mirroring, flags, fitting, CLI."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import trimesh

from handcli.errors import InputError
from handcli.hand.model import (
    DATASET_MANO_FLAGS,
    HandModel,
    load_hand_models,
    named_pose,
    plausible_poses,
)
from handcli.hand.open_model import BETA_SD, build_open_hand
from handcli.hand.skeleton import MANO_FINGER_CHAINS, MANO_TO_21, mirror_axis_angle, mirror_points_x


@pytest.fixture(scope="module", autouse=True)
def hand_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("HANDCLI_HOME", str(tmp_path_factory.mktemp("handcli_home")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def flat_right() -> HandModel:
    return HandModel.load("right", flat_hand_mean=True)


def _rodrigues(axis, angle):
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def test_loads_both_sides_through_smplx():
    import smplx

    for side in ("right", "left"):
        m = HandModel.load(side)
        assert isinstance(m.mano, smplx.MANO) and m.is_open and m.side == side
        out = m(torch.zeros(3, 48), torch.zeros(3, 10), torch.zeros(3, 3))
        v = m.num_vertices
        assert out.vertices.shape == (3, v, 3) and out.joints.shape == (3, 21, 3) and out.joints16.shape == (3, 16, 3)
        full = torch.cat([out.joints16, out.vertices[:, m.tip_vertex_ids]], 1)
        assert torch.equal(out.joints, full[:, MANO_TO_21])
        assert m.faces.dtype == np.int64 and m.lbs_weights.shape == (v, 16)
        assert m.parents.tolist() == [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]


def test_lbs_matches_a_hand_computed_rotation(flat_right):
    m = flat_right
    d = build_open_hand("right")
    v0 = d["v_template"]
    j0 = d["J_regressor"] @ v0
    w = d["weights"]
    angle = 0.7
    pose = np.zeros(48)
    pose[3 * 1 + 2] = angle  # joint 1 (index MCP) about +z
    out = m(_t(pose[None]))
    got = out.vertices[0].double().numpy()
    R = _rodrigues([0, 0, 1], angle)
    # vertices owned 100 % by the index MCP or by its children rotate rigidly about the MCP joint
    index_chain = MANO_FINGER_CHAINS["index"]
    rigid = w[:, index_chain].sum(1) > 1 - 1e-9
    assert rigid.sum() > 50
    expected = (v0[rigid] - j0[1]) @ R.T + j0[1]
    np.testing.assert_allclose(got[rigid], expected, atol=2e-6)
    # vertices owned 100 % by the wrist do not move
    still = w[:, 0] > 1 - 1e-9
    assert still.sum() > 100
    np.testing.assert_allclose(got[still], v0[still], atol=1e-6)
    # a blended vertex moves to the weighted blend of the two rigid motions
    mixed = np.flatnonzero((w[:, 0] > 0.3) & (w[:, 1] > 0.3) & (w[:, 0] + w[:, 1] > 1 - 1e-9))
    assert len(mixed)
    i = mixed[0]
    blend = w[i, 0] * v0[i] + w[i, 1] * ((v0[i] - j0[1]) @ R.T + j0[1])
    np.testing.assert_allclose(got[i], blend, atol=2e-6)
    # the tip joint is the tip vertex, rotated
    np.testing.assert_allclose(out.joints[0, 8].double().numpy(), got[m.tip_vertex_ids[1]])


def test_global_orient_and_trans_are_rigid(flat_right):
    m = flat_right
    rng = np.random.default_rng(0)
    hand = rng.normal(0, 0.2, 45)
    shape = rng.normal(0, 1, 10)
    base = m(_t(np.concatenate([np.zeros(3), hand])[None]), _t(shape[None]))
    aa = np.array([0.3, -1.1, 0.5])
    trans = np.array([0.1, -0.2, 0.5])
    moved = m(_t(np.concatenate([aa, hand])[None]), _t(shape[None]), _t(trans[None]))
    R = _rodrigues(aa, np.linalg.norm(aa))
    j0 = m.rest_joints(_t(shape[None]))[0, 0].double().numpy()
    for a, b in ((base.vertices, moved.vertices), (base.joints, moved.joints)):
        exp = (a[0].double().numpy() - j0) @ R.T + j0 + trans
        np.testing.assert_allclose(b[0].double().numpy(), exp, atol=3e-6)


def test_flat_hand_mean_differs_exactly_by_hands_mean(flat_right):
    mean_model = HandModel.load("right", flat_hand_mean=False)
    rng = np.random.default_rng(1)
    pose = rng.normal(0, 0.3, (2, 48))
    shape = rng.normal(0, 1, (2, 10))
    hm = build_open_hand("right")["hands_mean"]
    a = mean_model(_t(pose), _t(shape)).vertices
    b = flat_right(_t(pose + np.concatenate([np.zeros(3), hm])), _t(shape)).vertices
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert (a - flat_right(_t(pose), _t(shape)).vertices).abs().max() > 1e-3


@pytest.mark.parametrize("flat", [True, False])
def test_left_is_the_mirror_of_right(flat):
    right = HandModel.load("right", flat_hand_mean=flat)
    left = HandModel.load("left", flat_hand_mean=flat)
    rng = np.random.default_rng(2)
    pose = rng.normal(0, 0.4, (3, 48))
    shape = rng.normal(0, 1, (3, 10))
    trans = rng.normal(0, 0.1, (3, 3))
    r = right(_t(pose), _t(shape), _t(trans))
    lo = left(_t(mirror_axis_angle(pose)), _t(shape), _t(mirror_points_x(trans)))
    torch.testing.assert_close(lo.vertices, mirror_points_x(r.vertices), atol=2e-6, rtol=0)
    torch.testing.assert_close(lo.joints, mirror_points_x(r.joints), atol=2e-6, rtol=0)
    # plausible poses and named poses mirror too
    pr = plausible_poses(right, [0.6], [0.3], [0.8])
    pl = plausible_poses(left, [0.6], [0.3], [0.8])
    np.testing.assert_allclose(pl, mirror_axis_angle(pr), atol=1e-9)


def _volume(m: HandModel, pose) -> float:
    with torch.no_grad():
        v = m(_t(np.asarray(pose)[None])).vertices[0].double().numpy()
    return trimesh.Trimesh(v, m.faces, process=False).volume


def test_bending_keeps_volume(flat_right):
    m = flat_right
    rest = _volume(m, np.zeros(48))
    for name in ("index", "middle", "pinky"):
        pose = np.zeros(48)
        for j in MANO_FINGER_CHAINS[name]:
            pose[3 * j + 2] = -np.pi / 2  # 90 degrees of flexion at each joint of the finger
        assert abs(_volume(m, pose) / rest - 1) < 0.15, name
    fist = named_pose(m, "fist")
    assert abs(_volume(m, fist) / rest - 1) < 0.15


def test_named_poses(flat_right):
    mean_model = HandModel.load("right")  # flat_hand_mean=False: "flat" must undo hands_mean
    v_flat = mean_model(_t(named_pose(mean_model, "flat")[None])).vertices[0]
    torch.testing.assert_close(v_flat, mean_model.v_template, atol=1e-7, rtol=0)
    j_open = flat_right(_t(named_pose(flat_right, "flat")[None])).joints[0]
    j_fist = flat_right(_t(named_pose(flat_right, "fist")[None])).joints[0]
    for tip in (8, 12, 16, 20):  # fingertips come close to the palm in a fist
        assert (j_fist[tip] - j_fist[0]).norm() < 0.65 * (j_open[tip] - j_open[0]).norm()
    with pytest.raises(InputError):
        named_pose(flat_right, "wave")


def test_shape_changes_the_posed_skeleton(flat_right):
    def middle(beta):
        j = flat_right(torch.zeros(1, 48), _t(beta[None])).joints[0]
        return (j[10:13] - j[9:12]).norm(dim=-1).sum().item(), (j[5] - j[17]).norm().item()

    l0, span0 = middle(np.zeros(10))
    l1, span1 = middle(np.eye(10)[1] * 1.5)
    assert l1 == pytest.approx(l0 * (1 + 1.5 * BETA_SD[1]), rel=0.02) and span1 == pytest.approx(span0, rel=1e-3)
    l2, span2 = middle(np.eye(10)[2] * 1.5)
    assert span2 > span0 * 1.04 and l2 == pytest.approx(l0, rel=0.01)


def test_pca_round_trip(flat_right):
    m = flat_right
    rng = np.random.default_rng(3)
    aa = _t(rng.normal(0, 0.3, (4, 45)))
    coeffs = m.axis_angle_to_pca(aa)
    torch.testing.assert_close(m.pca_to_axis_angle(coeffs), aa, atol=1e-5, rtol=0)
    c6 = _t(rng.normal(0, 1, (4, 6)))
    exp = c6.double().numpy() @ build_open_hand("right")["hands_components"][:6]
    np.testing.assert_allclose(m.pca_to_axis_angle(c6).double().numpy(), exp, atol=1e-5)
    torch.testing.assert_close(m.axis_angle_to_pca(m.pca_to_axis_angle(c6), n=6), c6, atol=1e-5, rtol=0)
    full = m.expand_pca_pose(torch.cat([torch.ones(4, 3), c6], 1))
    assert full.shape == (4, 48) and torch.equal(full[:, :3], torch.ones(4, 3))


def _write_model_dir(folder, right: dict, left: dict):
    folder.mkdir()
    for name, d in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh)


def test_interhand_left_shapedirs_fix(tmp_path):
    right = build_open_hand("right")
    left = build_open_hand("left")
    buggy = dict(left)
    buggy.pop("handcli_model")
    buggy["shapedirs"] = right["shapedirs"].copy()  # the official MANO_LEFT.pkl bug (smplx issue #48)
    _write_model_dir(tmp_path / "mano", right, buggy)
    fixed = HandModel.load("left", tmp_path / "mano", fix_left_shapedirs=True)
    assert fixed.shapedirs_fixed and not fixed.is_open
    np.testing.assert_allclose(fixed.shapedirs[:, 0].double().numpy(), -right["shapedirs"][:, 0], atol=1e-7)
    np.testing.assert_allclose(fixed.shapedirs[:, 1:].double().numpy(), right["shapedirs"][:, 1:], atol=1e-7)
    unfixed = HandModel.load("left", tmp_path / "mano", fix_left_shapedirs=False)
    assert not unfixed.shapedirs_fixed
    # the fixed buggy model now equals the correct mirrored left model
    pose, beta = torch.zeros(1, 48), _t(np.linspace(-2, 2, 10)[None])
    torch.testing.assert_close(fixed(pose, beta).vertices, HandModel.load("left")(pose, beta).vertices,
                               atol=1e-6, rtol=0)
    # the open model's left hand is correct, so the rule does not fire on it
    assert not HandModel.load("left", fix_left_shapedirs=True).shapedirs_fixed
    models = load_hand_models("interhand", tmp_path / "mano")
    assert models["left"].shapedirs_fixed and not models["right"].shapedirs_fixed


def test_dataset_flags_and_errors(tmp_path):
    models = load_hand_models("ho3d")
    assert models["right"].flat_hand_mean and not models["right"].use_pca
    assert load_hand_models("dexycb")["left"].use_pca
    assert set(DATASET_MANO_FLAGS) == {"interhand", "ho3d", "dexycb"}
    with pytest.raises(InputError):
        load_hand_models("freihand")
    with pytest.raises(InputError):
        HandModel.load("right", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not found"):
        HandModel.load("left", tmp_path / "empty")
    with pytest.raises(InputError):
        HandModel.load("center")


def test_real_mano_style_files_without_tips_use_mano_tip_ids(tmp_path):
    """A model without `tip_vertex_ids` (the official files) takes tips from MANO's vertex ids."""
    d = build_open_hand("right")
    d.pop("tip_vertex_ids")
    d.pop("handcli_model")
    _write_model_dir(tmp_path / "mano", d, build_open_hand("left"))
    m = HandModel.load("right", tmp_path / "mano")
    assert m.tip_vertex_ids == [744, 320, 443, 554, 671] and not m.is_open


def test_forward_joints_matches_forward():
    for side in ("right", "left"):
        m = HandModel.load(side)
        rng = np.random.default_rng(4)
        pose, shape, trans = _t(rng.normal(0, 0.5, (3, 48))), _t(rng.normal(0, 1, (3, 10))), _t(rng.normal(0, 1, (3, 3)))
        torch.testing.assert_close(m.forward_joints(pose, shape, trans), m(pose, shape, trans).joints,
                                   atol=2e-6, rtol=0)


def test_fit_to_joints_recovers_joints():
    from handcli.hand.fit import fit_to_joints

    m = HandModel.load("right")
    rng = np.random.default_rng(6)
    b = 3
    hand = plausible_poses(m, rng.uniform(0, 1, b), rng.uniform(-0.2, 0.8, b), rng.uniform(0, 1, b), rng=rng,
                           noise_deg=3.0)
    pose = np.concatenate([rng.normal(0, 1.0, (b, 3)), hand], 1)
    shape, trans = rng.normal(0, 1, (b, 10)), rng.normal(0, 0.2, (b, 3))
    target = m(_t(pose), _t(shape), _t(trans)).joints
    valid = torch.ones(b, 21, dtype=torch.bool)
    valid[0, 4] = False  # a missing thumb tip is ignored, even when it holds NaN
    target = target.clone()
    target[0, 4] = float("nan")
    p, s, t, err = fit_to_joints(m, target, valid, steps=300)
    assert p.shape == (b, 48) and s.shape == (b, 10) and t.shape == (b, 3)
    assert (err < 0.003).all(), err
    got = m(p, s, t).joints
    dist = (got - target).norm(dim=-1)
    assert dist[valid].mean() < 0.003
    assert torch.allclose(err, (torch.where(valid, dist, 0.0)).sum(1) / valid.sum(1), atol=1e-6)
    with pytest.raises(InputError):
        fit_to_joints(m, target, None, steps=1)  # NaN in a joint marked valid


def test_hand_show_cli(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from handcli.commands.hand_cmd import hand_app

    runner = CliRunner()
    areas = {}
    for pose in ("flat", "fist"):
        out = tmp_path / f"{pose}.png"
        res = runner.invoke(hand_app, ["show", "--pose", pose, "--size", "64", "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == str(out)
        img = np.asarray(Image.open(out))
        assert img.shape == (64, 192, 3)
        hand = (img < 250).any(-1)
        assert all(hand[:, k * 64:(k + 1) * 64].mean() > 0.05 for k in range(3))  # a hand in every view
        areas[pose] = hand
    # each view is scaled to fit: a flat hand (long, narrow) and a fist (squat) give different silhouettes
    assert (areas["fist"] != areas["flat"]).mean() > 0.1
    assert areas["fist"][:, :64].mean() > areas["flat"][:, :64].mean()
    np.save(tmp_path / "pose.npy", np.zeros(48))
    res = runner.invoke(hand_app, ["show", "--side", "left", "--pose", str(tmp_path / "pose.npy"), "--shape", "1,2",
                                   "--size", "32", "-o", str(tmp_path / "left.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(hand_app, ["show", "--pose", "1,2,3", "-o", str(tmp_path / "bad.png")])
    assert isinstance(res.exception, InputError) and "48" in str(res.exception)
    res = runner.invoke(hand_app, ["show", "-o", str(tmp_path / "flat.png")])
    assert isinstance(res.exception, InputError)  # exists, no --force
    assert not (tmp_path / "bad.png").exists()
