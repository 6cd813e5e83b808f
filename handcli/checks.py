"""Input checks shared by the stages: option ranges, image files, mesh arrays (docs/validation.md).

Every check raises ``InputError`` naming the file and the field (or the option), so the CLI exits with
status 2 and one line before any output is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from handcli.errors import InputError

# Coordinates of handcli's scenes are metres: a hand or a YCB object lies within a few metres of the
# world origin. Anything beyond this is a unit error or garbage, and would overflow float32 maths.
MAX_ABS_COORD = 1e4


def check_option(name: str, value, *, lo=None, hi=None, lo_open: bool = False) -> None:
    """``InputError`` (field ``--name``) unless ``value`` is None or a finite number in [lo, hi]
    (``(lo, hi]`` with ``lo_open``)."""
    if value is None:
        return
    field = f"--{name.replace('_', '-')}"
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"must be finite, got {value}", field=field)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise InputError(f"must be {'>' if lo_open else '>='} {lo}, got {value}", field=field)
    if hi is not None and value > hi:
        raise InputError(f"must be <= {hi}, got {value}", field=field)


def check_indices(name: str, indices, count: int, path: str | Path | None = None) -> None:
    """``InputError`` (naming ``path``, the file that has ``count`` items, and ``--name``) unless every index
    of ``indices`` (iterable of ints) lies in [0, count)."""
    bad = sorted(int(i) for i in indices if not 0 <= int(i) < count)
    if bad:
        raise InputError(f"{bad[:5]} outside [0, {count})", path=path, field=f"--{name}")


class BadImageError(InputError):
    """An image file that exists but is truncated or does not decode (``--skip-bad-images`` skips these)."""


def image_is_complete(data: bytes) -> bool | None:
    """Whether an encoded image is complete: JPEG with an end-of-image marker after its last scan, PNG with
    its IEND chunk. None for other formats (left to the decoder).

    Decoders fill the missing part of a truncated JPEG with grey and report success, so the file's
    structure is checked instead. Inside entropy-coded JPEG data 0xFF is stuffed as FF 00, so FF D9 after
    the last start-of-scan (FF DA) can only be the real end marker.
    """
    if data[:2] == b"\xff\xd8":
        sos = data.rfind(b"\xff\xda")
        return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data.rfind(b"IEND", 8) >= 0
    return None


def read_image_file(path: str | Path, flags: int | None = None, what: str = "image") -> np.ndarray:
    """Decode an image file with OpenCV (``flags`` default ``IMREAD_COLOR``: (H, W, 3) uint8 BGR).

    ``InputError`` naming the file when it is missing; ``BadImageError`` when it is truncated
    (``image_is_complete``) or undecodable.
    """
    import cv2

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} file missing", path=path) from None
    except OSError as e:
        raise InputError(f"{what} file unreadable ({e.strerror})", path=path) from None
    if image_is_complete(data) is False:
        raise BadImageError(f"{what} does not decode: truncated (no end-of-image marker)", path=path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    if img is None:
        raise BadImageError(f"{what} does not decode", path=path)
    return img


def check_size(img: np.ndarray, height: int, width: int, path: str | Path, what: str = "image",
               allowed: tuple[tuple[int, int], ...] = ()) -> None:
    """``InputError`` unless ``img`` is (height, width, ...) or one of the ``allowed`` (h, w) sizes."""
    if img.shape[:2] != (height, width) and tuple(img.shape[:2]) not in allowed:
        raise InputError(f"{what} is {img.shape[1]}x{img.shape[0]}, expected {width}x{height}", path=path)


def check_mesh_arrays(vertices: np.ndarray, faces: np.ndarray, path: str | Path, field: str = "",
                      max_abs: float = MAX_ABS_COORD) -> None:
    """``InputError`` unless vertices are (V, 3) finite with |x| <= max_abs and faces (F, 3) integer indices
    in [0, V)."""
    v, f = np.asarray(vertices), np.asarray(faces)
    pre = f"{field}/" if field else ""
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"vertices must be (V, 3), got {v.shape}", path=path, field=f"{pre}vertices")
    if not np.isfinite(v).all():
        raise InputError("vertices are not all finite", path=path, field=f"{pre}vertices")
    if v.size and np.abs(v).max() > max_abs:
        raise InputError(f"vertex coordinates up to {np.abs(v).max():.3g}; expected metres within "
                         f"{max_abs:g}", path=path, field=f"{pre}vertices")
    if f.size == 0:
        return
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"faces must be (F, 3), got {f.shape}", path=path, field=f"{pre}faces")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.isfinite(f).all() or (f != np.round(f)).any():
            raise InputError("face indices are not integers", path=path, field=f"{pre}faces")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"face indices must lie in [0, {len(v)}), got [{int(f.min())}, {int(f.max())}]",
                         path=path, field=f"{pre}faces")
