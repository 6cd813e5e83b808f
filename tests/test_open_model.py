"""The open hand model: MANO file format, a watertight plausible hand, skinning, shape and pose spaces."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from handcli.hand import open_model
from handcli.hand.open_model import BETA_SD, build_open_hand, open_model_dir, rest_design, synth_poses
from handcli.hand.skeleton import BASES_21, FINGERS, MANO_FINGER_CHAINS, MANO_PARENTS, mano_to_21


@pytest.fixture(scope="module")
def right() -> dict:
    return build_open_hand("right")


def _mm(d: dict, beta=None):
    """Vertices (mm), 16 joints (mm) and 21 joints (mm) of the rest model with betas."""
    v = d["v_template"] + (d["shapedirs"] @ (np.zeros(10) if beta is None else np.asarray(beta, float)))
    v = v * 1000.0
    j = d["J_regressor"] @ v
    return v, j, mano_to_21(j, v[d["tip_vertex_ids"]])


def test_mano_keys_shapes_and_types(right):
    v = right["v_template"].shape[0]
    assert 1500 <= v <= 3000 and 3000 <= right["f"].shape[0] <= 6000
    assert right["shapedirs"].shape == (v, 3, 10)
    assert right["posedirs"].shape == (v, 3, 135) and not right["posedirs"].any()
    assert right["J_regressor"].shape == (16, v) and right["weights"].shape == (v, 16)
    assert right["kintree_table"].shape == (2, 16)
    assert right["kintree_table"][0, 0] == 4294967295 and list(right["kintree_table"][0, 1:]) == MANO_PARENTS[1:]
    assert right["hands_components"].shape == (45, 45) and right["hands_mean"].shape == (45,)
    assert right["handcli_model"] == "open-hand/1" and len(right["tip_vertex_ids"]) == 5
    assert right["f"].dtype == np.uint32 and right["f"].max() == v - 1


def test_build_is_deterministic(right):
    again = open_model._build_right.__wrapped__()
    for k in ("v_template", "shapedirs", "weights", "J_regressor", "f", "hands_components", "hands_mean"):
        np.testing.assert_array_equal(again[k], right[k], err_msg=k)


def test_rest_mesh_is_a_closed_single_genus0_surface(right):
    m = trimesh.Trimesh(right["v_template"], right["f"], process=False)
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0
    assert len(m.split(only_watertight=False)) == 1
    assert m.euler_number == 2  # no handles: fingers do not touch each other
    # no fold-overs: every face points the way the distance field grows (outwards)
    design = rest_design()
    v = right["v_template"] * 1000
    centres = v[right["f"]].mean(1)
    grad = open_model._sdf_grad(centres, design)
    assert (np.einsum("ij,ij->i", m.face_normals, grad) > 0).all()
    off = np.abs(open_model.hand_sdf(v, design))  # mm from the designed surface
    assert np.mean(off < 0.1) > 0.99 and off.max() < 2.5
    from trimesh.collision import CollisionManager

    parts = {name: np.flatnonzero(right["weights"][:, MANO_FINGER_CHAINS[name]].sum(1) > 0.99) for name in FINGERS}
    # neighbouring fingers as separate meshes must not collide in the rest pose
    cm = CollisionManager()
    for name, idx in parts.items():
        keep = np.isin(right["f"], idx).all(1)
        cm.add_object(name, trimesh.Trimesh(right["v_template"], right["f"][keep]))
    assert not cm.in_collision_internal()


def test_weights_and_regressor(right):
    w, J = right["weights"], right["J_regressor"]
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0)
    assert (J >= 0).all() and np.allclose(J.sum(1), 1.0)
    # every joint lies inside the hand
    m = trimesh.Trimesh(right["v_template"], right["f"], process=False)
    assert m.contains(J @ right["v_template"]).all()
    # vertices of a phalanx follow the joint at its base (MANO's convention): the tip of each finger is
    # owned by the finger's last joint, the middle of the palm by the wrist
    for f, name in enumerate(FINGERS):
        assert w[right["tip_vertex_ids"][f]].argmax() == MANO_FINGER_CHAINS[name][-1]
    v = right["v_template"] * 1000
    palm = (np.abs(v[:, 0] - 50) < 8) & (np.abs(v[:, 2]) < 8)
    assert palm.any() and (w[palm, 0] > 0.9).all()


def test_skinning_is_smooth_across_a_joint(right):
    """Along the index finger the weights blend over a few millimetres around the PIP joint, and the middle
    of the middle phalanx moves rigidly with the PIP."""
    v, j, _ = _mm(right)
    w = right["weights"]
    u = (j[3] - j[2]) / np.linalg.norm(j[3] - j[2])
    s = (v - j[2]) @ u
    radial = np.linalg.norm((v - j[2]) - s[:, None] * u, axis=1)
    on_finger = radial < 12.0
    near = on_finger & (np.abs(s) < 1.5)
    assert near.sum() > 5 and (w[near, 2] > 0.2).all() and (w[near, 2] < 0.8).all()
    assert np.allclose(w[near, 1] + w[near, 2], 1.0, atol=1e-3)
    far = on_finger & (np.abs(s - 11.0) < 2.0)
    assert far.sum() > 5 and (w[far, 2] > 0.95).all()
    # weight of the PIP rises monotonically along the finger across the joint
    order = np.argsort(s[near])
    assert np.corrcoef(s[near][order], w[near, 2][order])[0, 1] > 0.9


def test_tips_are_the_extreme_vertices_of_each_finger(right):
    v, j, _ = _mm(right)
    for f, name in enumerate(FINGERS):
        last = MANO_FINGER_CHAINS[name][-1]
        d = rest_design()["ends"][last] - j[last]
        d /= np.linalg.norm(d)
        rel = v - j[last]
        s = rel @ d
        radial = np.linalg.norm(rel - s[:, None] * d, axis=1)
        finger = (radial < 12.0) & (s > -5.0)
        tip = right["tip_vertex_ids"][f]
        assert finger[tip]
        assert s[tip] >= s[finger].max() - 0.5


def test_proportions_match_the_spec(right):
    v, j, j21 = _mm(right)
    assert 180.0 <= j21[12, 0] - j21[0, 0] <= 190.0  # wrist to middle fingertip
    reach = {}
    for f, name in enumerate(FINGERS):
        idx = [BASES_21[f] + k for k in range(4)]
        seg = np.linalg.norm(np.diff(j21[idx], axis=0), axis=1)
        reach[name] = seg.sum()
    assert reach["middle"] > reach["ring"] > reach["pinky"] and reach["middle"] > reach["index"] > reach["pinky"]
    # proximal/middle bone lengths (mm) from docs/hand-model.md#reference-proportions, within 10 %
    spec = {"index": (40, 22), "middle": (45, 26), "ring": (41, 26), "pinky": (33, 18), "thumb": (46, 32)}
    for name, lengths in spec.items():
        chain = MANO_FINGER_CHAINS[name]
        got = [np.linalg.norm(j[chain[1]] - j[chain[0]]), np.linalg.norm(j[chain[2]] - j[chain[1]])]
        np.testing.assert_allclose(got, lengths, rtol=0.1, err_msg=name)
    w = right["weights"]
    not_thumb = w[:, MANO_FINGER_CHAINS["thumb"]].sum(1) < 0.5
    band = (v[:, 0] > j[7, 0] - 6) & (v[:, 0] < j[1, 0]) & not_thumb
    assert 80.0 <= np.ptp(v[band, 2]) <= 90.0  # palm width at the knuckles
    mid = (np.abs(v[:, 0] - 50) < 10) & (np.abs(v[:, 2]) < 10)
    assert 25.0 <= np.ptp(v[mid, 1]) <= 31.0  # palm thickness
    for name, (lo, hi) in {"index": (16, 21), "middle": (16, 21), "pinky": (13, 18)}.items():
        b = MANO_FINGER_CHAINS[name][0]
        u = j[b + 1] - j[b]
        L = np.linalg.norm(u)
        u /= L
        s = (v - j[b]) @ u
        r = np.linalg.norm((v - j[b]) - s[:, None] * u, axis=1)
        sel = (w[:, b] > 0.9) & (np.abs(s - L / 2) < 3)
        assert lo <= 2 * r[sel].mean() <= hi, name


def test_shape_directions(right):
    _, j0, t0 = _mm(right)

    def middle_length(j21):
        return np.linalg.norm(np.diff(j21[[9, 10, 11, 12]], axis=0), axis=1).sum()

    _, j, t = _mm(right, np.eye(10)[1] * 2.0)  # finger length
    assert middle_length(t) == pytest.approx(middle_length(t0) * (1 + 2 * BETA_SD[1]), rel=0.02)
    assert np.linalg.norm(j[1] - j[7]) == pytest.approx(np.linalg.norm(j0[1] - j0[7]), rel=1e-3)
    _, j, t = _mm(right, np.eye(10)[2] * 2.0)  # palm width
    assert np.linalg.norm(j[1] - j[7]) > np.linalg.norm(j0[1] - j0[7]) * 1.05
    assert middle_length(t) == pytest.approx(middle_length(t0), rel=0.01)
    v0, _, _ = _mm(right)
    v, j, _ = _mm(right, np.eye(10)[0] * -2.0)  # overall scale about the wrist
    np.testing.assert_allclose(v, v0 * (1 - 2 * BETA_SD[0]), atol=1e-6)
    v3, _, _ = _mm(right, np.eye(10)[3])  # palm thickness
    mid = (np.abs(v0[:, 0] - 50) < 10) & (np.abs(v0[:, 2]) < 10)
    assert np.ptp(v3[mid, 1]) == pytest.approx(np.ptp(v0[mid, 1]) * (1 + BETA_SD[3]), rel=0.05)


def test_extreme_shapes_stay_plausible(right):
    rng = np.random.default_rng(0)
    for _ in range(4):
        beta = rng.uniform(-3, 3, 10)
        v, j, t = _mm(right, beta)
        m = trimesh.Trimesh(v, right["f"], process=False)
        assert m.volume > 0 and m.is_winding_consistent
        assert 140 < t[12, 0] < 235  # hand length
        for f in range(5):
            idx = [BASES_21[f] + k for k in range(4)]
            seg = np.linalg.norm(np.diff(t[idx], axis=0), axis=1)
            assert (seg > 8).all()


def test_pose_space(right):
    c = right["hands_components"]
    np.testing.assert_allclose(c @ c.T, np.eye(45), atol=1e-10)
    design = rest_design()
    rng = np.random.default_rng(5)
    n = 500
    x = synth_poses(design, rng.uniform(0, 1, n), rng.normal(0.2, 0.4, n), rng.uniform(0, 1, n), rng=rng,
                    noise_deg=3.0)
    xc = x - x.mean(0)
    total = (xc**2).sum()
    kept = ((xc @ c[:10].T) ** 2).sum()
    assert kept / total > 0.85  # a compact space: 10 of 45 components hold most of the variance
    # the leading component is whole-hand flexion: all non-thumb flexion angles move together
    axes = open_model.finger_axes(design)
    flex = [c[0].reshape(15, 3)[j - 1] @ axes[name]["flex"] for name in FINGERS[1:] for j in MANO_FINGER_CHAINS[name]]
    assert np.all(np.sign(flex) == np.sign(flex[0])) and min(np.abs(flex)) > 0.05
    # hands_mean: every finger slightly flexed, about its own axis
    mean = right["hands_mean"].reshape(15, 3)
    for name in FINGERS[1:]:
        for j in MANO_FINGER_CHAINS[name]:
            angle = np.degrees(mean[j - 1] @ axes[name]["flex"])
            assert 5.0 < angle < 40.0


def test_left_is_the_mirror(right):
    left = build_open_hand("left")
    np.testing.assert_allclose(left["v_template"][:, 0], -right["v_template"][:, 0])
    np.testing.assert_allclose(left["v_template"][:, 1:], right["v_template"][:, 1:])
    np.testing.assert_allclose(left["shapedirs"][:, 0], -right["shapedirs"][:, 0])
    m = trimesh.Trimesh(left["v_template"], left["f"], process=False)
    assert m.is_watertight and m.volume == pytest.approx(
        trimesh.Trimesh(right["v_template"], right["f"], process=False).volume)
    # the InterHand left-hand fix must not fire on a correct left model
    assert np.abs(left["shapedirs"][:, 0, :] - right["shapedirs"][:, 0, :]).sum() > 1.0
    with pytest.raises(ValueError):
        build_open_hand("middle")


def test_open_model_dir_writes_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDCLI_HOME", str(tmp_path))
    folder = open_model_dir()
    assert folder == tmp_path / "models" / "open-hand-1"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["MANO_LEFT.pkl", "MANO_RIGHT.pkl", "build.txt"]
    mtime = (folder / "MANO_RIGHT.pkl").stat().st_mtime_ns
    assert open_model_dir() == folder
    assert (folder / "MANO_RIGHT.pkl").stat().st_mtime_ns == mtime
    from handcli.hand.mano_io import load_mano_dict

    d = load_mano_dict(folder / "MANO_LEFT.pkl")
    np.testing.assert_array_equal(d["v_template"], build_open_hand("left")["v_template"])
    # a copy written by other code (different fingerprint) is replaced
    (folder / "build.txt").write_text("open-hand/1 0000\n")
    (folder / "MANO_LEFT.pkl").write_bytes(b"stale")
    open_model_dir()
    np.testing.assert_array_equal(load_mano_dict(folder / "MANO_LEFT.pkl")["f"], build_open_hand("left")["f"])
    assert sorted(p.name for p in folder.iterdir()) == files  # no temporary files left
