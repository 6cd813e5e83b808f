"""Videos of rendered frames (orbits, pose sequences): `.mp4` through OpenCV, `.gif` through Pillow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from handcli.errors import InputError

SUFFIXES = (".mp4", ".gif")


def pad_frames(frames: Sequence[np.ndarray], even: bool = False) -> np.ndarray:
    """Stack (H_i, W_i, 3) uint8 frames into (N, H, W, 3), padding each at the bottom/right with black.

    even: round H and W up to even numbers (some video codecs need it).
    """
    if not frames:
        raise ValueError("no frames")
    for f in frames:
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {f.shape} {f.dtype}")
    H = max(f.shape[0] for f in frames)
    W = max(f.shape[1] for f in frames)
    if even:
        H, W = H + H % 2, W + W % 2
    out = np.zeros((len(frames), H, W, 3), np.uint8)
    for i, f in enumerate(frames):
        out[i, :f.shape[0], :f.shape[1]] = f
    return out


def _write_mp4(stack: np.ndarray, path: Path, fps: float) -> bool:
    import cv2

    n, H, W, _ = stack.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
    if not writer.isOpened():
        return False
    try:
        for f in stack:
            writer.write(np.ascontiguousarray(f[..., ::-1]))
    finally:
        writer.release()
    return path.is_file() and path.stat().st_size > 0


def encode_gif(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """(H, W, 3) uint8 RGB frames -> the bytes of a looping GIF (frames padded to a common size); plays in
    every browser, which the mp4v videos OpenCV writes do not."""
    import io

    from PIL import Image

    stack = pad_frames(list(frames))
    images = [Image.fromarray(f) for f in stack]
    duration = max(int(round(1000.0 / fps)), 10)  # GIF delays are in 10 ms steps
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buf.getvalue()


def _write_gif(stack: np.ndarray, path: Path, fps: float) -> None:
    path.write_bytes(encode_gif(list(stack), fps))


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = 15) -> Path:
    """Write (H, W, 3) uint8 RGB frames as a video; the suffix of `path` picks the format.

    `.mp4`: OpenCV VideoWriter with fourcc `mp4v`; when the writer cannot open or leaves no non-empty file
    (an OpenCV build without a video backend), a GIF is written to `path.with_suffix('.gif')` instead and a
    warning goes to stderr. `.gif`: Pillow, looping. Frames of different sizes are padded with black to a
    common (even) size. Returns the path actually written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"unsupported video format {path.suffix!r}; use .mp4 or .gif", path=path)
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}", field="fps")
    stack = pad_frames(list(frames), even=True)
    if suffix == ".mp4":
        if _write_mp4(stack, path, fps):
            return path
        if path.exists():
            path.unlink()
        path = path.with_suffix(".gif")
        print(f"warning: OpenCV could not write an mp4 video; wrote {path} instead", file=sys.stderr)
    _write_gif(stack, path, fps)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Frames of a video written by `write_video`, (N, H, W, 3) uint8 RGB (mp4 via OpenCV, gif via Pillow)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    cap.release()
    if not frames:
        raise InputError("no frames could be decoded", path=path)
    return np.stack(frames)
