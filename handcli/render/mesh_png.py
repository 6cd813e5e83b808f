"""Pictures of meshes for people (``handcli mesh`` writes one beside the meshes it extracts).

Meshes in any world frame are viewed along their principal axes: the first panel looks along the axis of
least extent (a hand's palm normal), the second from the opposite side, the third along the middle axis;
the longest axis points up. Lambert shading with the light at the camera, two-sided, white background.
"""

from __future__ import annotations

import cv2
import numpy as np

from handcli.camera import intrinsics, look_at, project, transform, world_to_cam_matrix
from handcli.render.raster import interpolate, rasterize_meshes

PART_COLOURS = {"hand": (0.93, 0.75, 0.62), "right": (0.93, 0.75, 0.62), "left": (0.72, 0.78, 0.93),
                "object": (0.55, 0.78, 0.60), "scene": (0.75, 0.75, 0.75)}


def _principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows: unit axes of decreasing extent (variance) of (N, 3) points."""
    c = points - points.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return vt


_LIGHT = np.array([0.25, -0.35, -1.0]) / np.linalg.norm([0.25, -0.35, -1.0])  # camera frame, near the eye


def shaded_view(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple]], eye: np.ndarray,
                target: np.ndarray, up: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 picture of meshes seen from ``eye`` looking at ``target`` (``up`` upwards).

    parts: (verts (V, 3), faces (F, 3), vertex normals (V, 3), RGB colour in [0, 1]) in one world frame.
    The focal length and principal point fit the projected vertices into 90 % of the image. Lambert shading
    with the light near the camera, two-sided (open or inside-out surfaces still shade), white background.
    """
    R = look_at(eye, target, up)
    w2c = world_to_cam_matrix(R, -R @ eye)
    cams = [(transform(w2c, np.asarray(v, float)), np.asarray(f)) for v, f, _, _ in parts]
    uv = np.concatenate([project(v, np.eye(3)) for v, _ in cams])
    lo, hi = uv.min(0), uv.max(0)
    f = 0.9 * size / max(float((hi - lo).max()), 1e-9)
    mid = 0.5 * (lo + hi)
    K = intrinsics(f, f, size / 2 - f * mid[0], size / 2 - f * mid[1])
    ras = rasterize_meshes(cams, K, size, size)
    # one interpolation over the concatenated meshes (face ids index the concatenated faces)
    offsets = np.cumsum([0] + [len(v) for v, _ in cams[:-1]])
    faces = np.concatenate([f + o for (_, f), o in zip(cams, offsets)])
    normals = np.concatenate([np.asarray(n, float) for _, _, n, _ in parts]) @ R.T
    n = interpolate(ras, normals, faces)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    lam = np.abs((n * _LIGHT).sum(-1))
    colours = np.array([c for _, _, _, c in parts], float)
    img = np.ones((size, size, 3))
    hit = ras.mesh_id >= 0
    img[hit] = (0.22 + 0.78 * lam[hit])[:, None] * colours[ras.mesh_id[hit]]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def mesh_views(meshes: dict, size: int = 256, label: str | None = None) -> np.ndarray:
    """(size, 3 * size, 3) uint8 RGB picture of named trimesh meshes (part name -> mesh; colours by part).

    Empty meshes are left out; with none left the panels say so. ``label`` is written in the top-left corner.
    """
    parts = [(name, m) for name, m in meshes.items() if m is not None and len(m.faces)]
    panels = []
    if not parts:
        img = np.full((size, 3 * size, 3), 235, np.uint8)
        cv2.putText(img, "empty surface", (10, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (90, 90, 90), 1,
                    cv2.LINE_AA)
        panels = [img]
    else:
        pts = np.concatenate([np.asarray(m.vertices, float) for _, m in parts])
        axes = _principal_axes(pts)
        centre = 0.5 * (pts.max(0) + pts.min(0))
        radius = float(np.linalg.norm(pts - centre, axis=1).max()) + 1e-9
        shaded = [(m.vertices, m.faces, m.vertex_normals, PART_COLOURS.get(name, (0.8, 0.8, 0.8)))
                  for name, m in parts]
        for d in (axes[2], -axes[2], axes[1]):
            panels.append(shaded_view(shaded, centre + 3.0 * radius * d, centre, axes[0], size))
    out = np.ascontiguousarray(np.concatenate(panels, axis=1))
    if label:
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    return out


HAND_VIEWS = {"back": (0.0, 1.0, 0.0), "palm": (0.0, -1.0, 0.0), "thumb": (0.0, 0.0, -1.0)}


def hand_views(verts: np.ndarray, faces: np.ndarray, size: int = 512, views=("back", "palm", "thumb"),
               side: str = "right") -> np.ndarray:
    """(size, size * len(views), 3) uint8 picture of a hand mesh (V, 3) in the hand model's axes.

    Each view looks from 0.6 m along a named model axis (``HAND_VIEWS``) with the fingers (+x for a right
    hand, -x for a left one) pointing up; shaded as `shaded_view` with skin colour.
    """
    import trimesh

    verts = np.asarray(verts, float)
    normals = trimesh.Trimesh(verts, faces, process=False).vertex_normals
    centre = 0.5 * (verts.max(0) + verts.min(0))
    fingers = np.array([1.0, 0.0, 0.0]) if side == "right" else np.array([-1.0, 0.0, 0.0])
    parts = [(verts, faces, normals, PART_COLOURS["hand"])]
    return np.concatenate([shaded_view(parts, centre + 0.6 * np.array(HAND_VIEWS[name]), centre, fingers, size)
                           for name in views], axis=1)
