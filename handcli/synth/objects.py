"""Procedural YCB-like objects, written in the YCB model layout, and a small scene renderer.

Four shapes stand in for the real scans: a box (``003_cracker_box``, also ``004_sugar_box``), a can
(``005_tomato_soup_can``, ``002_master_chef_can``), a banana-like curved tube (``011_banana``) and a mug-like
cylinder with a handle (``025_mug``). Each is a watertight trimesh in its model frame (metres, centred near
the origin) with an exact (or, for the mug's union, outside-exact) signed distance function that the grasp
synthesis uses, and a solid colour texture evaluated at model-frame points. ``write_ycb_model`` writes
``models/{name}/textured_simple.obj`` (``f v/vt/vn``) + ``.mtl`` + ``texture_map.png`` (the colours baked into
a per-face atlas) and ``points.xyz`` like the DexYCB download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from handcli.data.objects import YCB_IDS
from handcli.synth.shading import background, lambert, vertex_normals
from handcli.synth.texture import value_noise

# name -> (kind, parameters in metres)
SHAPES: dict[str, tuple[str, dict]] = {
    "003_cracker_box": ("box", {"half": (0.030, 0.080, 0.105)}),
    "004_sugar_box": ("box", {"half": (0.019, 0.045, 0.088)}),
    "005_tomato_soup_can": ("can", {"radius": 0.034, "half_height": 0.051}),
    "002_master_chef_can": ("can", {"radius": 0.051, "half_height": 0.070}),
    "011_banana": ("banana", {"arc_radius": 0.11, "span_deg": 100.0, "tube": 0.018}),
    "025_mug": ("mug", {"radius": 0.040, "half_height": 0.045, "handle_major": 0.025, "handle_minor": 0.0075}),
}
COLOURS = {
    "003_cracker_box": (0.78, 0.12, 0.10), "004_sugar_box": (0.92, 0.85, 0.35),
    "005_tomato_soup_can": (0.80, 0.14, 0.12), "002_master_chef_can": (0.15, 0.30, 0.65),
    "011_banana": (0.93, 0.80, 0.20), "025_mug": (0.25, 0.45, 0.80),
}


# ------------------------------------------------------------------------------------------------- SDFs
def sdf_box(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N,) exact signed distance to an axis-aligned box (negative inside)."""
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


def sdf_cylinder(p: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """(N, 3) -> (N,) exact signed distance to a capped cylinder along z."""
    d = np.stack([np.linalg.norm(p[:, :2], axis=1) - radius, np.abs(p[:, 2]) - half_height], axis=1)
    return np.minimum(d.max(axis=1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=1)


def sdf_arc_tube(p: np.ndarray, centre: np.ndarray, arc_radius: float, a0: float, a1: float,
                 tube: float) -> np.ndarray:
    """(N, 3) -> (N,) exact signed distance to a tube of radius ``tube`` around a circular arc in the
    z = centre_z plane (centre, radius ``arc_radius``, angles a0..a1 about +z), with rounded ends."""
    q = p - centre
    ang = np.arctan2(q[:, 1], q[:, 0])
    rho = np.linalg.norm(q[:, :2], axis=1)
    radial = np.sqrt((rho - arc_radius) ** 2 + q[:, 2] ** 2)
    inside = (ang >= a0) & (ang <= a1)
    ends = [arc_radius * np.array([np.cos(a), np.sin(a), 0.0]) for a in (a0, a1)]
    d_end = np.minimum(np.linalg.norm(q - ends[0], axis=1), np.linalg.norm(q - ends[1], axis=1))
    return np.where(inside, np.minimum(radial, d_end), d_end) - tube


def sdf_torus_y(p: np.ndarray, centre: np.ndarray, major: float, minor: float) -> np.ndarray:
    """(N, 3) -> (N,) exact signed distance to a torus whose axis is +y."""
    q = p - centre
    ring = np.linalg.norm(q[:, [0, 2]], axis=1) - major
    return np.sqrt(ring ** 2 + q[:, 1] ** 2) - minor


# ------------------------------------------------------------------------------------------------- objects
@dataclass
class ProceduralObject:
    """A YCB-like object: mesh and SDF in the model frame (metres), colour and grasp hints."""

    name: str
    ycb_id: int
    kind: str
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) outward winding, watertight
    sdf: Callable[[np.ndarray], np.ndarray]  # (N, 3) model frame -> (N,) metres, negative inside
    base_rgb: tuple[float, float, float]
    approach: np.ndarray  # (3,) default palm approach direction (from the object towards the palm)
    finger_dir: np.ndarray  # (3,) default direction the straight fingers point along
    up_extent: float  # half-extent along model z (resting on a table: lift by this)

    def albedo(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) model-frame points -> (N, 3) albedo in [0, 1]: a printed-label style solid texture."""
        base = np.tile(np.asarray(self.base_rgb, np.float64), (len(p), 1))
        n = value_noise(p, 60.0, self.ycb_id) - 0.5
        if self.kind == "box":
            band = np.abs(p[:, 2]) < 0.25 * self.up_extent  # a white label band round the middle
            base[band] = (0.92, 0.90, 0.84)
            stripe = np.abs(p[:, 2] - 0.6 * self.up_extent) < 0.08 * self.up_extent
            base[stripe] = (0.95, 0.80, 0.15)
        elif self.kind == "can":
            base[p[:, 2] < 0.0] = (0.93, 0.92, 0.90)
            rim = np.abs(p[:, 2]) > 0.85 * self.up_extent
            base[rim] = (0.75, 0.68, 0.45)
        elif self.kind == "banana":
            ends = value_noise(p, 25.0, 7) > 0.72  # brown speckles
            base[ends] = (0.45, 0.32, 0.12)
        elif self.kind == "mug":
            base[p[:, 0] > SHAPES[self.name][1]["radius"] - 1e-3] *= 0.8  # the handle slightly darker
        return np.clip(base * (1.0 + 0.25 * n)[:, None], 0.0, 1.0)

    def sample_points(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, 3) points on the surface (area-uniform, deterministic), like YCB's points.xyz."""
        import trimesh

        mesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
        return np.asarray(pts, dtype=np.float64)


def _marching_cubes(sdf: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                    step: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of ``sdf`` on a grid over [lo, hi]: a watertight mesh with outward winding."""
    import mcubes
    import trimesh

    # offset the lattice so that no grid point lies exactly on a face of the shape (MC degeneracies)
    lo = np.asarray(lo, np.float64) - 0.377 * step
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    vol = -sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])  # positive inside
    v, f = mcubes.marching_cubes(vol, 0.0)
    v = lo + v * step
    mesh = trimesh.Trimesh(v, f.astype(np.int64), process=True)
    if mesh.volume < 0:
        mesh.invert()
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def make_object(name: str) -> ProceduralObject:
    """The procedural stand-in for YCB object ``name`` (one of ``SHAPES``)."""
    import trimesh

    if name not in SHAPES:
        raise ValueError(f"no procedural shape for {name!r}; available: {', '.join(sorted(SHAPES))}")
    kind, prm = SHAPES[name]
    x, y, z = np.eye(3)
    if kind == "box":
        half = np.asarray(prm["half"], np.float64)
        m = trimesh.creation.box(extents=2 * half)
        v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)

        def sdf(p):
            return sdf_box(p, half)

        approach, finger, up = x, y, half[2]
    elif kind == "can":
        r, h = prm["radius"], prm["half_height"]
        m = trimesh.creation.cylinder(radius=r, height=2 * h, sections=64)
        v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)

        def sdf(p):
            return sdf_cylinder(p, r, h)

        approach, finger, up = x, y, h
    elif kind == "banana":
        R, tube = prm["arc_radius"], prm["tube"]
        half_span = np.deg2rad(prm["span_deg"]) / 2
        a0, a1 = np.pi / 2 - half_span, np.pi / 2 + half_span
        # arc about +z, bulging towards +y; centred so the arc's chord midpoint sits near the origin
        centre = np.array([0.0, -R * (1 + np.cos(half_span)) / 2, 0.0])

        def sdf(p):
            return sdf_arc_tube(p, centre, R, a0, a1, tube)

        ext = R + tube + 0.01
        v, f = _marching_cubes(sdf, np.array([-ext, centre[1] + R * np.cos(half_span) - tube - 0.01,
                                              -tube - 0.01]),
                               np.array([ext, centre[1] + R + tube + 0.01, tube + 0.01]), 0.0025)
        approach, finger, up = z, y, tube
    else:  # mug
        r, h, R, rm = prm["radius"], prm["half_height"], prm["handle_major"], prm["handle_minor"]
        hc = np.array([r + R - 2.0 * rm, 0.0, 0.0])

        def sdf(p):
            return np.minimum(sdf_cylinder(p, r, h), sdf_torus_y(p, hc, R, rm))

        v, f = _marching_cubes(sdf, np.array([-r - 0.01, -r - 0.01, -h - 0.01]),
                               np.array([hc[0] + R + rm + 0.01, r + 0.01, h + 0.01]), 0.002)
        approach, finger, up = -x, y, h
    return ProceduralObject(name, YCB_IDS[name], kind, v, f, sdf, COLOURS[name], approach, finger, float(up))


def face_atlas(n_faces: int, min_cell: int = 6, max_size: int = 2048) -> tuple[np.ndarray, int]:
    """A texture atlas with one triangle per face: (F, 3, 2) corner positions in pixels and the image size.

    Faces are paired in square cells of a grid (one triangle below the cell's diagonal, one above it), each
    inset by 1.5 px so that bilinear lookups never mix two faces' texels.
    """
    cells = max(1, (n_faces + 1) // 2)
    g = int(np.ceil(np.sqrt(cells)))
    size = int(min(max_size, max(256, 64 * int(np.ceil(min_cell * g / 64)))))
    c = size / g
    m = 1.5
    k = np.arange(n_faces)
    cell = k // 2
    x0 = (cell % g) * c
    y0 = (cell // g) * c
    lower = np.array([[m, m], [c - 2 * m, m], [m, c - 2 * m]])
    upper = np.array([[c - m, c - m], [2 * m, c - m], [c - m, 2 * m]])
    corners = np.where((k % 2 == 0)[:, None, None], lower[None], upper[None])
    return corners + np.stack([x0, y0], axis=1)[:, None, :], size


def bake_texture(vertices: np.ndarray, faces: np.ndarray, albedo: Callable[[np.ndarray], np.ndarray],
                 corners: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB: ``albedo`` at the surface point of every texel of the atlas ``corners``.

    Texels in a cell's gutter take the nearest point of their face (barycentrics clamped), so filtering at
    the triangle edges sees that face's own colours.
    """
    g = int(np.ceil(np.sqrt(max(1, (len(faces) + 1) // 2))))
    c = size / g
    yy, xx = np.mgrid[0:size, 0:size]
    px = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    col, row = np.minimum((px[:, 0] // c).astype(np.int64), g - 1), np.minimum((px[:, 1] // c).astype(np.int64), g - 1)
    local = px - np.stack([col, row], axis=1) * c
    face = 2 * (row * g + col) + (local.sum(axis=1) > c)
    valid = face < len(faces)
    face = np.where(valid, face, 0)
    a, b, d = corners[face, 0], corners[face, 1], corners[face, 2]
    e1, e2, q = b - a, d - a, px - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    w1 = (q[:, 0] * e2[:, 1] - q[:, 1] * e2[:, 0]) / det
    w2 = (e1[:, 0] * q[:, 1] - e1[:, 1] * q[:, 0]) / det
    w = np.clip(np.stack([1.0 - w1 - w2, w1, w2], axis=1), 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    pts = np.einsum("nk,nkd->nd", w, vertices[faces[face]])
    rgb = np.where(valid[:, None], albedo(pts), 0.5)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(size, size, 3)


_BAKED: dict[tuple, np.ndarray] = {}


def write_ycb_model(models_root: str | Path, obj: ProceduralObject, num_points: int = 2000,
                    seed: int = 0) -> Path:
    """Write ``{models_root}/{name}/textured_simple.obj``, ``textured_simple.obj.mtl``, ``texture_map.png``
    and ``points.xyz`` like the YCB models of the DexYCB download.

    Faces are ``f v/vt/vn`` with one normal per vertex (the ``v`` and ``vn`` indices agree, as the DexYCB
    toolkit's YCBLayer asserts) and texture coordinates into a baked atlas of the object's colours; the
    ``v`` lines are the watertight mesh in order, so readers that ignore materials get it unchanged.
    """
    import cv2

    d = Path(models_root) / obj.name
    d.mkdir(parents=True, exist_ok=True)
    normals = vertex_normals(obj.vertices, obj.faces)
    corners, size = face_atlas(len(obj.faces))
    uv = corners.reshape(-1, 2) / size
    uv[:, 1] = 1.0 - uv[:, 1]  # OBJ texture v runs up from the image's bottom row
    lines = ["# handcli procedural stand-in for a YCB model (metres, model frame)",
             "mtllib textured_simple.obj.mtl"]
    lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in obj.vertices]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in uv]
    lines += [f"vn {a:.6f} {b:.6f} {c:.6f}" for a, b, c in normals]
    lines.append("usemtl material_0")
    t = np.arange(1, 3 * len(obj.faces) + 1).reshape(-1, 3)
    lines += [f"f {a}/{ta}/{a} {b}/{tb}/{b} {c}/{tc}/{c}"
              for (a, b, c), (ta, tb, tc) in zip(obj.faces + 1, t)]
    (d / "textured_simple.obj").write_text("\n".join(lines) + "\n")
    (d / "textured_simple.obj.mtl").write_text(
        "newmtl material_0\nKa 0.2 0.2 0.2\nKd 0.8 0.8 0.8\nKs 0.0 0.0 0.0\nd 1.0\nmap_Kd texture_map.png\n")
    key = (obj.name, len(obj.vertices), len(obj.faces))
    if key not in _BAKED:  # the colours depend on the object only: bake once per process
        _BAKED[key] = bake_texture(obj.vertices, obj.faces, obj.albedo, corners, size)
    tex = _BAKED[key]
    cv2.imwrite(str(d / "texture_map.png"), cv2.cvtColor(tex, cv2.COLOR_RGB2BGR))
    pts = obj.sample_points(num_points, seed=seed)
    (d / "points.xyz").write_text("".join(f"{a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in pts))
    return d


# ------------------------------------------------------------------------------------------------- rendering
@dataclass
class ScenePart:
    """One mesh of a scene: world vertices, faces, canonical (texture) coordinates and an albedo function."""

    vertices: np.ndarray  # (V, 3) world
    faces: np.ndarray  # (F, 3)
    canon: np.ndarray  # (V, 3) coordinates the albedo function reads (rest pose / model frame)
    albedo: Callable[[np.ndarray], np.ndarray]  # (N, 3) canon -> (N, 3) in [0, 1]
    specular: float = 0.0  # Blinn-Phong strength (skin in the realistic profile)


def render_scene(parts: list[ScenePart], K: np.ndarray, world_to_cam: np.ndarray, height: int, width: int,
                 bg_seed: int, scene_to_light: np.ndarray | None = None, realism=None, response=None,
                 noise_rng: np.random.Generator | None = None):
    """Rasterize and shade ``parts`` for one camera.

    Returns rgb (H, W, 3) uint8, part (H, W) int16 index of the visible part (-1 empty) and z-depth
    (H, W) float32 metres (0 empty). Normals are lit in the world frame rotated by ``scene_to_light``
    (3, 3) (the lights of ``handcli.synth.shading`` expect z up). Parts with ``specular`` > 0 get a
    Blinn-Phong highlight (``realism.shininess``); with a camera ``response`` or ``noise_rng`` the image goes
    through ``realism.apply_capture`` (colour response, sensor noise) before quantisation.
    """
    from handcli.synth.realism import CameraResponse, RealismConfig, apply_capture
    from handcli.synth.shading import blinn_phong

    realism = realism or RealismConfig()
    from handcli.camera import transform
    from handcli.render.raster import interpolate, rasterize_meshes

    meshes = [(transform(world_to_cam, p.vertices), p.faces) for p in parts]
    ras = rasterize_meshes(meshes, K, height, width)
    img = background(height, width, bg_seed)
    fg = ras.face_id >= 0
    if fg.any():
        voff = np.cumsum([0] + [len(p.vertices) for p in parts])
        faces_all = np.concatenate([p.faces + voff[i] for i, p in enumerate(parts)])
        normals = np.concatenate([vertex_normals(p.vertices, p.faces) for p in parts])
        if scene_to_light is not None:
            normals = normals @ np.asarray(scene_to_light).T
        attr = np.concatenate([np.concatenate([p.canon for p in parts]), normals], axis=1)
        interp = interpolate(ras, attr, faces_all)[fg]
        owner = ras.mesh_id[fg]
        albedo = np.zeros((int(fg.sum()), 3))
        for i, p in enumerate(parts):
            sel = owner == i
            if sel.any():
                albedo[sel] = p.albedo(interp[sel, :3])
        n = interp[:, 3:]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        shade = albedo * lambert(n)[:, None]
        spec = np.array([p.specular for p in parts])[owner]
        if spec.any():
            # view directions in the light frame: camera centre minus the surface point
            inv = np.linalg.inv(world_to_cam)
            pos = interpolate(ras, np.concatenate([p.vertices for p in parts]), faces_all)[fg]
            view = inv[:3, 3] - pos
            if scene_to_light is not None:
                view = view @ np.asarray(scene_to_light).T
            view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-12)
            shade = shade + (spec * blinn_phong(n, view, realism.shininess))[:, None]
        img[fg] = np.clip(shade, 0.0, 1.0)
    if response is not None or noise_rng is not None:
        rgb = apply_capture(img, response or CameraResponse(), realism, noise_rng or np.random.default_rng(0))
    else:
        rgb = (img * 255.0 + 0.5).astype(np.uint8)
    return rgb, ras.mesh_id.copy(), ras.depth.astype(np.float32)
