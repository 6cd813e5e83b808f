"""Orbit cameras: OpenCV pinhole cameras evenly spaced in azimuth on a circle around a centre, looking at it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handcli.camera import camera_center, intrinsics, look_at


def default_intrinsics(width: int, height: int, fov_y_deg: float = 30.0) -> np.ndarray:
    """(3, 3) K with the given vertical field of view, square pixels, principal point at the image centre.

    The centre is ((W - 1) / 2, (H - 1) / 2) because integer pixel coordinates are pixel centres.
    """
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
    return intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def _perpendicular_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors e1, e2 with (e1, e2, up) right-handed and orthonormal."""
    axis = np.eye(3)[int(np.argmin(np.abs(up)))]  # the world axis least aligned with up
    e1 = axis - up * (axis @ up)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def orbit_cameras(center, radius: float, n: int, elevation_deg: float, K: np.ndarray | None, width: int,
                  height: int, up=(0.0, 0.0, 1.0)) -> list[tuple[np.ndarray, np.ndarray]]:
    """n cameras on a circle around `center`, all looking at it: list of (K (3, 3), world_to_cam (4, 4)).

    center: (3,) world metres; radius: distance of every camera to the centre; elevation_deg: angle of the
    circle above the plane perpendicular to `up` (negative: below); camera k sits at azimuth 2*pi*k/n.
    `up` appears upwards in every image (OpenCV: image -y). K: intrinsics for a width x height image, or None
    for `default_intrinsics(width, height)`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    center = np.asarray(center, dtype=np.float64).reshape(3)
    up = np.asarray(up, dtype=np.float64).reshape(3)
    up = up / np.linalg.norm(up)
    K = default_intrinsics(width, height) if K is None else np.asarray(K, dtype=np.float64).reshape(3, 3)
    e1, e2 = _perpendicular_basis(up)
    el = math.radians(elevation_deg)
    az = 2.0 * np.pi * np.arange(n) / n
    dirs = math.cos(el) * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2) + math.sin(el) * up
    cams = []
    for eye in center + radius * dirs:
        R = look_at(eye, center, up)
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = -R @ eye
        cams.append((K.copy(), M))
    return cams


@dataclass
class Orbit:
    """An orbit around one cache frame: `cameras` from `orbit_cameras`, all of size width x height."""

    cameras: list[tuple[np.ndarray, np.ndarray]]
    width: int
    height: int
    center: np.ndarray  # (3,)
    radius: float
    up: np.ndarray  # (3,)
    elevation_deg: float


def orbit_from_cache(cache, frame: int, n: int, elevation_deg: float | None = None) -> Orbit:
    """An orbit around a cache frame's hands.

    cache: an open cache (`handcli.data.shards.open_cache`). Centre = centre of the union of the frame's
    hand boxes (`frames/{side}/box`); radius = mean distance of the cache's cameras to that centre;
    K and image size of the first portrait camera (height > width; else the first camera). `up` = the mean of
    the cameras' image-up directions (InterHand's world is not z-up); elevation (default) = the cameras' mean
    elevation above the plane through the centre perpendicular to `up`.
    """
    from handcli.errors import InputError

    if not 0 <= frame < cache.num_frames:
        raise InputError(f"frame {frame} out of range (the cache has {cache.num_frames})", path=cache.path,
                         field="frame")
    rec = cache.frame(frame)
    boxes = [h.box for h in rec.hands.values() if h.box is not None]
    if not boxes:
        raise InputError(f"frame {frame} has no hand box", path=cache.path, field="frames/box")
    boxes = np.asarray(boxes, dtype=np.float64)  # (k, 2, 3)
    center = 0.5 * (boxes[:, 0].min(axis=0) + boxes[:, 1].max(axis=0))
    cams = cache.cameras()
    if not cams:
        raise InputError("the cache has no cameras", path=cache.path, field="cameras")
    centres = np.stack([camera_center(c["world_to_cam"]) for c in cams])
    radius = float(np.linalg.norm(centres - center, axis=1).mean())
    up = np.stack([-np.asarray(c["world_to_cam"])[1, :3] for c in cams]).mean(axis=0)
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, 0.0, 1.0])
    up /= np.linalg.norm(up)
    if elevation_deg is None:
        d = centres - center
        sin_el = (d @ up) / np.linalg.norm(d, axis=1)
        elevation_deg = float(np.degrees(np.arcsin(np.clip(sin_el, -1, 1))).mean())
    portrait = [c for c in cams if c["height"] > c["width"]]
    ref = portrait[0] if portrait else cams[0]
    cameras = orbit_cameras(center, radius, n, elevation_deg, ref["K"], ref["width"], ref["height"], up=up)
    return Orbit(cameras, int(ref["width"]), int(ref["height"]), center, radius, up, float(elevation_deg))
