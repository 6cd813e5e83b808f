"""The synthetic datasets' realistic profile: annotation error, geometry outside the hand model, capture effects.

Profile ``ideal`` (the default) writes annotations that are exactly the values the images were rendered from.
Profile ``realistic`` (docs/datasets.md#realistic-profile) makes the data behave like the real captures:

- annotation error: the MANO parameters written to the annotation files are the rendered ones perturbed by a
  per-frame pose error (scaled so the annotated mesh's vertices are ``mano_frame_mm`` RMS off the exact model
  mesh) plus a per-sequence translation offset of ``mano_seq_mm``; InterHand2.6M's separately triangulated
  3D joints get independent per-joint noise (``joint_frame_mm`` RMS) plus a per-sequence offset
  (``joint_seq_mm``);
- a hand the model cannot represent: the rendered surface is the exact model mesh moved along its normals by
  a per-subject field (fingers thicker by ``thicken_mm``, smooth bumps of ``detail_mm``), so even the exact
  parameters do not reproduce the silhouette;
- capture effects: per-camera gain and white balance, a Blinn-Phong specular term on skin, shot and read
  noise, the JPEG quality of the real captures;
- DexYCB / HO-3D: a per-view estimate of the hand (like a single-image estimator such as HandOccNet):
  articulation error ``estimate_pa_mm`` (vertex RMS after the root is fixed) plus a root offset of
  ``estimate_root_mm`` mostly along the camera's viewing axis.

All draws come from generators seeded by the dataset's ``--seed`` and stable keys, never from the writers'
main generator, so the ideal profile's output does not change and the realistic one is deterministic.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np

from handcli.synth.texture import value_noise

PROFILES = ("ideal", "realistic")


@dataclass(frozen=True)
class RealismConfig:
    """Every deviation from perfect data; the zero defaults are the ideal profile. Lengths in millimetres."""

    profile: str = "ideal"
    mano_frame_mm: float = 0.0  # per-frame vertex RMS of annotated vs exact MANO mesh (pose error)
    mano_seq_mm: float = 0.0  # per-sequence translation offset of the annotated MANO (norm)
    joint_frame_mm: float = 0.0  # InterHand joint_3d: per-frame, per-joint 3D RMS noise
    joint_seq_mm: float = 0.0  # InterHand joint_3d: per-sequence offset (norm)
    thicken_mm: float = 0.0  # rendered fingers thicker than the model by this (along normals)
    detail_mm: float = 0.0  # amplitude of smooth bumps on the rendered surface
    gain: tuple[float, float] = (1.0, 1.0)  # per-camera exposure gain range
    white_balance: float = 0.0  # per-camera, per-channel multiplier spread (uniform +-)
    specular: float = 0.0  # Blinn-Phong strength on skin
    shininess: float = 30.0  # Blinn-Phong exponent
    read_noise: float = 0.0  # sensor read noise, std in 8-bit levels
    shot_noise: float = 0.0  # shot noise, std in 8-bit levels at full white (scales with sqrt(signal))
    jpeg_quality: int = 0  # 0: keep the writer's own quality
    estimate_pa_mm: float = 0.0  # DexYCB/HO-3D input-hand estimate: articulation vertex RMS
    estimate_root_mm: float = 0.0  # DexYCB/HO-3D input-hand estimate: root offset (norm RMS)

    @property
    def annotation_error(self) -> bool:
        return self.mano_frame_mm > 0 or self.mano_seq_mm > 0 or self.joint_frame_mm > 0 or self.joint_seq_mm > 0

    @property
    def capture_effects(self) -> bool:
        """Whether the images get camera responses, specular skin, sensor noise or JPEG re-encoding."""
        return (tuple(self.gain) != (1.0, 1.0) or self.white_balance > 0 or self.specular > 0 or self.read_noise > 0
                or self.shot_noise > 0 or self.jpeg_quality > 0)

    @property
    def estimates(self) -> bool:
        return self.estimate_pa_mm > 0 or self.estimate_root_mm > 0


# Realistic magnitudes per dataset; sources and reasoning in docs/datasets.md#realistic-profile.
_CAPTURE = dict(gain=(0.85, 1.15), white_balance=0.06, specular=0.22, shininess=30.0, read_noise=1.5,
                shot_noise=0.8, jpeg_quality=90)
REALISTIC = {
    "interhand": RealismConfig("realistic", mano_frame_mm=4.0, mano_seq_mm=2.5, joint_frame_mm=2.5,
                               joint_seq_mm=1.0, thicken_mm=1.5, detail_mm=0.8, **_CAPTURE),
    "dexycb": RealismConfig("realistic", mano_frame_mm=3.5, mano_seq_mm=2.0, thicken_mm=1.0, detail_mm=0.8,
                            estimate_pa_mm=6.0, estimate_root_mm=12.0, **_CAPTURE),
    "ho3d": RealismConfig("realistic", mano_frame_mm=5.0, mano_seq_mm=4.0, thicken_mm=1.0, detail_mm=0.8,
                          estimate_pa_mm=9.0, estimate_root_mm=20.0, **_CAPTURE),
}


def realism_config(profile: str, dataset: str, **overrides) -> RealismConfig:
    """The profile's parameters for ``dataset`` (interhand, dexycb, ho3d), with field overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use {', '.join(PROFILES)}")
    base = RealismConfig() if profile == "ideal" else REALISTIC[dataset]
    return replace(base, **overrides) if overrides else base


def check_overrides(overrides: dict) -> dict:
    """Validate ``{field: value}`` overrides of a ``RealismConfig`` (``synth --realism``); returns them typed.

    Lengths and strengths are non-negative numbers, ``gain`` a pair ``[low, high]`` of positive numbers with
    low <= high, ``jpeg_quality`` an integer 0-100 (0: the writer's own quality). ``profile`` is not a
    parameter. Raises ``ValueError`` naming the field."""
    kinds = {f.name: f.type for f in fields(RealismConfig) if f.name != "profile"}
    out = {}
    for key, value in overrides.items():
        if key not in kinds:
            raise ValueError(f"{key}: not a realism parameter; use one of {', '.join(kinds)}")
        if key == "gain":
            ok = (isinstance(value, (list, tuple)) and len(value) == 2
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value))
            if not ok or not 0 < value[0] <= value[1] or not np.isfinite(value).all():
                raise ValueError(f"gain: expected [low, high] with 0 < low <= high, got {value!r}")
            out[key] = (float(value[0]), float(value[1]))
        elif key == "jpeg_quality":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(f"jpeg_quality: expected an integer 0-100, got {value!r}")
            out[key] = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{key}: expected a non-negative number, got {value!r}")
            out[key] = float(value)
    return out


def stream(seed: int, *keys) -> np.random.Generator:
    """A generator for one purpose: the same (seed, keys) always give the same draws."""
    words = [int(seed) & 0xFFFFFFFF, 0x5EA1]
    for k in keys:
        words.append(zlib.crc32(str(k).encode()) if not isinstance(k, (int, np.integer)) else int(k) & 0xFFFFFFFF)
    return np.random.default_rng(words)


def random_direction(rng: np.random.Generator, weights=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(3,) unit vector, drawn anisotropically with per-axis ``weights`` before normalising."""
    d = rng.normal(size=3) * np.asarray(weights, np.float64)
    return d / max(np.linalg.norm(d), 1e-12)


# ------------------------------------------------------------------------------------------- annotation error
def rms_mm(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of the 3D distance between (N, 3) point sets in metres, in millimetres."""
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))) * 1000.0)


def perturb_pose(verts_fn: Callable[[np.ndarray], np.ndarray], pose: np.ndarray, target_mm: float,
                 rng: np.random.Generator, orient_weight: float = 0.3) -> np.ndarray:
    """(48,) pose whose mesh lies ``target_mm`` (vertex RMS) from the mesh of ``pose``.

    A random direction in pose space (finger joints, and the global orientation scaled by ``orient_weight``)
    is scaled by two secant steps on the measured vertex RMS, so the error is the target within ~1%.
    ``verts_fn`` (48,) -> (V, 3) metres poses the model with fixed shape and translation.
    """
    pose = np.asarray(pose, np.float64)
    if target_mm <= 0:
        return pose.copy()
    d = rng.normal(size=48)
    d[:3] *= orient_weight
    d /= np.linalg.norm(d)
    v0 = verts_fn(pose)
    s = 0.05
    for _ in range(3):
        r = rms_mm(verts_fn(pose + s * d), v0)
        s *= target_mm / max(r, 1e-9)
    return pose + s * d


def sequence_offset(cfg: RealismConfig, seed: int, *keys) -> np.ndarray:
    """(3,) metres: the constant translation error of one sequence's MANO annotations (``mano_seq_mm``)."""
    return random_direction(stream(seed, "seq-offset", *keys)) * cfg.mano_seq_mm / 1000.0


def annotated_pose(verts_fn: Callable[[np.ndarray], np.ndarray], pose: np.ndarray, trans: np.ndarray,
                   offset: np.ndarray, cfg: RealismConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A frame's MANO annotation, a fit that is off by the profile's error (exact when ideal): the pose (48,)
    ``mano_frame_mm`` (vertex RMS) off, the translation (3,) by the sequence's ``offset``."""
    return perturb_pose(verts_fn, pose, cfg.mano_frame_mm, rng), trans + offset


def estimated_pose(verts_fn: Callable[[np.ndarray], np.ndarray], pose: np.ndarray, trans: np.ndarray,
                   world_to_cam: np.ndarray, cfg: RealismConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The world pose (48,) and translation (3,) a single-image hand estimator would give for the view
    ``world_to_cam`` (4, 4): the pose ``estimate_pa_mm`` off, the root ``estimate_root_mm`` off."""
    pose = perturb_pose(verts_fn, pose, cfg.estimate_pa_mm, rng)
    # monocular estimates are worst along the viewing axis: the root offset is mostly camera depth
    offset_cam = random_direction(rng, (0.35, 0.35, 1.0)) * cfg.estimate_root_mm / 1000.0
    return pose, trans + world_to_cam[:3, :3].T @ offset_cam


def joint_noise(rng: np.random.Generator, n: int, frame_mm: float) -> np.ndarray:
    """(n, 3) metres of isotropic Gaussian noise whose 3D RMS per joint is ``frame_mm``."""
    return rng.normal(0.0, frame_mm / 1000.0 / np.sqrt(3.0), size=(n, 3))


# ------------------------------------------------------------------------------------------- surface detail
def surface_offsets(canon: np.ndarray, lbs_weights: np.ndarray, cfg: RealismConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """(V,) metres to move each model vertex along its normal for the rendered hand.

    canon (V, 3): the rest-pose (right-hand) vertices the texture uses; lbs_weights (V, 16): skinning weights
    (joint 0 the wrist). Fingers (weight off the wrist joint) thicken by ``thicken_mm`` (x a per-subject
    factor in [0.8, 1.2]); smooth bumps of ``detail_mm`` cover the whole hand. No shape parameters produce
    this (bumps of a few mm wavelength; thickness independent of length).
    """
    if cfg.thicken_mm <= 0 and cfg.detail_mm <= 0:
        return np.zeros(len(canon))
    finger = 1.0 - np.asarray(lbs_weights, np.float64)[:, 0]
    bumps = 2.0 * value_noise(canon, 90.0, int(rng.integers(1 << 20))) - 1.0
    thick = cfg.thicken_mm * rng.uniform(0.8, 1.2) * finger
    return (thick + cfg.detail_mm * bumps) / 1000.0


def displace(verts: np.ndarray, faces: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(V, 3) vertices moved by ``offsets`` (V,) metres along their (area-weighted) normals."""
    from handcli.synth.shading import vertex_normals

    if not np.any(offsets):
        return verts
    return verts + offsets[:, None] * vertex_normals(verts, faces)


# ------------------------------------------------------------------------------------------- capture effects
@dataclass(frozen=True)
class CameraResponse:
    """A camera's colour response: exposure gain and per-channel white balance (RGB multipliers)."""

    gain: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def as_dict(self) -> dict:
        return {"gain": self.gain, "white_balance": list(self.white_balance)}


def sidecar_responses(root: str | Path) -> dict[str, np.ndarray]:
    """The colour responses a synthetic dataset's sidecar (``handcli_synth.json``, ``camera_response``) records:
    {camera name (the part after the last "/" of its key): (3,) RGB multiplier gain x white balance}; empty for the
    ideal profile (no responses)."""
    resp = json.loads((Path(root) / "handcli_synth.json").read_text()).get("camera_response") or {}
    return {k.split("/")[-1]: np.asarray(v["white_balance"], float) * float(v["gain"]) for k, v in resp.items()}


def camera_response(cfg: RealismConfig, seed: int, camera: str) -> CameraResponse:
    """The deterministic colour response of ``camera`` (by name) under ``cfg``."""
    if cfg.gain == (1.0, 1.0) and cfg.white_balance == 0:
        return CameraResponse()
    rng = stream(seed, "camera", camera)
    gain = float(rng.uniform(*cfg.gain))
    wb = 1.0 + rng.uniform(-cfg.white_balance, cfg.white_balance, size=3)
    wb /= wb[1]  # white balance is relative to green, as camera pipelines normalise it
    return CameraResponse(round(gain, 6), tuple(round(float(x), 6) for x in wb))


def apply_capture(img: np.ndarray, response: CameraResponse, cfg: RealismConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float image in [0, 1] -> (H, W, 3) uint8 after colour response, noise and quantisation."""
    out = img * (response.gain * np.asarray(response.white_balance))[None, None, :]
    if cfg.shot_noise > 0 or cfg.read_noise > 0:
        sigma = np.sqrt((cfg.shot_noise / 255.0) ** 2 * np.clip(out, 0, 1) + (cfg.read_noise / 255.0) ** 2)
        out = out + sigma * rng.normal(size=out.shape)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
