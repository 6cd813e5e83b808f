"""The numpy rasterizer against hand-computed triangles and trimesh ray casting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import trimesh
from scipy import ndimage
from trimesh.ray.ray_triangle import RayMeshIntersector

from handcli.camera import project
from handcli.render import raster as raster_mod
from handcli.render.raster import Raster, interpolate, rasterize, rasterize_meshes

K_SMALL = np.array([[100.0, 0.0, 10.0], [0.0, 100.0, 8.0], [0.0, 0.0, 1.0]])
K_SKEW = np.array([[100.0, 3.0, 10.0], [0.0, 90.0, 8.0], [0.0, 0.0, 1.0]])   # skew, fx != fy


def _unproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera points (N, 3) at depth z (N,) that project to pixel coordinates uv (N, 2)."""
    h = np.column_stack([uv, np.ones(len(uv))])
    return (h @ np.linalg.inv(K).T) * z[:, None]


def _pixel_rays(K: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray directions (H*W, 3) through pixel centres (integer coordinates) with z = 1, and their (u, v)."""
    v, u = np.mgrid[0:H, 0:W]
    uv = np.column_stack([u.ravel(), v.ravel()]).astype(np.float64)
    return _unproject(uv, np.ones(len(uv)), K), uv


def _raycast(mesh: trimesh.Trimesh, K: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """trimesh ray casting through every pixel centre: hit mask (H, W) and z of the first hit (H, W)."""
    dirs, _ = _pixel_rays(K, H, W)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    loc, ray, _ = RayMeshIntersector(mesh).intersects_location(
        np.zeros_like(unit), unit, multiple_hits=False)
    hit = np.zeros(H * W, bool)
    z = np.zeros(H * W)
    hit[ray] = True
    z[ray] = loc[:, 2]
    return hit.reshape(H, W), z.reshape(H, W)


def _check_against_raycast(mesh: trimesh.Trimesh, K: np.ndarray, H: int, W: int) -> Raster:
    r = rasterize(mesh.vertices, mesh.faces, K, H, W)
    hit, z = _raycast(mesh, K, H, W)
    assert hit.sum() > 200, "test scene should cover a good part of the image"
    disagree = (r.mask != hit).sum()
    assert disagree <= 0.005 * hit.sum(), (disagree, hit.sum())
    both = r.mask & hit
    np.testing.assert_allclose(r.depth[both], z[both], atol=1e-4)
    # The reported face really lies under the pixel: barycentrics reproduce the pixel position.
    pts = interpolate(r, mesh.vertices, mesh.faces)[r.mask]
    v, u = np.nonzero(r.mask)
    np.testing.assert_allclose(project(pts, K), np.column_stack([u, v]), atol=1e-6)
    return r


def test_project_uses_integer_pixel_centres():
    uv = np.array([[0.0, 0.0], [19.0, 15.0], [3.25, 7.5]])
    pts = _unproject(uv, np.array([0.5, 2.0, 3.0]), K_SKEW)
    np.testing.assert_allclose(project(pts, K_SKEW), uv, atol=1e-12)
    np.testing.assert_allclose(project(np.array([[0.0, 0.0, 2.0]]), K_SMALL), [[10.0, 8.0]])
    np.testing.assert_allclose(project(np.array([[0.2, -0.1, 2.0]]), K_SKEW),
                               [[100 * 0.1 + 3 * -0.05 + 10, 90 * -0.05 + 8]])


def test_single_triangle_coverage_depth_and_barycentrics():
    H, W = 16, 20
    uv = np.array([[2.3, 1.7], [17.6, 4.2], [6.1, 14.4]])
    zc = np.array([1.0, 1.6, 2.3])                        # slanted: perspective correction matters
    verts = _unproject(uv, zc, K_SKEW)
    r = rasterize(verts, np.array([[0, 1, 2]]), K_SKEW, H, W)

    # Coverage: pixel centres strictly inside by the sign of the three edge cross products.
    v, u = np.mgrid[0:H, 0:W]
    p = np.stack([u, v], -1).astype(float)
    signs = []
    for i in range(3):
        a, b = uv[i], uv[(i + 1) % 3]
        signs.append((b[0] - a[0]) * (p[..., 1] - a[1]) - (b[1] - a[1]) * (p[..., 0] - a[0]))
    signs = np.stack(signs)
    inside = (signs > 0).all(0) | (signs < 0).all(0)
    assert inside.sum() > 40
    np.testing.assert_array_equal(r.mask, inside)
    assert (r.face_id[inside] == 0).all() and (r.face_id[~inside] == -1).all()
    assert (r.mesh_id[inside] == 0).all() and (r.mesh_id[~inside] == -1).all()
    assert (r.depth[~inside] == 0).all() and (r.bary[~inside] == 0).all()

    # Depth: the camera z where the pixel's ray meets the triangle's plane.
    n = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    dirs, _ = _pixel_rays(K_SKEW, H, W)                  # z = 1, so the ray parameter is z
    z_ref = (n @ verts[0]) / (dirs @ n)
    np.testing.assert_allclose(r.depth[inside], z_ref.reshape(H, W)[inside], rtol=1e-6)
    # e.g. the pixel (col 8, row 6), written out by hand:
    y1 = (6 - 8) / 90
    d = np.array([(8 - 10 - 3 * y1) / 100, y1, 1.0])
    assert inside[6, 8]
    assert r.depth[6, 8] == pytest.approx(n @ verts[0] / (n @ d), rel=1e-6)

    # Barycentrics: sum to 1, are perspective-correct (the 3D point they give is on the pixel's ray at the
    # plane), and interpolate() reproduces any attribute that is linear in 3D.
    b = r.bary[inside].astype(np.float64)
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-6)
    assert (b >= 0).all()
    pts = b @ verts
    np.testing.assert_allclose(pts, dirs.reshape(H, W, 3)[inside] * z_ref.reshape(H, W)[inside][:, None],
                               atol=1e-5)
    np.testing.assert_allclose(project(pts, K_SKEW), p[inside], atol=1e-4)
    pts_i = interpolate(r, verts, np.array([[0, 1, 2]]))
    assert pts_i.shape == (H, W, 3) and (pts_i[~inside] == 0).all()
    np.testing.assert_allclose(pts_i[inside], pts, atol=1e-5)
    attr = verts @ np.array([0.3, -1.2, 2.0]) + 0.7        # scalar, linear in 3D
    np.testing.assert_allclose(interpolate(r, attr, np.array([[0, 1, 2]]))[inside],
                               pts @ np.array([0.3, -1.2, 2.0]) + 0.7, atol=1e-5)
    # Orientation does not matter (no back-face culling).
    r2 = rasterize(verts, np.array([[0, 2, 1]]), K_SKEW, H, W)
    np.testing.assert_array_equal(r2.mask, inside)
    np.testing.assert_allclose(r2.depth, r.depth, rtol=1e-6)


def _brute_force(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, H: int, W: int):
    """Reference z-buffer: every face against every pixel centre. Returns face id (H, W) and depth (H, W)."""
    v, u = np.mgrid[0:H, 0:W]
    p = np.stack([u.ravel(), v.ravel()], 1).astype(float)
    uv = project(verts, K)
    best, fid = np.full(H * W, np.inf), np.full(H * W, -1)
    for f, tri in enumerate(faces):
        a, b, c = uv[tri]
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if (verts[tri, 2] < 1e-3).any() or area == 0:
            continue
        l1 = ((p[:, 0] - a[0]) * (c[1] - a[1]) - (p[:, 1] - a[1]) * (c[0] - a[0])) / area
        l2 = ((b[0] - a[0]) * (p[:, 1] - a[1]) - (b[1] - a[1]) * (p[:, 0] - a[0])) / area
        lam = np.stack([1 - l1 - l2, l1, l2], 1)
        z = 1 / (lam @ (1 / verts[tri, 2]))
        upd = (lam >= 0).all(1) & (z < best)
        best[upd], fid[upd] = z[upd], f
    return fid.reshape(H, W), np.where(fid >= 0, best, 0).reshape(H, W)


def test_random_triangle_soups_match_brute_force():
    # Overlapping triangles of all sizes (sub-pixel to far larger than the image), some crossing the near
    # plane, some with near-horizontal edges; a skewed K.
    rng = np.random.default_rng(0)
    K = np.array([[50.0, 1.0, 24.3], [0, 55.0, 19.7], [0, 0, 1]])
    H, W = 40, 50
    total = 0
    for trial in range(30):
        nf = int(rng.integers(1, 30))
        centres = rng.normal(0, 0.4, (nf, 3)) + [0, 0, rng.choice([2.0, 0.3])]
        verts = (centres[:, None] + rng.normal(0, rng.choice([0.05, 0.3, 2.0, 20.0]), (nf, 3, 3)) * [1, 1, 0.3])
        verts = verts.reshape(-1, 3)
        if trial % 3 == 0:                                # edge 0-1 (nearly) horizontal in the image
            verts[1::3, 1] = verts[0::3, 1] * verts[1::3, 2] / verts[0::3, 2] + rng.normal(0, 1e-9, nf)
        faces = np.arange(3 * nf).reshape(nf, 3)
        r = rasterize(verts, faces, K, H, W)
        fid, z = _brute_force(verts, faces, K, H, W)
        np.testing.assert_array_equal(r.mask, fid >= 0)
        np.testing.assert_array_equal(r.face_id, fid)
        np.testing.assert_allclose(r.depth, z, rtol=1e-6)
        total += r.mask.sum()
    assert total > 10000


def _look(mesh: trimesh.Trimesh, rot: np.ndarray, dist: float) -> trimesh.Trimesh:
    m = mesh.copy()
    m.apply_transform(np.vstack([np.column_stack([rot, [0.0, 0.0, dist]]), [0, 0, 0, 1]]))
    return m


K_TEST = np.array([[120.0, 0.0, 31.5], [0.0, 120.0, 27.0], [0.0, 0.0, 1.0]])


def test_icosphere_matches_raycast():
    mesh = _look(trimesh.creation.icosphere(subdivisions=3, radius=0.2), np.eye(3), 1.0)
    assert _check_against_raycast(mesh, K_TEST, 56, 64).mask.sum() > 100


def test_box_matches_raycast():
    rot = trimesh.transformations.random_rotation_matrix(np.random.default_rng(1).random(3))[:3, :3]
    mesh = _look(trimesh.creation.box(extents=[0.3, 0.2, 0.25]), rot, 1.0)
    assert _check_against_raycast(mesh, K_TEST, 56, 64).mask.sum() > 100


def test_rotated_capsule_matches_raycast_and_is_clipped_at_the_border():
    rot = trimesh.transformations.random_rotation_matrix(np.random.default_rng(2).random(3))[:3, :3]
    mesh = _look(trimesh.creation.capsule(height=0.5, radius=0.08, count=[24, 24]), rot, 0.9)
    mesh.apply_translation([0.12, 0.05, 0.0])             # runs off the image on one side
    r = _check_against_raycast(mesh, K_TEST, 56, 64)
    assert r.mask[:, -1].any() or r.mask[-1].any() or r.mask[0].any()


def test_fine_sphere_silhouette_has_no_holes():
    mesh = _look(trimesh.creation.icosphere(subdivisions=5, radius=0.3), np.eye(3), 1.0)
    r = rasterize(mesh.vertices, mesh.faces, K_TEST, 56, 64)
    assert r.mask.sum() > 500
    np.testing.assert_array_equal(ndimage.binary_fill_holes(r.mask), r.mask)
    assert (r.depth[r.mask] > 0.69).all()


@pytest.mark.parametrize("tol", [None, 0.0])
@pytest.mark.parametrize("cell", [(1, 1), (2, 2), (4, 2)])
def test_grid_with_vertices_on_pixel_centres_is_covered_without_cracks(monkeypatch, tol, cell):
    # A fronto-parallel grid with vertices on pixel centres, cells of cell = (du, dv) pixels and random
    # diagonals and orientations: pixel centres lie exactly on shared edges (mid-diagonal for 2x2 and 4x2
    # cells) and vertices, the worst case for tie rules.
    du, dv = cell
    H, W = 13, 17
    nu, nv = (W - 1) // du + 1, (H - 1) // dv + 1
    gv, gu = np.mgrid[0:nv, 0:nu]
    uv = np.column_stack([gu.ravel() * du, gv.ravel() * dv]).astype(float)
    covered = (slice(0, (nv - 1) * dv + 1), slice(0, (nu - 1) * du + 1))
    if tol is not None:                                   # shared edges alone must close the interior
        monkeypatch.setattr(raster_mod, "_TOL", tol)
        covered = (slice(1, (nv - 1) * dv), slice(1, (nu - 1) * du))
    rng = np.random.default_rng(0)
    idx = np.arange(nu * nv).reshape(nv, nu)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    diag = (rng.random(len(a)) < 0.5)[:, None]
    faces = np.concatenate([np.where(diag, np.column_stack([a, b, c]), np.column_stack([a, b, d])),
                            np.where(diag, np.column_stack([b, d, c]), np.column_stack([a, d, c]))])
    flip = rng.random(len(faces)) < 0.5
    faces[flip] = faces[flip][:, ::-1]
    verts = _unproject(uv, np.ones(len(uv)), K_SMALL)
    r = rasterize(verts, faces, K_SMALL, H, W)
    assert r.mask[covered].all()
    assert r.mask.sum() <= ((nv - 1) * dv + 1) * ((nu - 1) * du + 1)
    np.testing.assert_allclose(r.depth[r.mask], 1.0, rtol=1e-6)
    # Jittered interior vertices and depths (an irregular curved surface): still no holes.
    inner = (uv[:, 0] > 0) & (uv[:, 0] < (nu - 1) * du) & (uv[:, 1] > 0) & (uv[:, 1] < (nv - 1) * dv)
    jitter = np.zeros_like(uv)
    jitter[inner] = rng.uniform(-0.45, 0.45, (inner.sum(), 2))
    verts = _unproject(uv + jitter, 1.0 + 0.3 * rng.random(len(uv)), K_SMALL)
    assert rasterize(verts, faces, K_SMALL, H, W).mask[covered].all()


def test_two_meshes_nearer_wins_and_order_does_not_matter():
    near_ball = _look(trimesh.creation.icosphere(subdivisions=2, radius=0.15), np.eye(3), 0.8)
    far_box = _look(trimesh.creation.box(extents=[0.5, 0.4, 0.1]), np.eye(3), 1.2)
    meshes = [(far_box.vertices, far_box.faces), (near_ball.vertices, near_ball.faces)]
    r = rasterize_meshes(meshes, K_TEST, 56, 64)
    r_ball = rasterize(near_ball.vertices, near_ball.faces, K_TEST, 56, 64)
    r_box = rasterize(far_box.vertices, far_box.faces, K_TEST, 56, 64)
    assert r_ball.mask.sum() > 100 and (r_box.mask & ~r_ball.mask).sum() > 100
    np.testing.assert_array_equal(r.mask, r_ball.mask | r_box.mask)
    np.testing.assert_array_equal(r.mesh_id[r_ball.mask], 1)       # the ball is in front of the box
    np.testing.assert_array_equal(r.mesh_id[r_box.mask & ~r_ball.mask], 0)
    np.testing.assert_array_equal(r.face_id[r_ball.mask], r_ball.face_id[r_ball.mask] + len(far_box.faces))
    np.testing.assert_allclose(r.depth[r_ball.mask], r_ball.depth[r_ball.mask])

    swapped = rasterize_meshes(meshes[::-1], K_TEST, 56, 64)
    np.testing.assert_array_equal(swapped.depth, r.depth)
    np.testing.assert_array_equal(swapped.mesh_id[r.mask], 1 - r.mesh_id[r.mask])
    # interpolate() over the concatenated faces gives the camera points of either mesh.
    verts = np.concatenate([far_box.vertices, near_ball.vertices])
    faces = np.concatenate([far_box.faces, near_ball.faces + len(far_box.vertices)])
    pts = interpolate(r, verts, faces)
    np.testing.assert_allclose(pts[..., 2][r.mask], r.depth[r.mask], rtol=1e-5)


def test_faces_behind_the_camera_are_dropped_and_empty_inputs_give_empty_rasters():
    ball = _look(trimesh.creation.icosphere(subdivisions=2, radius=0.15), np.eye(3), 0.8)
    behind = ball.vertices * [1, 1, -1]                   # mirrored behind the camera
    r = rasterize_meshes([(ball.vertices, ball.faces), (behind, ball.faces)], K_TEST, 56, 64)
    r_ball = rasterize(ball.vertices, ball.faces, K_TEST, 56, 64)
    np.testing.assert_array_equal(r.face_id, r_ball.face_id)
    # A triangle crossing the near plane is dropped whole.
    tri = np.array([[0.0, 0.0, 0.5], [0.1, 0.0, -0.5], [0.0, 0.1, 0.5]])
    assert not rasterize(tri, np.array([[0, 1, 2]]), K_TEST, 56, 64).mask.any()
    assert not rasterize(tri * [1, 1, 0] + [0, 0, 5e-4], np.array([[0, 1, 2]]), K_TEST, 56, 64).mask.any()

    for r in (rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), K_TEST, 5, 7),
              rasterize_meshes([], K_TEST, 5, 7),
              rasterize(ball.vertices + [5.0, 0, 0], ball.faces, K_TEST, 5, 7)):   # off screen
        assert r.depth.shape == (5, 7) and r.depth.dtype == np.float32
        assert r.face_id.dtype == np.int32 and r.mesh_id.dtype == np.int16 and r.bary.shape == (5, 7, 3)
        assert not r.mask.any() and (r.face_id == -1).all() and (r.mesh_id == -1).all()
        assert (r.depth == 0).all() and (r.bary == 0).all()
        assert interpolate(r, np.ones((max(len(ball.vertices), 1), 2)), ball.faces).shape == (5, 7, 2)


def test_large_triangles_and_chunked_work_give_the_same_result(monkeypatch):
    # A tilted ground plane of two triangles far larger than the image, plus a ball in front of it.
    H, W = 40, 50
    K = np.array([[60.0, 0, 24.5], [0, 60.0, 19.5], [0, 0, 1]])
    plane = np.array([[-50.0, -50.0, 3.0], [50.0, -50.0, 3.0], [50.0, 50.0, 5.0], [-50.0, 50.0, 5.0]])
    plane[:, 2] = 4.0 + 0.02 * plane[:, 1]
    ball = _look(trimesh.creation.icosphere(subdivisions=3, radius=0.5), np.eye(3), 2.5)
    meshes = [(plane, np.array([[0, 1, 2], [0, 2, 3]])), (ball.vertices, ball.faces)]
    full = rasterize_meshes(meshes, K, H, W)
    assert full.mask.all()
    dirs, _ = _pixel_rays(K, H, W)                        # plane z = 4 + 0.02 y: ray (x, y, 1) * t
    z_plane = (4.0 / (1 - 0.02 * dirs[:, 1])).reshape(H, W)
    on_plane = full.mesh_id == 0
    assert on_plane.sum() > 0.5 * H * W
    np.testing.assert_allclose(full.depth[on_plane], z_plane[on_plane], rtol=1e-6)

    monkeypatch.setattr(raster_mod, "_MAX_ROWS", 7)
    monkeypatch.setattr(raster_mod, "_MAX_PIXELS", 13)
    monkeypatch.setattr(raster_mod, "_MAX_RESOLVE", 11)
    monkeypatch.setattr(raster_mod, "_MAX_SCRATCH", 16)         # also the not-kept scratch path
    chunked = rasterize_meshes(meshes, K, H, W)
    for name in ("depth", "face_id", "bary", "mesh_id"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(full, name), err_msg=name)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 3]]), K_TEST, 5, 5)
    with pytest.raises(ValueError):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.eye(4), 5, 5)
    with pytest.raises(ValueError):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 2]]), K_TEST * 2, 5, 5)
    with pytest.raises(ValueError):
        rasterize(np.zeros((4, 2)), np.array([[0, 1, 2]]), K_TEST, 5, 5)


def test_threads_and_scratch_reuse_give_the_same_results():
    ball = _look(trimesh.creation.icosphere(subdivisions=3, radius=0.3), np.eye(3), 1.0)
    box = _look(trimesh.creation.box(extents=[0.3, 0.2, 0.25]), np.eye(3), 0.9)
    jobs = [(ball, 56, 64), (box, 30, 20), (ball, 120, 90), (box, 56, 64)] * 3
    ref = [rasterize(m.vertices, m.faces, K_TEST, h, w) for m, h, w in jobs]   # scratch grows and shrinks
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda job: rasterize(job[0].vertices, job[0].faces, K_TEST, job[1], job[2]), jobs))
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.face_id, b.face_id)
        np.testing.assert_array_equal(a.bary, b.bary)
        np.testing.assert_array_equal(a.depth, b.depth)
    first = rasterize(ball.vertices, ball.faces, K_TEST, 56, 64)
    np.testing.assert_array_equal(first.bary, ref[0].bary)
