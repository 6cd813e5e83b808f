"""Viewer cameras: viser's camera state <-> handcli's OpenCV pinhole cameras (``K``, ``world_to_cam``).

viser reports a browser camera as ``T_world_camera`` = (wxyz, position) in the OpenCV convention
(x right, y down, +z forward, the same as handcli's) and a vertical field of view in radians; the
browser draws the background image stretched over its canvas, so renders use the canvas aspect ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from handcli.camera import camera_center
from handcli.render.orbit import default_intrinsics


@dataclass(frozen=True)
class ViewCamera:
    """A browser camera: orientation ``wxyz`` (4,) and ``position`` (3,) of T_world_camera, vertical
    field of view ``fov`` (radians) and the canvas ``aspect`` (width / height)."""

    wxyz: tuple[float, float, float, float]
    position: tuple[float, float, float]
    fov: float
    aspect: float


def render_size(aspect: float, long_side: int) -> tuple[int, int]:
    """(width, height) of an image with the given aspect (width / height) whose longer side is ``long_side``."""
    long_side = max(int(long_side), 2)
    if aspect >= 1.0:
        return long_side, max(2, round(long_side / aspect))
    return max(2, round(long_side * aspect)), long_side


def opencv_camera(cam: ViewCamera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), world_to_cam (4, 4)) of a browser camera rendered at width x height pixels."""
    R_wc = Rotation.from_quat(np.asarray(cam.wxyz, dtype=np.float64), scalar_first=True).as_matrix()
    M = np.eye(4)
    M[:3, :3] = R_wc.T
    M[:3, 3] = -R_wc.T @ np.asarray(cam.position, dtype=np.float64)
    return default_intrinsics(width, height, math.degrees(cam.fov)), M


def viser_pose(world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz (4,), position (3,)) of T_world_camera for an OpenCV world_to_cam (4, 4)."""
    R_wc = np.asarray(world_to_cam, dtype=np.float64)[:3, :3].T
    return Rotation.from_matrix(R_wc).as_quat(scalar_first=True), camera_center(np.asarray(world_to_cam))


def vertical_fov(K: np.ndarray, height: int) -> float:
    """Vertical field of view (radians) of intrinsics K for images ``height`` pixels tall."""
    return 2.0 * math.atan(0.5 * height / float(K[1, 1]))


def nearest_camera(world_to_cams: list[np.ndarray], world_to_cam: np.ndarray) -> int:
    """Index of the camera closest to ``world_to_cam``: distance of the centres, relative to the mean
    distance of the candidates' centres to the query, plus (1 - cos) of the angle between the view axes."""
    if not world_to_cams:
        raise ValueError("no candidate cameras")
    c = camera_center(np.asarray(world_to_cam))
    z = np.asarray(world_to_cam)[2, :3]
    centres = np.stack([camera_center(np.asarray(M)) for M in world_to_cams])
    axes = np.stack([np.asarray(M)[2, :3] for M in world_to_cams])
    d = np.linalg.norm(centres - c, axis=1)
    score = d / max(float(d.mean()), 1e-9) + (1.0 - axes @ z)
    return int(np.argmin(score))
