"""Pictures of meshes for people (``handcli mesh`` writes one beside the meshes it extracts).

Meshes in any world frame are viewed along their principal axes: the first panel looks along the axis of
least extent (a hand's palm normal), the second from the opposite side, the third along the middle axis;
the longest axis points up. Lambert shading with the light at the camera, two-sided, white background.
"""

from __future__ import annotations

import cv2
import numpy as np

from handcli.data.camera import look_at
from handcli.render.raster import interpolate, rasterize_meshes

PART_COLOURS = {"hand": (0.93, 0.75, 0.62), "right": (0.93, 0.75, 0.62), "left": (0.72, 0.78, 0.93),
                "object": (0.55, 0.78, 0.60), "scene": (0.75, 0.75, 0.75)}


def _principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows: unit axes of decreasing extent (variance) of (N, 3) points."""
    c = points - points.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return vt


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
        light = np.array([0.25, -0.35, -1.0]) / np.linalg.norm([0.25, -0.35, -1.0])
        for d in (axes[2], -axes[2], axes[1]):
            eye = centre + 3.0 * radius * d
            R = look_at(eye, centre, axes[0])
            t = -R @ eye
            cams = [(np.asarray(m.vertices, float) @ R.T + t, np.asarray(m.faces)) for _, m in parts]
            uv = np.concatenate([v[:, :2] / v[:, 2:3] for v, _ in cams])
            lo, hi = uv.min(0), uv.max(0)
            f = 0.9 * size / max(float((hi - lo).max()), 1e-9)
            mid = 0.5 * (lo + hi)
            K = np.array([[f, 0.0, size / 2 - f * mid[0]], [0.0, f, size / 2 - f * mid[1]], [0.0, 0.0, 1.0]])
            ras = rasterize_meshes(cams, K, size, size)
            # one interpolation over the concatenated meshes (face ids index the concatenated faces)
            offsets = np.cumsum([0] + [len(v) for v, _ in cams[:-1]])
            faces = np.concatenate([f + o for (_, f), o in zip(cams, offsets)])
            normals = np.concatenate([np.asarray(m.vertex_normals) for _, m in parts]) @ R.T
            n = interpolate(ras, normals, faces)
            n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
            lam = np.abs((n * light).sum(-1))  # two-sided: open or inside-out surfaces still shade
            colours = np.array([PART_COLOURS.get(name, (0.8, 0.8, 0.8)) for name, _ in parts])
            img = np.ones((size, size, 3))
            hit = ras.mesh_id >= 0
            img[hit] = (0.22 + 0.78 * lam[hit])[:, None] * colours[ras.mesh_id[hit]]
            panels.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    out = np.ascontiguousarray(np.concatenate(panels, axis=1))
    if label:
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    return out
