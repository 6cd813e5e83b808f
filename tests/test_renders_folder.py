"""The renders folder format, depth colouring, contact sheets, videos and orbit cameras."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest

from handcli.data.shards import open_cache
from handcli.errors import InputError
from handcli.render import video as video_mod
from handcli.render.orbit import default_intrinsics, orbit_cameras, orbit_from_cache
from handcli.render.renders_folder import (
    SCHEMA,
    RendersWriter,
    colorize_depth,
    contact_sheet,
    error_heatmap,
    grid_shape,
    load_render_view,
    read_renders,
)
from handcli.render.video import read_video, write_video

K0 = default_intrinsics(40, 32)
M0 = np.eye(4)


def _views(rng, n=2, H=32, W=40):
    out = []
    for i in range(n):
        rgb = rng.random((H, W, 3))
        depth = (rng.random((H, W)) + 0.5).astype(np.float32)
        depth[: H // 4] = 0.0
        opacity = rng.random((H, W))
        sem = rng.integers(0, 4, (H, W))
        out.append((rgb, depth, opacity, sem))
    return out


@pytest.fixture()
def renders(tmp_path):
    rng = np.random.default_rng(0)
    views = _views(rng)
    w = RendersWriter(tmp_path / "r", "handnerf", tmp_path / "run", tmp_path / "cache.h5", "views", {"a": 1})
    for i, (rgb, depth, opacity, sem) in enumerate(views):
        w.add(rgb, depth, opacity, {"cache_view": 5 + i, "frame": 1, "frame_key": "k", "camera": "400002",
                                    "K": K0, "world_to_cam": M0, "seconds": 0.5, "name": f"v{i}"},
              semantic=sem if i == 0 else None)
    w.close()
    return tmp_path / "r", views


def test_writer_roundtrip(renders):
    d, views = renders
    doc = json.loads((d / "renders.json").read_text())
    assert doc["schema"] == SCHEMA == "handcli.renders/1" and doc["kind"] == "views"
    assert doc["method"] == "handnerf" and doc["config"] == {"a": 1} and doc["handcli_version"]
    v0 = doc["views"][0]
    assert v0["rgb"] == "rgb/0000.png" and v0["depth"] == "depth/0000.npy" and v0["semantic"] == "semantic/0000.png"
    assert "semantic" not in doc["views"][1] and (d / "depth/0001.png").is_file()
    assert (v0["width"], v0["height"], v0["cache_view"], v0["seconds"]) == (40, 32, 5, 0.5)
    r = read_renders(d)
    assert r["path"] == d and len(r["views"]) == 2
    np.testing.assert_array_equal(r["views"][0]["K"], K0)
    for view, (rgb, depth, opacity, sem) in zip(r["views"], views):
        a = load_render_view(r, view)
        np.testing.assert_array_equal(a["rgb"], np.round(rgb * 255) / 255)  # 8-bit PNG, exact rounding
        np.testing.assert_array_equal(a["depth"], depth)  # float32 npy, lossless
        assert np.abs(a["opacity"] - opacity).max() <= 0.5 / 255 + 1e-12
    np.testing.assert_array_equal(load_render_view(r, r["views"][0])["semantic"], views[0][3])
    assert load_render_view(r, r["views"][1])["semantic"] is None


def test_writer_rejects_bad_arrays(tmp_path):
    w = RendersWriter(tmp_path / "r", "m", None, None, "orbit", {})
    rgb = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="NaN"):
        w.add(rgb, np.full((8, 8), np.nan), np.zeros((8, 8)), {"K": K0, "world_to_cam": M0})
    with pytest.raises(ValueError, match="depth"):
        w.add(rgb, np.zeros((8, 9)), np.zeros((8, 8)), {"K": K0, "world_to_cam": M0})
    with pytest.raises(ValueError, match="semantic"):
        w.add(rgb, np.zeros((8, 8)), np.zeros((8, 8)), {"K": K0, "world_to_cam": M0}, semantic=np.full((8, 8), 4))
    with pytest.raises(ValueError, match="kind"):
        RendersWriter(tmp_path / "r2", "m", None, None, "video", {})


def _edit(d, fn):
    p = d / "renders.json"
    doc = json.loads(p.read_text())
    fn(doc)
    p.write_text(json.dumps(doc))


@pytest.mark.parametrize("breaker, field", [
    (lambda doc: doc.update(schema="handcli.renders/0"), "schema"),
    (lambda doc: doc.update(kind="video"), "kind"),
    (lambda doc: doc.pop("views"), "views"),
    (lambda doc: doc["views"][1].pop("K"), "views[1].K"),
    (lambda doc: doc["views"][0].update(K=[[1, 0], [0, 1]]), "views[0].K"),
    (lambda doc: doc["views"][0]["world_to_cam"][0].__setitem__(0, "x"), "views[0].world_to_cam"),
    (lambda doc: doc["views"][1].update(width=0), "views[1].width"),
    (lambda doc: doc["views"][0].update(cache_view=-1), "views[0].cache_view"),
    (lambda doc: doc["views"][0].update(rgb="../../etc/passwd"), "views[0].rgb"),
])
def test_read_renders_names_file_and_field(renders, breaker, field):
    d, _ = renders
    _edit(d, breaker)
    with pytest.raises(InputError) as e:
        read_renders(d)
    assert e.value.field == field and e.value.path == str(d / "renders.json")
    assert "renders.json" in str(e.value) and field in str(e.value)


def test_read_renders_missing_and_malformed(renders, tmp_path):
    d, _ = renders
    (d / "rgb/0001.png").unlink()
    with pytest.raises(InputError) as e:
        read_renders(d)
    assert e.value.path == str(d / "rgb/0001.png") and "views[1].rgb" in str(e.value)
    (d / "renders.json").write_text('{"schema": "handcli.renders/1", "views": [')
    with pytest.raises(InputError, match="malformed"):
        read_renders(d)
    (d / "renders.json").unlink()
    with pytest.raises(InputError, match="missing renders.json"):
        read_renders(d)
    with pytest.raises(InputError, match="not found"):
        read_renders(tmp_path / "nope")


def test_load_render_view_checks_sizes(renders):
    d, _ = renders
    r = read_renders(d)
    np.save(d / "depth/0000.npy", np.zeros((31, 40), np.float32))
    with pytest.raises(InputError) as e:
        load_render_view(r, r["views"][0])
    assert e.value.path == str(d / "depth/0000.npy") and "40x31" in str(e.value)
    np.save(d / "depth/0000.npy", np.full((32, 40), np.inf, np.float32))
    with pytest.raises(InputError, match="NaN or Inf"):
        load_render_view(r, r["views"][0])


def test_colorize_depth_hand_computed():
    turbo = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    depth = np.array([[1.0, 2.0, 4.0 / 3.0, 0.0], [5.0, 1.5, 1.0, 2.0]])
    mask = np.array([[1, 1, 1, 1], [0, 1, 1, 1]], bool)
    out = colorize_depth(depth, mask)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 3)
    # inverse depth 1 .. 0.5 over the mask -> t = (1/d - 0.5) / 0.5
    np.testing.assert_array_equal(out[0, 0], turbo[255])  # nearest
    np.testing.assert_array_equal(out[0, 1], turbo[0])  # farthest
    np.testing.assert_array_equal(out[0, 2], turbo[128])  # t = 0.5 -> 127.5 rounds to 128
    np.testing.assert_array_equal(out[1, 1], turbo[int(np.round((1 / 1.5 - 0.5) / 0.5 * 255))])
    assert (out[0, 3] == 0).all() and (out[1, 0] == 0).all()  # depth 0 / outside the mask: black
    assert (colorize_depth(np.zeros((3, 3)), None) == 0).all()


def test_error_heatmap_and_contact_sheet(tmp_path):
    inferno = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1]
    rng = np.random.default_rng(1)
    a = rng.random((20, 30, 3))
    b = np.clip(a + 0.25, 0, 1)
    b[..., :] = a + 0.125  # |error| mean 0.125 = half the full scale 0.25
    b = np.clip(b, 0, 1)
    a8, b8 = (np.round(x * 255).astype(np.uint8) for x in (a, b))
    err = np.abs(a8.astype(float) - b8.astype(float)).mean(2) / 255
    expected = inferno[np.round(np.clip(err / 0.25, 0, 1) * 255).astype(int)]
    np.testing.assert_array_equal(error_heatmap(a8, b8), expected)

    small = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    rows = [(a, b), (small, small), (small, None)]
    out = tmp_path / "sheet.png"
    sheet = contact_sheet(rows, ["first", "second", "third"], out)
    strip, gap, cell_gap = 16, 2, 6
    H, W = 20, 30
    assert sheet.shape == (3 * (strip + H) + 2 * cell_gap, 3 * W + 2 * gap, 3)  # nearest a square: one column
    back = cv2.imread(str(out))[..., ::-1]
    np.testing.assert_array_equal(back, sheet)
    np.testing.assert_array_equal(sheet[strip:strip + H, :W], a8)  # prediction tile of row 0
    np.testing.assert_array_equal(sheet[strip:strip + H, W + gap:2 * W + gap], b8)  # ground truth tile
    np.testing.assert_array_equal(sheet[strip:strip + H, 2 * (W + gap):], expected)  # error tile
    r1 = strip + H + cell_gap + strip  # row 1 image top
    np.testing.assert_array_equal(sheet[r1:r1 + 12, :16], small)
    assert (sheet[r1:r1 + 12, 2 * (W + gap):2 * (W + gap) + 16] == inferno[0]).all()  # identical: zero error
    assert (sheet[r1 + 12:r1 + H, :W] == 48).all()  # padded with grey to the largest size
    r2 = r1 + H + cell_gap + strip
    assert (sheet[r2:r2 + H, W + gap:2 * W + gap] == 48).all()  # no ground truth: empty tiles
    assert (sheet[r2:r2 + H, 2 * (W + gap):] == 48).all()
    assert sheet[:strip, :W].max() > 200  # the label was drawn
    with pytest.raises(ValueError):
        contact_sheet([(a, small)], ["x"])


def test_contact_sheet_is_a_grid_near_a_square():
    """Eight portrait views (as the demo renders) fill a 4 x 2 grid of cells, not one tall column."""
    rng = np.random.default_rng(0)
    H, W, strip, gap, cell_gap = 128, 84, 16, 2, 6
    views = [(rng.integers(0, 255, (H, W, 3), dtype=np.uint8),) * 2 for _ in range(8)]
    sheet = contact_sheet(views, [f"v{i}" for i in range(8)])
    cell_h, cell_w = strip + H, 3 * W + 2 * gap
    assert grid_shape(8, cell_h, cell_w) == (4, 2)
    assert sheet.shape == (4 * cell_h + 3 * cell_gap, 2 * cell_w + cell_gap, 3)
    assert 0.7 < sheet.shape[0] / sheet.shape[1] < 1.4
    for k, (pred, _) in enumerate(views):  # row-major: view k in row k // 2, column k % 2
        y, x = (k // 2) * (cell_h + cell_gap) + strip, (k % 2) * (cell_w + cell_gap)
        np.testing.assert_array_equal(sheet[y:y + H, x:x + W], pred)
    one_col = contact_sheet(views, [f"v{i}" for i in range(8)], cols=1)
    assert one_col.shape == (8 * cell_h + 7 * cell_gap, cell_w, 3)
    assert grid_shape(1, 10, 10) == (1, 1) and grid_shape(4, 10, 10) == (2, 2)


def _frames(n=6, H=24, W=32):
    return [np.full((H, W, 3), (40 * i % 256, 100, 200 - 20 * i), np.uint8) for i in range(n)]


def test_write_video_mp4_and_gif(tmp_path):
    frames = _frames()
    p = write_video(frames, tmp_path / "v.mp4", fps=10)
    assert p == tmp_path / "v.mp4" and p.stat().st_size > 0
    back = read_video(p)
    assert back.shape == (6, 24, 32, 3)
    assert np.abs(back.astype(float) - np.stack(frames)).mean() < 6  # lossy codec, flat colours
    g = write_video(frames, tmp_path / "v.gif", fps=10)
    back = read_video(g)
    assert back.shape == (6, 24, 32, 3)
    np.testing.assert_array_equal(back, np.stack(frames))  # few flat colours: exact in the palette
    odd = [np.zeros((7, 9, 3), np.uint8), np.full((5, 11, 3), 255, np.uint8)]
    back = read_video(write_video(odd, tmp_path / "odd.gif"))
    assert back.shape == (2, 8, 12, 3) and (back[1, :5, :11] == 255).all() and (back[1, 5:] == 0).all()


def test_write_video_falls_back_to_gif(tmp_path, monkeypatch):
    monkeypatch.setattr(video_mod, "_write_mp4", lambda stack, path, fps: False)
    p = write_video(_frames(), tmp_path / "v.mp4")
    assert p == tmp_path / "v.gif" and not (tmp_path / "v.mp4").exists() and p.stat().st_size > 0
    assert read_video(p).shape[0] == 6
    with pytest.raises(InputError, match="mp4 or .gif"):
        write_video(_frames(), tmp_path / "v.avi")


def _project(K, M, X):
    x = M[:3, :3] @ X + M[:3, 3]
    return (K @ (x / x[2]))[:2], x[2]


@pytest.mark.parametrize("up", [(0, 0, 1), (0, -1, 0), (1, 1, 0)])
def test_orbit_cameras_look_at_centre(up):
    center = np.array([0.1, -0.2, 0.9])
    K = np.array([[500.0, 0, 170.0], [0, 510.0, 250.0], [0, 0, 1]])
    cams = orbit_cameras(center, 0.8, 8, 25.0, K, 334, 512, up=up)
    upn = np.asarray(up, float) / np.linalg.norm(up)
    eyes = []
    for Kc, M in cams:
        R = M[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        uv, z = _project(Kc, M, center)
        np.testing.assert_allclose(uv, K[:2, 2], atol=1e-9)  # the centre projects to the principal point
        assert z == pytest.approx(0.8)  # at the right distance, in front
        assert _project(Kc, M, center + 0.01 * upn)[0][1] < K[1, 2]  # up is up in the image
        eyes.append(-R.T @ M[:3, 3])
    d = np.array(eyes) - center
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 0.8)
    np.testing.assert_allclose(np.degrees(np.arcsin(d @ upn / 0.8)), 25.0)  # elevation
    flat = d - np.outer(d @ upn, upn)
    cos = np.sum(flat * np.roll(flat, -1, axis=0), axis=1) / np.sum(flat * flat, axis=1)
    np.testing.assert_allclose(cos, np.cos(2 * np.pi / 8))  # evenly spaced in azimuth


def test_default_intrinsics_and_bad_args():
    K = default_intrinsics(334, 512, fov_y_deg=30)
    assert K[1, 2] == 255.5 and K[0, 2] == 166.5
    assert 2 * np.degrees(np.arctan(256 / K[1, 1])) == pytest.approx(30)
    cams = orbit_cameras(np.zeros(3), 1.0, 3, 0.0, None, 334, 512)
    np.testing.assert_array_equal(cams[0][0], K)
    with pytest.raises(ValueError):
        orbit_cameras(np.zeros(3), 0.0, 3, 0.0, K, 334, 512)


def test_orbit_from_cache(synth_cache):
    with h5py.File(synth_cache, "r") as f:
        boxes = [f[f"frames/{s}/box"][1] for s in ("right", "left") if f[f"frames/{s}/present"][1]]
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        M = f["cameras/world_to_cam"][()]
        eyes = np.einsum("cji,cj->ci", M[:, :3, :3], -M[:, :3, 3])
        portrait = int(np.flatnonzero(f["cameras/height"][()] > f["cameras/width"][()])[0])
        K = f["cameras/K"][portrait]
        size = (int(f["cameras/width"][portrait]), int(f["cameras/height"][portrait]))
    center = (lo + hi) / 2
    with open_cache(synth_cache) as c:
        orbit = orbit_from_cache(c, 1, 5)
    np.testing.assert_allclose(orbit.center, center, atol=1e-6)
    assert orbit.radius == pytest.approx(np.linalg.norm(eyes - center, axis=1).mean(), rel=1e-6)
    assert (orbit.width, orbit.height) == size and len(orbit.cameras) == 5
    for Kc, Mc in orbit.cameras:
        np.testing.assert_array_equal(Kc, K)
        uv, z = _project(Kc, Mc, center)
        np.testing.assert_allclose(uv, K[:2, 2], atol=1e-6)
        assert z == pytest.approx(orbit.radius)
    with open_cache(synth_cache) as c, pytest.raises(InputError, match="out of range"):
        orbit_from_cache(c, 999, 5)
