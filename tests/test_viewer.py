"""``handcli view``: camera conversion, finger editing, progressive rendering, HandOcc's pose and appearance
hooks, the fast --help, and the whole viewer in a real headless browser (Debian's chromium + chromedriver)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import handcli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# ---------------------------------------------------------------------------------------------------------
# cameras


def test_opencv_camera_round_trip_and_projection():
    from handcli.camera import look_at, project, transform
    from handcli.viewer.camera import ViewCamera, opencv_camera, render_size, vertical_fov, viser_pose

    eye, target, up = np.array([0.3, -0.4, 0.5]), np.array([0.01, 0.02, 0.9]), np.array([0.1, -0.2, 1.0])
    M = np.eye(4)
    M[:3, :3] = look_at(eye, target, up)
    M[:3, 3] = -M[:3, :3] @ eye
    wxyz, pos = viser_pose(M)
    assert np.allclose(pos, eye) and np.isclose(np.linalg.norm(wxyz), 1.0)
    w, h = render_size(16 / 9, 160)
    assert (w, h) == (160, 90) and render_size(0.5, 100) == (50, 100)
    K, M2 = opencv_camera(ViewCamera(tuple(wxyz), tuple(pos), np.radians(40.0), w / h), w, h)
    assert np.allclose(M2, M, atol=1e-9)
    assert np.isclose(np.degrees(vertical_fov(K, h)), 40.0)
    # the look-at target projects to the image centre; a point on the image's up side has a smaller row
    uv = project(transform(M2, np.stack([target, target + 0.05 * up])), K)
    assert np.allclose(uv[0], [(w - 1) / 2, (h - 1) / 2], atol=1e-6)
    assert uv[1, 1] < uv[0, 1]


def test_nearest_camera_prefers_position_and_direction():
    from handcli.render.orbit import orbit_cameras
    from handcli.viewer.camera import nearest_camera

    cams = [M for _, M in orbit_cameras([0, 0, 0], 1.0, 8, 10.0, None, 32, 32)]
    for k in (0, 3, 7):
        q = cams[k].copy()
        q[:3, 3] += 0.01  # slightly moved
        assert nearest_camera(cams, q) == k
    with pytest.raises(ValueError):
        nearest_camera([], cams[0])


# ---------------------------------------------------------------------------------------------------------
# finger editing


def _hand_joints(side: str) -> np.ndarray:
    import torch

    from handcli.hand.model import HandModel, named_pose

    m = HandModel.load(side, None)
    with torch.no_grad():
        return m(torch.tensor(named_pose(m, "flat")[None], dtype=torch.float32)).joints[0].double().numpy()


@pytest.mark.parametrize("side", ["right", "left"])
def test_flex_fingers_curls_towards_the_palm_and_keeps_bones(side):
    import torch

    from handcli.hand.pose_edit import edit_skeleton
    from handcli.hand.skeleton import PARENTS_21
    from handcli.hand.skeleton_frames import canonicalize, mirror_x

    j = _hand_joints(side)
    assert np.allclose(edit_skeleton(j, side, flex=[0] * 5), j)
    out = edit_skeleton(j, side, flex=[0, 60, 0, 0, 0])  # the index finger only

    def bones(x):
        return np.linalg.norm(x[1:] - x[[PARENTS_21[k] for k in range(1, 21)]], axis=1)

    assert np.allclose(bones(out), bones(j), atol=1e-9)
    moved = np.nonzero(np.linalg.norm(out - j, axis=1) > 1e-9)[0].tolist()
    assert moved == [6, 7, 8]  # index middle, distal and tip joints; its base and the rest stay

    def canon(x):
        t = torch.from_numpy(x)
        return canonicalize(mirror_x(t) if side == "left" else t).numpy()

    # the fist's fingertips lie on the palm side (+z of the canonical frame): flexion goes there
    assert canon(out)[8, 2] > canon(j)[8, 2] + 0.02
    assert canon(edit_skeleton(j, side, flex=[0, -20, 0, 0, 0]))[8, 2] < canon(j)[8, 2]


def _canon_axes(j, side):
    import torch

    from handcli.hand.skeleton_frames import canonical_frame, mirror_x

    t = torch.from_numpy(np.asarray(j, dtype=np.float64))
    R, _ = canonical_frame(mirror_x(t) if side == "left" else t)
    return R.numpy()


def _bone_lengths(x):
    from handcli.hand.skeleton import PARENTS_21

    return np.linalg.norm(x[1:] - x[[PARENTS_21[k] for k in range(1, 21)]], axis=1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_spread_turns_each_finger_about_the_palm_normal_by_its_angle(side):
    from handcli.hand.pose_edit import edit_skeleton

    j = _hand_joints(side)
    assert np.allclose(edit_skeleton(j, side, spread=[0] * 5), j)
    angles = [10.0, 15.0, 20.0, 25.0, 30.0]
    out = edit_skeleton(j, side, spread=angles)
    assert np.allclose(_bone_lengths(out), _bone_lengths(j), atol=1e-9)
    assert np.allclose(out[[0, 1, 5, 9, 13, 17]], j[[0, 1, 5, 9, 13, 17]])  # the wrist and every finger's base stay
    R = _canon_axes(j, side)
    assert np.allclose(_canon_axes(out, side), R, atol=1e-9)  # the palm is not moved
    mirror = np.array([-1.0, 1.0, 1.0]) if side == "left" else np.ones(3)
    for f, deg in enumerate(angles):
        base, tip = 4 * f + 1, 4 * f + 4
        before, after = (R @ ((j[tip] - j[base]) * mirror)), (R @ ((out[tip] - out[base]) * mirror))
        # in the palm plane the finger turned by exactly its angle, away from the middle finger: towards -y
        # (the thumb's side) for thumb, index and middle, towards +y for ring and pinky; its height is kept
        turn = np.degrees(np.arctan2(after[1], after[0]) - np.arctan2(before[1], before[0]))
        assert turn == pytest.approx((-1 if f < 3 else 1) * deg, abs=1e-6)
        assert after[2] == pytest.approx(before[2], abs=1e-12)


@pytest.mark.parametrize("side", ["right", "left"])
def test_turn_wrist_moves_the_hand_about_the_wrist_by_hand_computed_axes(side):
    from handcli.hand.pose_edit import edit_skeleton

    j = _hand_joints(side)
    assert np.allclose(edit_skeleton(j, side, wrist=[0, 0, 0]), j)
    ex, ey, ez = _canon_axes(j, side)
    mirror = np.array([-1.0, 1.0, 1.0]) if side == "left" else np.ones(3)

    def x_axis(x):  # wrist -> middle finger base, in right-hand space
        d = (x[9] - x[0]) * mirror
        return d / np.linalg.norm(d)

    for wrist, x_to in (([90, 0, 0], ez), ([0, 90, 0], -ey), ([0, 0, 90], ex)):
        out = edit_skeleton(j, side, wrist=wrist)
        assert np.allclose(out[0], j[0]) and np.allclose(_bone_lengths(out), _bone_lengths(j), atol=1e-9)
        assert np.allclose(x_axis(out), x_to, atol=1e-9)  # flexion: towards the palm; deviation: towards the thumb
    # the twist turns the palm normal about the x axis: +90 degrees takes z to -y
    assert np.allclose(_canon_axes(edit_skeleton(j, side, wrist=[0, 0, 90]), side)[2], -ey, atol=1e-9)
    # the whole hand moves rigidly: distances between all joints are kept
    out = edit_skeleton(j, side, wrist=[30, -10, 45])
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    assert np.allclose(d(out), d(j), atol=1e-9)


def test_edit_skeleton_edits_commute_and_mirror_left_hands():
    import torch

    from handcli.hand.pose_edit import edit_skeleton
    from handcli.hand.skeleton_frames import mirror_x

    def one_by_one(j, order):
        for kind in order:
            j = edit_skeleton(j, "right", **{kind: edits[kind]})
        return j

    j = _hand_joints("right")
    edits = {"flex": [10, 40, 20, 0, 60], "spread": [5, 10, 0, 10, 15], "wrist": [20, -10, 30]}
    out = edit_skeleton(j, "right", **edits)
    assert np.allclose(out, one_by_one(j, ("spread", "flex", "wrist")), atol=1e-12)
    # every edit is a rotation in the hand's own frame, so their order does not matter (an edit about a world
    # axis, or about an axis the previous edit moved without moving the hand's frame, would break this)
    assert np.allclose(out, one_by_one(j, ("wrist", "flex", "spread")), atol=1e-9)
    # a left hand is edited as the mirrored right hand: the same anatomical motion
    left = mirror_x(torch.from_numpy(j)).numpy()
    assert np.allclose(edit_skeleton(left, "left", **edits), mirror_x(torch.from_numpy(out)).numpy())


# ---------------------------------------------------------------------------------------------------------
# progressive rendering


def test_progressive_renderer_previews_while_moving_then_full_at_rest():
    from handcli.viewer.progressive import ProgressiveRenderer

    log, lock = [], threading.Lock()

    def render(req, scale):
        time.sleep(0.01)
        return (req, scale)

    def publish(req, result, full):
        with lock:
            log.append((req, result[1], full))

    pr = ProgressiveRenderer(render, publish, preview_scale=0.25, rest_s=0.2)
    try:
        for k in range(10):  # a camera drag: a request every 20 ms, never resting 0.2 s
            pr.request(k)
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while pr.full < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        pr.stop()
    fulls = [e for e in log if e[2]]
    assert fulls == [(9, 1.0, True)]  # one full image, of the last camera only
    previews = [e for e in log if not e[2]]
    assert len(previews) >= 3 and all(s == 0.25 for _, s, _ in previews)
    assert previews[-1][0] == 9 and log[-1] == (9, 1.0, True)  # the full image comes after the last preview
    assert pr.previews == len(previews) and pr.errors == 0


def test_progressive_renderer_survives_a_failing_render():
    from handcli.viewer.progressive import ProgressiveRenderer

    done = []

    def render(req, scale):
        if req == "bad":
            raise RuntimeError("boom")
        return req

    pr = ProgressiveRenderer(render, lambda req, r, full: done.append((r, full)), preview_scale=1.0, rest_s=0.0)
    try:
        pr.request("bad")
        deadline = time.monotonic() + 5
        while pr.errors < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        pr.request("good")
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pr.stop()
    assert pr.errors == 1 and done == [("good", True)]  # preview_scale=1: no preview pass


def test_colourise_channels():
    from handcli.viewer.method_view import PALETTE, colourise

    r = {"rgb": np.full((2, 3, 3), 0.5), "opacity": np.array([[0, 1, 1], [0, 0, 1]], float),
         "depth": np.array([[0, 1.0, 2.0], [0, 0, 1.5]]), "semantic": np.array([[0, 1, 2], [0, 3, 1]], np.uint8)}
    assert (colourise(r, "rgb") == 128).all()
    assert colourise(r, "opacity")[0, 1, 0] == 255 and colourise(r, "opacity")[0, 0, 0] == 0
    d = colourise(r, "depth")[..., 0]
    assert d[0, 0] == 0 and d[0, 1] == 255 and d[0, 1] > d[1, 2] > d[0, 2] > 0  # near = bright
    assert np.array_equal(colourise(r, "semantic")[1, 1], PALETTE[3])


# ---------------------------------------------------------------------------------------------------------
# HandOcc hooks used by the viewer


def test_handocc_skeleton_and_appearance_hooks(occ_run, tiny_cache):
    import torch

    from handcli.hand.pose_edit import edit_skeleton
    from handcli.methods.handocc.method import HandOccMethod, frame_joints
    from handcli.render.orbit import orbit_from_cache

    torch.set_num_threads(1)
    m = HandOccMethod.from_run(occ_run, tiny_cache, "cpu")
    f = next(f for f in range(m.cache.num_frames) if len(frame_joints(m.cache, f)) == 1)
    ob = orbit_from_cache(m.cache, f, 1)
    K, M = ob.cameras[0]
    base = m.render_camera(f, K, M, ob.height, ob.width)
    (side, j), = m.skeletons(f)
    m.set_skeletons(f, [(side, edit_skeleton(j, side, flex=[0, 80, 80, 80, 80]))])
    assert not np.allclose(m.skeletons(f)[0][1], j)
    fist = m.render_camera(f, K, M, ob.height, ob.width)
    a, b = base["opacity"] > 0.5, fist["opacity"] > 0.5
    assert a.sum() > 50 and (a ^ b).sum() > 0.1 * a.sum()  # bent fingers change the silhouette
    m.set_skeletons(f, None)
    assert np.allclose(m.skeletons(f)[0][1], j)
    assert np.array_equal(m.render_camera(f, K, M, ob.height, ob.width)["opacity"], base["opacity"])

    crops = m.appearance_crops()
    assert list(crops) == ["capture 0"] and crops["capture 0"].shape == (m.cfg.crop_size, m.cfg.crop_size, 3)
    tinted = np.clip(crops["capture 0"].astype(float) * [0.3, 1.0, 2.0], 0, 255).astype(np.uint8)
    m.set_appearance_crop(tinted)
    other = m.render_camera(f, K, M, ob.height, ob.width)
    assert np.array_equal(other["opacity"], base["opacity"])
    assert np.abs(other["rgb"][a] - base["rgb"][a]).mean() > 0.02
    m.set_appearance_crop(None)
    assert np.array_equal(m.render_camera(f, K, M, ob.height, ob.width)["rgb"], base["rgb"])


# ---------------------------------------------------------------------------------------------------------
# every method through the method contract (MethodView: what a browser session asks of the run)


def _check_method_view(run, cache):
    import torch

    from handcli.methods.base import read_run_config
    from handcli.registry import method_class
    from handcli.viewer.camera import ViewCamera, vertical_fov, viser_pose
    from handcli.viewer.method_view import MethodView, ViewSettings

    torch.set_num_threads(1)
    m = method_class(read_run_config(run)["method"]).from_run(run, cache, "cpu")
    mv = MethodView(m, resolution=40)
    st = ViewSettings(mv.start_frame)
    j = mv.cache.views_of_frame(st.frame)[-1]
    c = int(mv.view_table["camera"][j])
    cam = mv.cameras[c]
    wxyz, pos = viser_pose(cam["world_to_cam"])
    view = ViewCamera(tuple(wxyz), tuple(pos), vertical_fov(cam["K"], cam["height"]), cam["width"] / cam["height"])
    full, small = mv.render(st, view, 1.0), mv.render(st, view, 0.25)
    assert max(full["rgb"].shape[:2]) == 40 and max(small["rgb"].shape[:2]) == 10
    assert np.allclose(full["world_to_cam"], cam["world_to_cam"])
    assert mv.nearest_view(st.frame, full["world_to_cam"]) == (j, c)
    assert "rgb" in mv.channels and "opacity" in mv.channels
    return m, mv, st, full


@pytest.mark.slow
def test_method_view_handnerf(tiny_cache, tmp_path):
    run = tmp_path / "pn"
    r = handcli("train", tiny_cache, "-o", run, "--method", "posenerf", "--steps", "2", "--set", "rays_per_step=96",
                "--set", "n_samples=12", "--set", "hidden=32", "--set", "layers=2", "--set", "skips=[]",
                "--set", "latent_dim=4", "--set", "ec_hidden=16", "--set", "ec_layers=2", "--set", "voxel=0.01")
    assert r.returncode == 0, r.stderr
    _m, mv, st, full = _check_method_view(run, tiny_cache)
    assert not mv.edits_skeleton and mv.skeletons(st) is None and not mv.appearances


def test_method_view_handocc(occ_run, tiny_cache):
    _m, mv, st, full = _check_method_view(occ_run, tiny_cache)
    assert mv.edits_skeleton and mv.has_meshes and "semantic" in mv.channels and list(mv.appearances) == ["capture 0"]
    sk = dict(mv.skeletons(st))
    bent = replace_flex(st, {s: [0, 80, 80, 80, 80] for s in sk})
    assert all(not np.allclose(dict(mv.skeletons(bent))[s], sk[s]) for s in sk)
    from dataclasses import replace

    from handcli.hand.pose_edit import edit_skeleton

    edited = replace(st, spread={s: [10, 10, 0, 10, 10] for s in sk}, wrist={s: [30, 0, 45] for s in sk})
    for s, j in mv.skeletons(edited):
        assert np.allclose(j, edit_skeleton(sk[s], s, None, [10, 10, 0, 10, 10], [30, 0, 45]))
        assert not np.allclose(j, sk[s])
    meshes = mv.meshes(st, 24)
    assert meshes and all(len(x.faces) > 20 for x in meshes.values())


def test_method_view_edits_start_from_the_pose_the_run_renders(occ_run, tiny_cache):
    """The viewer's edits start from the run's refined skeleton (as ``render --edit`` does), not the cache's:
    with 2 mm offsets put into the run's refinement, an unedited frame shows the refined joints and an edited
    one the edit of them; the unedited render is the method's own."""
    import torch

    from handcli.hand.pose_edit import edit_skeleton
    from handcli.methods.handocc.method import HandOccMethod, frame_joints
    from handcli.render.orbit import orbit_from_cache
    from handcli.viewer.method_view import MethodView, ViewSettings

    torch.set_num_threads(1)
    m = HandOccMethod.from_run(occ_run, tiny_cache, "cpu")
    ref = m.model.refine
    with torch.no_grad():
        ref.offsets.fill_(0.002 / ref.scale)
    f = next(f for f in range(m.cache.num_frames) if frame_joints(m.cache, f) and ref.row(f, "right") is not None)
    ob = orbit_from_cache(m.cache, f, 1)
    K, M = ob.cameras[0]
    own = m.render_camera(f, K, M, ob.height, ob.width)["opacity"]
    cache_pose = dict(frame_joints(m.cache, f))
    mv = MethodView(m, resolution=40)
    st = ViewSettings(f)
    sk = dict(mv.skeletons(st))
    assert np.allclose(sk["right"], cache_pose["right"] + 0.002, atol=1e-6)
    wrist = ViewSettings(f, wrist={s: [30, 0, 0] for s in sk})
    for s, j in mv.skeletons(wrist):
        assert np.allclose(j, edit_skeleton(sk[s], s, wrist=[30, 0, 0]))
    with mv.lock:  # the unedited frame after an edited one renders the run's own pose again
        mv._apply(wrist)
        bent = m.render_camera(f, K, M, ob.height, ob.width)["opacity"]
        mv._apply(st)
        again = m.render_camera(f, K, M, ob.height, ob.width)["opacity"]
    assert not np.array_equal(bent, own) and np.array_equal(again, own)


def replace_flex(st, flex):
    from dataclasses import replace

    return replace(st, flex=flex)


@pytest.mark.slow
def test_method_view_handnerf_ho(tmp_path):
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    write_dexycb(tmp_path / "dex", DexYCBSynthConfig(subjects=2, seqs=1, frames=3, cameras=3, seed=5))
    preprocess_dexycb(tmp_path / "dex", tmp_path / "cache.h5", scale=0.25)
    sets = dict(rays_per_step=64, n_samples=8, hidden=32, layers=2, skips="[1]", color_hidden=16, cnn_channels=8,
                volume_feat_dim=8, img_feat_dim=16, render_size=24, input_size=32, voxel=0.02, grid_multiple=8,
                pe_deg=4, mesh_voxel=0.01, chunk=1024)
    r = handcli("train", tmp_path / "cache.h5", "-o", tmp_path / "run", "--method", "handnerf-ho", "--steps", "2",
                "--threads", "1", *sum((["--set", f"{k}={v}"] for k, v in sets.items()), []))
    assert r.returncode == 0, r.stderr
    m, mv, st, full = _check_method_view(tmp_path / "run", tmp_path / "cache.h5")
    assert mv.has_input_view and "semantic" in mv.channels and mv.has_meshes
    assert full["input_view"] in mv.cache.views_of_frame(st.frame)  # the view the network encoded
    assert set(mv.meshes(st, 16)) >= {"hand", "object"}


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_view_help_is_fast_and_does_not_import_torch():
    code = ("import sys; from handcli.cli import app\n"
            "try:\n    app(['view', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "bad = [m for m in ('torch', 'numpy', 'h5py', 'cv2', 'viser') if m in sys.modules]\n"
            "assert not bad, bad\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr
    assert "--port" in r.stdout and "--host" in r.stdout and "127.0.0.1" in r.stdout
    # CPU time, not wall time: the test machine is shared, and waiting for a core is not the command's cost
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.5, cpu


def test_view_bad_input(tmp_path):
    r = handcli("view", tmp_path / "nope")
    assert r.returncode == 2 and "config.json" in r.stderr and r.stdout == ""
    r = handcli("view", tmp_path / "nope", "--preview-scale", "0")
    assert r.returncode == 2 and "preview-scale" in r.stderr and r.stdout == ""


# ---------------------------------------------------------------------------------------------------------
# the viewer in a real browser


def _start_viewer(run, cache, log: Path, *extra):
    """Start ``handcli view`` on a free port (stderr to ``log``, so a full pipe never blocks it) -> (process, URL)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "handcli.cli", "view", str(run), str(cache), "--port", "0",
                              "--resolution", "64", *extra], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    lines = []
    t = threading.Thread(target=lambda: lines.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(60)
    if not lines or not lines[0].startswith("http://127.0.0.1:"):
        p.kill()
        raise AssertionError(f"no URL on stdout: {lines!r}\n{log.read_text()}")
    return p, lines[0].strip()


def _full_frames(driver) -> int:
    m = re.search(r"full-resolution frames: (\d+)", driver.find_element("tag name", "body").text)
    return int(m.group(1)) if m else 0


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_until_idle(driver, quiet_s: float = 1.5, timeout: float = 45) -> None:
    """Wait until no new full-resolution frame arrived for ``quiet_s`` seconds, then for the browser to draw."""
    deadline = time.monotonic() + timeout
    n, since = _full_frames(driver), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.25)
        k = _full_frames(driver)
        if k != n:
            n, since = k, time.monotonic()
    time.sleep(0.5)


def _hand_pixels(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(skin-coloured mask, near-black mask) of the central region of a canvas screenshot."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)
    H, W = img.shape[:2]
    c = img[int(0.2 * H):int(0.8 * H), int(0.3 * W):int(0.7 * W)]  # clear of the GUI panel and notifications
    R, G, B = c[..., 0], c[..., 1], c[..., 2]
    skin = (R > 40) & (R > B + 12) & (R >= G)
    black = c.max(-1) < 25
    return skin, black


# a system package, not a Python one: skipped with its reason on a machine without it, but never in CI
# (.ci/run installs it and sets HANDCLI_REQUIRE_BROWSER=1, so a missing browser fails there)
@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists())
                    and not os.environ.get("HANDCLI_REQUIRE_BROWSER"),
                    reason="needs Debian's chromium and chromium-driver packages (apt-get install chromium "
                           "chromium-driver)")
def test_viewer_in_headless_chromium(occ_run, tiny_cache, tmp_path):
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager look for a browser download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    proc, url = _start_viewer(occ_run, tiny_cache, tmp_path / "view.err")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
              f"--user-data-dir={tmp_path / 'chromium'}", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"):
        opts.add_argument(a)
    driver = None
    try:
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        driver.get(url)
        _wait(lambda: _full_frames(driver) >= 1, 45, "the first full-resolution frame")
        body = driver.find_element("tag name", "body").text
        assert "handocc" in body and "ground truth: frame" in body and "thumb" in body
        # the ground-truth image beside the render (a portrait cache view, taller than wide)
        assert any(i.size["height"] > 60 and i.size["height"] > i.size["width"]
                   for i in driver.find_elements("tag name", "img"))
        canvas = _wait(lambda: next((c for c in driver.find_elements("tag name", "canvas") if c.size["width"] > 400),
                                    None), 10, "the 3D canvas")
        _wait_until_idle(driver)  # the canvas settles its size (a re-render) before the last image is drawn
        shot = canvas.screenshot_as_png
        (tmp_path / "view.png").write_bytes(shot)
        skin, black = _hand_pixels(shot)
        # the hand sits at the orbit centre = the middle of the canvas, on the render's black background
        assert skin.sum() > 300, skin.sum()
        assert black.mean() > 0.3, black.mean()
        ys, xs = np.nonzero(skin)
        assert abs(xs.mean() / skin.shape[1] - 0.5) < 0.2 and abs(ys.mean() / skin.shape[0] - 0.5) < 0.25

        # orbit the camera by dragging: previews while moving, then a new full frame of another view
        n = _full_frames(driver)
        ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(60, 0).move_by_offset(
            60, 10).release().perform()
        _wait(lambda: _full_frames(driver) > n, 45, "a full frame after the drag")
        assert int(re.search(r"previews: (\d+)", driver.find_element("tag name", "body").text).group(1)) > 1
        _wait_until_idle(driver)
        shot2 = canvas.screenshot_as_png
        skin2, _ = _hand_pixels(shot2)
        assert skin2.sum() > 100 and (skin2 ^ skin).sum() > 50  # the hand, seen from elsewhere

        def set_slider(label: str, value: str) -> None:
            box = driver.find_element("xpath", f"//label[normalize-space()='{label}']"
                                               "/ancestor::*[.//input[@type='text']][1]//input[@type='text']")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(value, Keys.ENTER)

        # bend four fingers with the skeleton sliders: the hand re-renders with another silhouette
        n = _full_frames(driver)
        for finger in ("index", "middle", "ring", "pinky"):
            set_slider(f"right {finger}", "80")
        _wait(lambda: _full_frames(driver) > n, 45, "a full frame after bending the fingers")
        _wait_until_idle(driver)
        skin3, _ = _hand_pixels(canvas.screenshot_as_png)
        assert skin3.sum() > 100 and (skin3 ^ skin2).sum() > 0.1 * skin2.sum()

        # turn the wrist: the bent hand moves as a whole, another silhouette again
        n = _full_frames(driver)
        set_slider("right wrist twist", "90")
        _wait(lambda: _full_frames(driver) > n, 45, "a full frame after turning the wrist")
        _wait_until_idle(driver)
        skin4, _ = _hand_pixels(canvas.screenshot_as_png)
        assert skin4.sum() > 100 and (skin4 ^ skin3).sum() > 0.1 * skin3.sum()
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.stdout.read() == ""  # the URL was all it printed on stdout
