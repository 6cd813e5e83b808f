"""Procedural skin: a solid texture over the hand's rest-pose (canonical) surface.

Colours are a function of the canonical position of a surface point, so the texture
follows the skin as the hand moves. Details a radiance field can learn: colour noise,
flexion creases at the finger joints and palm lines on the palm side, knuckle wrinkles
on the back, and nails on the distal phalanges.

Conventions of the open hand model (docs/hand-model.md): fingers along +x, palm facing
-y, back of the hand +y; left hands are mirrored (x -> -x) before texturing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1] at (N, 3) points, trilinear over a hashed grid."""
    q = p * freq
    i0 = np.floor(q).astype(np.int64)
    f = q - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep

    def h(ix, iy, iz):
        n = ix * 73856093 ^ iy * 19349663 ^ iz * 83492791 ^ (seed * 2654435761)
        n = (n ^ (n >> 13)) * 1274126177
        return ((n ^ (n >> 16)) & 0xFFFF) / 65535.0

    out = np.zeros(len(p))
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1 - f[:, 2]
                out += wx * wy * wz * h(i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz)
    return out


def _band(d: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * (d / width) ** 2)


def _segment_param(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection parameter s in [0, 1] along segment a->b and distance to the segment axis."""
    ab = b - a
    s = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    closest = a + s[:, None] * ab
    return s, np.linalg.norm(p - closest, axis=1)


@dataclass(frozen=True)
class SkinStyle:
    """Per-subject skin parameters."""

    base_rgb: tuple[float, float, float] = (0.80, 0.60, 0.50)
    crease_strength: float = 0.35
    noise_strength: float = 0.10
    seed: int = 0


def subject_style(seed: int) -> SkinStyle:
    """A plausible skin tone for a synthetic subject."""
    rng = np.random.default_rng(seed)
    tones = np.array([[0.86, 0.66, 0.55], [0.78, 0.57, 0.45], [0.66, 0.46, 0.35], [0.50, 0.34, 0.25]])
    base = tones[rng.integers(len(tones))] * rng.uniform(0.95, 1.05, size=3)
    return SkinStyle(base_rgb=tuple(np.clip(base, 0, 1)), seed=int(seed))


def skin_color(p: np.ndarray, joints21: np.ndarray, style: SkinStyle) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] at canonical points.

    Args:
        p: (N, 3) canonical (right-hand) positions in metres.
        joints21: (21, 3) canonical joints in handcli order (wrist, thumb..pinky base->tip).
        style: subject skin parameters.
    """
    n = len(p)
    rgb = np.tile(np.asarray(style.base_rgb, dtype=np.float64), (n, 1))
    # Low- and mid-frequency blotches, with a reddish tint in one octave.
    v = value_noise(p, 40.0, style.seed) - 0.5
    v2 = value_noise(p, 160.0, style.seed + 1) - 0.5
    rgb *= (1.0 + style.noise_strength * (1.2 * v + 0.6 * v2))[:, None]
    red = value_noise(p, 25.0, style.seed + 2)
    rgb[:, 0] *= 1.0 + 0.06 * (red - 0.5)
    rgb[:, 2] *= 1.0 - 0.06 * (red - 0.5)

    palm_side = np.clip((-p[:, 1] + 0.002) / 0.006, 0.0, 1.0)  # 1 on the palm (-y) surface
    back_side = np.clip((p[:, 1] - 0.002) / 0.006, 0.0, 1.0)
    shade = np.zeros(n)
    nails = np.zeros(n)
    for f in range(5):
        chain = joints21[[0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f, 4 + 4 * f]]
        # Creases across each finger joint (base, middle and distal joints).
        for j in range(1, 4):
            a, b = chain[j], chain[j + 1]
            s, r = _segment_param(p, chain[j - 1], chain[j + 1])
            axis = b - a
            axis /= np.linalg.norm(axis)
            d = (p - a) @ axis
            near_finger = r < 0.02
            crease = _band(d, 0.0012) + 0.5 * _band(d - 0.003, 0.0008)
            shade += near_finger * crease * (palm_side * 1.0 + back_side * 0.45)
        # Nail on the back of the distal phalanx.
        a, b = chain[3], chain[4]
        s, r = _segment_param(p, a, b)
        axis = (b - a) / np.linalg.norm(b - a)
        nail = (s > 0.35) * (s < 0.98) * back_side * (r < 0.012)
        nails = np.maximum(nails, nail.astype(np.float64))
    # Palm lines: three bands across the palm at fixed fractions of the palm.
    wrist, mid_base = joints21[0], joints21[9]
    palm_len = np.linalg.norm(mid_base - wrist)
    x_rel = (p[:, 0] - wrist[0]) / palm_len
    z_rel = (p[:, 2] - wrist[2]) / palm_len
    lines = (
        _band(x_rel - (0.78 - 0.25 * z_rel), 0.02)  # heart line
        + _band(x_rel - (0.60 - 0.30 * z_rel), 0.02)  # head line
        + _band(z_rel - (0.15 + 0.35 * (x_rel - 0.3) ** 2), 0.025) * (x_rel < 0.7)  # life line
    )
    in_palm = (x_rel > 0.05) * (x_rel < 0.95)
    shade += palm_side * in_palm * lines * 0.8
    rgb *= (1.0 - style.crease_strength * np.clip(shade, 0, 1.5) / 1.5)[:, None]
    nail_rgb = np.array([0.93, 0.76, 0.74])
    rgb = rgb * (1 - 0.85 * nails[:, None]) + 0.85 * nails[:, None] * nail_rgb
    return np.clip(rgb, 0.0, 1.0)
