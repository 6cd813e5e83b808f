"""Shade rasterized meshes: albedo from a solid texture, fixed world lights, dark background."""

from __future__ import annotations

import numpy as np


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals of a mesh with outward winding."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


# Fixed studio lights in the world frame (z up): a key light from above-front and a fill.
LIGHTS = (
    (np.array([0.3, -0.5, 0.8]), 0.6),
    (np.array([-0.6, 0.4, 0.2]), 0.25),
)
AMBIENT = 0.42


def lambert(normals_world: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals -> (N,) shading factor under the fixed lights."""
    s = np.full(len(normals_world), AMBIENT)
    for d, w in LIGHTS:
        d = d / np.linalg.norm(d)
        s += w * np.clip(normals_world @ d, 0.0, None)
    return s


def background(height: int, width: int, seed: int) -> np.ndarray:
    """A dark studio background (H, W, 3) in [0, 1] with a gradient and faint noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.04, 0.09, size=3)
    grad = np.linspace(0.0, 0.05, height)[:, None, None]
    noise = rng.normal(0.0, 0.006, size=(height, width, 1))
    return np.clip(base[None, None, :] + grad + noise, 0.0, 1.0)


def blinn_phong(normals_world: np.ndarray, view_world: np.ndarray, shininess: float) -> np.ndarray:
    """(N,) specular factor of the fixed lights: sum_l w_l (n . h_l)^shininess where n . l > 0.

    normals_world (N, 3) unit normals; view_world (N, 3) unit directions from the surface to the camera.
    """
    s = np.zeros(len(normals_world))
    for d, w in LIGHTS:
        d = d / np.linalg.norm(d)
        h = view_world + d
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        lit = (normals_world @ d) > 0
        s += w * lit * np.clip(np.sum(normals_world * h, axis=1), 0.0, None) ** shininess
    return s
