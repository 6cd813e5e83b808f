"""HandOcc (Ivashechkin et al., 2025): a skeleton-driven occupancy network, an occupancy-conditioned NeRF
and a convolutional appearance encoder, rendered with the shared core (docs/methods/handocc.md).

Only the paper's abstract is public; the design follows HALO/NASA (docs/formulas.md#handocc):

- occupancy: the 21-joint skeleton is canonicalised (``skeleton_frames``); a query point is expressed in
  the local frames of its ``top_k`` nearest bones (by capsule distance) and each of those bones' own small
  MLP (grouped over bones) predicts an occupancy from the local coordinates, the bone length and a
  bone-specific projection of the global pose; parts are combined by a soft-max blend (β = 5) in training
  and by max at inference, the winning bone is the part label. Left hands are mirrored right hands.
- rendering: the density is the occupancy's (σ = −ln(1 − o)/step: a step-long segment has opacity o), so
  a trained model's silhouettes depend on the skeleton alone; the colour comes from an MLP on the winning
  part's local coordinates, its hidden features, its occupancy, the part embedding, the bone's world
  orientation and the appearance code. Samples lie only in the skeleton's bone capsules, the occupancy
  is evaluated front to back until a ray is opaque, and the colour only where the occupancy is high.
- appearance: strided convolutions over a masked hand crop, global pooling -> a code (plus the crop's
  mean skin colour); a reference image of another hand transfers its appearance.
- two hands: a sample belongs to the hand whose occupancy is higher there; both hands' samples are
  merged along each ray (``render.composite``) and rendered together.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from handcli.hand.skeleton_frames import (
    BONE_END,
    BONE_START,
    NUM_BONES,
    BoneFrames,
    bone_frames,
    mirror_x,
    pose_code,
    segment_distance,
)
from handcli.methods.handocc.normals import NormalDetail, capsule_normals
from handcli.methods.handocc.sampler import (
    box_samples,
    capsule_box,
    capsule_radii,
    capsule_samples,
    dilate_along_ray,
    inside_capsules,
    sample_positions,
)
from handcli.methods.handocc.thickness import BoneThickness, thicken
from handcli.nn.encoding import encoding_dim, positional_encoding
from handcli.nn.mlp import MLP
from handcli.render.bounds import ray_aabb
from handcli.render.composite import composite_samples
from handcli.render.volume import render_weights

STAGES = ("occupancy", "full")
SUPERVISION = ("mesh", "silhouette")
SAMPLERS = ("occupancy", "uniform")
SKELETON_SOURCES = ("joints", "mesh")  # what drives the model (skeletons.py)
# reference crops per side (training views of different cameras) whose mean appearance code renders the run's own
# hands (HandOcc.default_codes)
REF_CROPS = 16
LABEL_POSES = ("mesh", "joints", "refined", "bones", "auto")  # where the occupancy labels are posed (labels_pose)
BONE_THICKNESS = ("off", "on", "auto")  # when the rendered field's bone thickness is learned (bone_thickness)
CAL_RENDER = ("off", "on", "auto")  # whether renders apply the density calibration (cal_render)
LABEL_HULL = ("off", "drop", "flip")  # what happens to inside labels off the training silhouettes (label_hull)
OCC_ANNEAL = ("off", "on", "auto")  # when the mesh-occupancy labels' weight anneals (HandOccConfig.occ_anneal)
POSE_DIM = 60


@dataclass(frozen=True)
class HandOccConfig:
    """Hyperparameters. The paper's sizes are unknown: ``paper`` uses HALO-like sizes, ``fast`` CPU sizes."""

    stage: str = "full"  # "occupancy": train the occupancy network alone; "full": everything
    supervision: str = "mesh"  # "mesh": inside/outside labels from posed meshes; "silhouette": masks only
    # occupancy network
    top_k: int = 4  # bones evaluated per point (nearest by capsule distance)
    occ_pe_deg: int = 4
    occ_hidden: int = 64
    occ_layers: int = 4
    pose_proj: int = 8
    beta: float = 5.0  # soft-max blend of the parts in training (NASA / HALO)
    # the same blend at inference (renders, meshes); False: the max over the parts (NASA / HALO, the default
    # before), which is never below the blend the masks and labels trained, so it renders fatter silhouettes
    # (novel-view PSNR +0.5 / +0.8 dB ideal, +0.8 / +0.7 dB realistic, seeds 0 / 1, 300 fast steps;
    # docs/benchmarks.md#handocc-on-realistic-data)
    blend_inference: bool = True
    own_kappa: float = 20.0  # sharpness of the soft hand ownership in training (hard at inference)
    # rendered occupancy = sigmoid(a logit(o) + b) with a learned (a, b), identity at the start
    # (DensityCalibration): the labels supervise o, the images where the rendered surface lies (with
    # blend_inference: novel-view PSNR +0.2 / +0.2 dB ideal, +0.3 / +0.3 dB realistic, seeds 0 / 1, 300 fast steps)
    density_cal: bool = True
    # whether renders (train=False: render, eval, the viewer, adapt's final renders) apply that calibration too ("on"),
    # or show the network's own occupancy, the field the labels supervise ("off": the calibration only serves
    # training), or one fitted to the run's own training views when training ends ("auto", the default;
    # ``HandOccMethod.finish_training``, render_calibration.py: the calibration's ``fitted`` (a, b) and ``in_render``
    # 2, or ``in_render`` 0 where the network's occupancy fits best; undecided (-1) renders "off", 1 (a run of the
    # sixteenth round that chose it) the trained calibration).
    # At 2,000 fast steps the trained calibration has drifted to a fat, soft surface (offset +1.1 to +1.8) and "off"
    # gives novel-view PSNR +1.54 / +1.38 / +1.76 / +2.06 dB ideal, +0.87 / +0.21 / +0.71 / +0.45 dB realistic
    # (seeds 0-3); at 300 steps the trained one is a little better than "off", and the fitted one (a 1.5-1.8, b to
    # -0.56: a sharper, thinner surface) +0.73 to +1.07 dB ideal, +0.70 to +1.22 dB realistic over the better of the
    # two, with DE up from 4-10 to 13-19 mm (the refined masks' rims left empty; docs/benchmarks.md, sixteenth and
    # seventeenth rounds). Runs saved before the option render with it ("on").
    cal_render: str = "auto"
    # whether training renders through the calibration. True for training (the labels supervise the network's
    # occupancy, the images the calibrated one); ``adapt`` sets it to whether the run renders through it, so that the
    # novel skeletons are fitted to the field the adapted run renders (the calibration is frozen and no label trains)
    cal_train: bool = True
    # a learned radial scale of the rendered field per side and finger bone (thickness.BoneThickness), trained by the
    # photometric and mask losses only (the labels keep the model's thickness): a hand thicker than its model.
    # Learned from refine_start on, as the refinement and the label alignment (the colour first takes shape): "on"
    # always; "auto" only where the labels are annealed (occ_anneal: the anneal's check found the annotated model off
    # the training images), so data that the model fits trains exactly as with "off"; "off" never (no module).
    # "on" at 2,000 fast steps (fourteenth round): fingers 1.5 mm thicker than the model +3.46 dB (seed 2), but
    # realistic -0.17 / +0.25 / +0.32 / +0.18 dB and ideal -0.72 / -0.18 / -0.52 / -0.42 dB (seeds 0-3); "auto" with
    # labels_pose "auto" (sixteenth round, docs/benchmarks.md): realistic +0.60 / +0.70 / +0.58 / +0.92 dB at 2,000
    # steps, -0.15 / -0.10 / -0.11 / -0.12 dB at 300 (seeds 0-3), ideal unchanged (not annealed: "off" bit for bit)
    bone_thickness: str = "auto"
    # radiance and appearance
    color_pe_deg: int = 4
    color_hidden: int = 128
    color_layers: int = 3
    # colour also sees the ray's world direction (specular skin; ColorNet; view columns start at zero). Off: with
    # blend_inference + density_cal it changed novel-view PSNR by +0.22 / +0.17 dB ideal, +0.02 / +0.21 dB realistic
    # (seeds 0 / 1) at 300 fast steps but +0.08 / -0.51 dB ideal, -0.10 / +0.21 dB realistic at 600
    # (docs/benchmarks.md#handocc-on-realistic-data)
    view_dir: bool = False
    view_pe_deg: int = 2  # PE octaves of that direction (low: a broad highlight, few training cameras)
    # the colour network also sees the sample's capsule normal (world; normals.py). Novel-view PSNR at 300 fast steps
    # +0.79 / +0.78 / +1.02 / +0.66 dB ideal, +0.79 / +0.43 / +0.61 / +0.62 dB realistic, at 2,000 +0.06 / +0.50 /
    # +0.22 / +0.42 dB ideal, +0.25 / +0.16 / +0.07 / +0.08 dB realistic (seeds 0-3; docs/benchmarks.md)
    normal_in: bool = True
    # with normal_in (no effect without): a learned residual of that normal in the bone's frame
    # (normals.NormalDetail), the skin's relief that the capsules do not have, of PE(local) with normal_pe_deg
    # octaves through normal_hidden-wide layers.
    # Novel-view PSNR at 2,000 fast steps +0.39 / +0.11 / +0.30 / +0.37 dB ideal, +0.10 / +0.04 / +0.19 / +0.10 dB
    # realistic, at 300 +0.02 / +0.13 / +0.02 / +0.12 dB ideal, -0.01 / +0.06 / +0.00 / +0.10 dB realistic (seeds 0-3;
    # docs/benchmarks.md, thirteenth round)
    normal_detail: bool = True
    normal_pe_deg: int = 6
    normal_hidden: int = 32
    part_embed: int = 8
    app_dim: int = 32
    # training: each hand's appearance code is the mean code of this many random crops of its capture (1: one crop's).
    # 4 against 1 (with the mean reference code): novel-view PSNR at 300 fast steps +0.00 / +0.20 / -0.01 / +0.40 dB
    # ideal, +0.14 / +0.20 / +0.31 / +0.11 dB realistic (seeds 0-3), at 2,000 +0.07 / +0.18 / +0.10 / +0.05 dB ideal,
    # +0.07 / +0.10 / +0.01 / -0.09 dB realistic; step +2.5 % (docs/benchmarks.md#handocc-on-realistic-data, ninth
    # round)
    app_crops: int = 4
    crop_size: int = 64
    enc_channels: tuple = (16, 32, 64, 128)
    # sampling
    sampler: str = "occupancy"  # "uniform": baseline, n_uniform samples in the box, every network everywhere
    step: float = 0.004  # metres between samples inside the capsules; also the density's unit length
    max_samples: int = 48
    render_step: float = 0.002  # inference only: sample spacing in the capsules (0 = step); the field is unchanged
    n_uniform: int = 64
    wave: int = 4  # inference: occupancy evaluated front to back, this many samples per ray at a time
    tau: float = 0.05  # colour is evaluated only where occupancy > tau (dilated one sample along the ray)
    w_eps: float = 1e-3  # ... and where the sample's rendering weight exceeds this (1e-4 in training)
    radius_dilation: float = 1.15
    radius_margin: float = 0.002
    # training
    rays_per_step: int = 4096
    fg_fraction: float = 0.5
    occ_points: int = 4096  # labelled points per hand and step
    pool_points: int = 32768  # labelled points per training hand (drawn on first use, seeded per hand)
    pool_cache: int = 256  # hands' labelled-point pools kept in memory (LRU; a dropped pool is redrawn the same)
    w_rgb: float = 1.0
    w_mask: float = 0.5  # was 0.1: the images' silhouettes must outweigh the (annotated-)mesh occupancy labels on
    # real data (realistic profile +0.42 / +0.30 dB, ideal +0.07 / -0.21 dB, seeds 0 / 1, 300 fast steps;
    # docs/benchmarks.md#handocc-on-realistic-data)
    w_occ: float = 1.0
    # anneal of the mesh-occupancy loss (the annotated mesh is off the hand on real data): the weight falls linearly
    # from w_occ to w_occ_final between these shares of the steps (stage "full" only; occ_weight) when occ_anneal is
    # "on", or "auto" and the labels contradict the training silhouettes: the visual-hull check (label_hull) carved
    # more than anneal_carved of the inside labels, or the labels' mesh leaves more than anneal_missed of the
    # training views' hand pixels uncovered (visual_hull.mesh_misses), on average over the steps before
    # occ_anneal_start (ideal data: <= 0.02 % carved, 0.00 % missed; the realistic profile: 1-4 % carved with refined
    # masks, 14 % without; a hand outside the model with exact annotations: < 0.1 % carved, 1.2-1.5 % missed).
    # Realistic +0.46 to +0.74 dB at 2,000 fast steps (4 seeds), -0.06 to -0.29 dB at 300; ideal unchanged
    # (docs/methods/handocc.md#occupancy-labels-on-real-data-w_mask-anneal)
    occ_anneal: str = "auto"
    anneal_carved: float = 0.005
    anneal_missed: float = 0.005
    occ_anneal_start: float = 0.2
    occ_anneal_end: float = 0.5
    w_occ_final: float = 0.25
    w_int: float = 0.1
    label_margin: float = 0.0  # metres: mesh-occupancy labels closer than this to the mesh are left out
    # where the labelled points (drawn around the posed mesh) are posed: "mesh" where they were drawn; "joints" carried
    # with their bones (carry_points) from the mesh's own skeleton onto the annotated skeleton that drives the model;
    # "refined" onto that skeleton with the learned refinement; "bones" where they were drawn, then carried from the
    # annotated onto the refined skeleton (older runs' labels_follow_bones;
    # docs/methods/handocc.md#reposed-labels-labels_pose)
    # "joints" against "mesh" (both with align_labels): realistic +0.21 / +0.04 / +0.29 / +0.21 dB at 300 fast steps
    # (seeds 0-3), +0.58 / +0.51 dB at 2,000 (seeds 0 / 1); ideal -0.01 / 0.00 / 0.00 / -0.01 dB and -0.18 / -0.01 dB.
    # "auto" (the default since the sixteenth round): "joints", and "refined" from the anneal's decision on where the
    # labels are annealed (with the learned thickness the refined pose no longer costs a hand thicker than its model)
    labels_pose: str = "auto"
    # the mesh-occupancy labels checked against the visual hull of the frame's training silhouettes
    # (visual_hull.py): an inside label that projects onto background in a training view (its silhouette dilated
    # by label_hull_px pixels) is left out ("drop") or made an outside label ("flip"). "flip" against "off":
    # realistic -0.03 to +0.16 dB at 300 fast steps (8 runs), -0.07 to +0.23 dB at 2,000 (5 runs); ideal labels
    # are not carved (docs/methods/handocc.md#visual-hull-check-of-the-labels-label_hull)
    label_hull: str = "flip"
    label_hull_px: int = 0
    camera_colour: bool = False  # learn a per-camera affine colour map for the rgb loss (nn/camera_colour.py)
    w_colour: float = 1e-2  # ... kept near the identity by this penalty
    skeleton: str = "joints"  # what drives the model: the cache's joint annotation, or "mesh": the joints of the
    # cache's posed hand model, the mesh the labels and masks come from (skeletons.py; docs/methods/handocc.md)
    refine: bool = True  # learn per-frame joint offsets of the training hands (refine.py)
    refine_scale: float = 0.1  # metres per unit of the offset parameters (an Adam step moves a joint lr * this)
    w_refine: float = 1e-4  # prior on the offsets: mean squared offset (mm^2)
    w_bone: float = 1e-3  # prior on the refined bone lengths: squared error (mm^2) to the subject's mean
    # learn a rigid transform of each training hand's labelled points (label_align.py), from refine_start on:
    # realistic +0.28 / +0.33 dB at 300 fast steps and +0.70 / +0.91 dB at 2,000, ideal -0.01 / +0.03 and
    # -0.01 / -0.04 dB (seeds 0 / 1, refined masks; docs/benchmarks.md#handocc-on-realistic-data)
    align_labels: bool = True
    w_align: float = 1e-4  # prior on it: mean squared translation + rotation displacement at 5 cm (mm^2)
    align_scale: float = 0.1  # metres (radians) per unit of its parameters: an Adam step moves by lr * this
    refine_start: float = 0.3  # share of the steps before the offsets are learned (the field first takes shape)
    lr: float = 5e-4
    lr_final: float = 5e-5
    steps: int = 100_000
    chunk: int = 8192  # rays per render chunk
    # out-of-core training (handcli.data.viewpool): training views held in memory at once (<= 0: all),
    # steps between pool refreshes and the fraction of the pool replaced at each
    view_pool: int = 256
    pool_refresh: int = 50
    pool_replace: float = 0.25

    def check(self) -> None:
        from handcli.errors import InputError

        for name, allowed in (("stage", STAGES), ("supervision", SUPERVISION), ("sampler", SAMPLERS),
                              ("skeleton", SKELETON_SOURCES), ("labels_pose", LABEL_POSES),
                              ("label_hull", LABEL_HULL), ("occ_anneal", OCC_ANNEAL),
                              ("bone_thickness", BONE_THICKNESS), ("cal_render", CAL_RENDER)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}",
                                 field=name)
        if not 1 <= self.top_k <= NUM_BONES:
            raise InputError(f"top_k must be in 1..{NUM_BONES}", field="top_k")
        if self.step <= 0 or self.max_samples < 1:
            raise InputError("step must be > 0 and max_samples >= 1", field="step")
        if self.render_step < 0:
            raise InputError("render_step must be >= 0 (0: the training step)", field="render_step")
        if self.app_crops < 1:
            raise InputError("app_crops must be >= 1", field="app_crops")
        if self.pool_cache < 1:
            raise InputError("pool_cache must be >= 1", field="pool_cache")
        if not 0 <= self.occ_anneal_start <= self.occ_anneal_end <= 1:
            raise InputError("need 0 <= occ_anneal_start <= occ_anneal_end <= 1", field="occ_anneal_start")
        if self.label_margin < 0:
            raise InputError("label_margin must be >= 0 (metres)", field="label_margin")
        if self.label_hull_px < 0:
            raise InputError("label_hull_px must be >= 0 (pixels)", field="label_hull_px")
        if self.w_occ_final < 0:
            raise InputError("w_occ_final must be >= 0", field="w_occ_final")
        if not 0 <= self.anneal_carved <= 1:
            raise InputError("anneal_carved must be in 0..1 (a share of the inside labels)", field="anneal_carved")
        if not 0 <= self.anneal_missed <= 1:
            raise InputError("anneal_missed must be in 0..1 (a share of the hand pixels)", field="anneal_missed")


def migrate_config(values: dict) -> dict:
    """An older run's config.json ``config`` -> today's keys: ``labels_follow_bones`` (folded into ``labels_pose``)
    is dropped; true with ``labels_pose`` "mesh" (the only pose it applied to; runs older than ``labels_pose`` posed
    their labels there) becomes ``labels_pose`` "bones". A run older than ``occ_anneal`` followed its anneal fields
    as written, with the defaults of then (no anneal): ``occ_anneal`` "on", start = end = 1, final 0 where absent;
    one older than ``anneal_missed`` decided "auto" by the hull check alone (``anneal_missed`` 1, never exceeded);
    one older than ``cal_render`` rendered through its density calibration (``cal_render`` "on"); ``bone_thickness``
    and ``cal_render`` true / false (before "auto") are "on" / "off", and a run older than ``bone_thickness`` has
    none ("off")."""
    if "labels_follow_bones" not in values and "occ_anneal" in values and "anneal_missed" in values \
            and isinstance(values.get("cal_render"), str) and isinstance(values.get("bone_thickness"), str):
        return values
    values = dict(values)
    values.setdefault("anneal_missed", 1.0)
    values.setdefault("cal_render", True)
    for key in ("bone_thickness", "cal_render"):
        if isinstance(values.get(key, False), bool):
            values[key] = "on" if values.get(key, False) else "off"
    if values.pop("labels_follow_bones", False) is True and values.get("labels_pose", "mesh") == "mesh":
        values["labels_pose"] = "bones"
    if "occ_anneal" not in values:
        values["occ_anneal"] = "on"
        for key, before in (("occ_anneal_start", 1.0), ("occ_anneal_end", 1.0), ("w_occ_final", 0.0)):
            values.setdefault(key, before)
    return values


def occ_weight(cfg: HandOccConfig, step: int, anneal: bool = True) -> float:
    """The occupancy loss weight at ``step``: ``w_occ`` until ``occ_anneal_start`` · steps, then linear to
    ``w_occ_final`` at ``occ_anneal_end`` · steps, constant after; ``w_occ`` throughout when ``anneal`` is False
    (the run's decision, ``HandOccMethod.labels_annealed``). Stage "occupancy" keeps ``w_occ`` (the labels are its
    only supervision)."""
    if cfg.stage != "full" or not anneal:
        return cfg.w_occ
    a, b = cfg.occ_anneal_start * cfg.steps, cfg.occ_anneal_end * cfg.steps
    if step <= a:
        return cfg.w_occ
    if step >= b:
        return cfg.w_occ_final
    return cfg.w_occ + (cfg.w_occ_final - cfg.w_occ) * (step - a) / (b - a)


PRESETS = {
    "paper": HandOccConfig(),
    "fast": HandOccConfig(top_k=3, occ_hidden=32, occ_layers=3, color_hidden=64, color_layers=2, app_dim=16,
                          enc_channels=(16, 32, 32, 64), step=0.004, max_samples=40, rays_per_step=1024,
                          occ_points=2048, pool_points=16384, lr=2e-3, lr_final=2e-4, steps=2000, chunk=8192),
}


# ---------------------------------------------------------------------------------------------------------
# Skeleton state of one hand in one frame (no learnable parameters)


@dataclass
class HandSkeleton:
    """One posed hand: its bone frames in right-hand space and its capsules in world space."""

    side: str
    joints: Tensor  # (21, 3) world
    frames: BoneFrames  # of the (mirrored, for left hands) skeleton
    radii: Tensor  # (20,) capsule radii, metres
    pose: Tensor  # (60,) canonical pose code
    start: Tensor  # (20, 3) bone starts, world
    end: Tensor  # (20, 3)
    box_min: Tensor  # (3,) box around the capsules, world
    box_max: Tensor

    @property
    def mirrored(self) -> bool:
        return self.side == "left"

    def to_right(self, x: Tensor) -> Tensor:
        """World points (..., 3) -> the right-hand space the networks work in."""
        return mirror_x(x) if self.mirrored else x

    def world_axes(self) -> Tensor:
        """(20, 9) bone axes in world coordinates (mirrored back for left hands)."""
        ax = self.frames.axes
        if self.mirrored:
            ax = mirror_x(ax.transpose(-1, -2)).transpose(-1, -2)
        return ax.reshape(NUM_BONES, 9)


def make_hand(joints: Tensor, side: str, rel_radii: Tensor, dilation: float, margin: float) -> HandSkeleton:
    """HandSkeleton from world joints (21, 3) of a right or left hand."""
    j = joints.float()
    jr = mirror_x(j) if side == "left" else j
    frames = bone_frames(jr)
    radii = capsule_radii(j, rel_radii.to(j), dilation, margin)
    start, end = j[BONE_START], j[BONE_END]
    lo, hi = capsule_box(start, end, radii)
    return HandSkeleton(side, j, frames, radii, pose_code(jr), start, end, lo, hi)


# ---------------------------------------------------------------------------------------------------------
# Networks


class PartMLPs(nn.Module):
    """``parts`` independent MLPs of one shape (HALO: LeakyReLU 0.1, residual hidden layers, 1 output).

    ``part_forward(p, x, bias)`` runs part p on its rows x (Q, in_dim) -> logits (Q,), last hidden (Q, hidden).
    A per-part conditioning vector belongs to the first layer's input; ``cond_bias`` folds it into a
    per-part bias once per skeleton.
    """

    def __init__(self, parts: int, in_dim: int, cond_dim: int, hidden: int, layers: int):
        super().__init__()
        self.parts, self.in_dim = parts, in_dim

        def init(*shape, fan_in):
            b = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*shape).uniform_(-b, b))

        self.w0 = init(parts, in_dim + cond_dim, hidden, fan_in=in_dim + cond_dim)
        self.b0 = init(parts, hidden, fan_in=in_dim + cond_dim)
        self.wh = init(parts, max(layers - 1, 0), hidden, hidden, fan_in=hidden)
        self.bh = init(parts, max(layers - 1, 0), hidden, fan_in=hidden)
        self.wo = init(parts, hidden, fan_in=hidden)
        self.bo = nn.Parameter(torch.full((parts,), -1.0))  # starts mostly empty (occupancy ~0.27)

    def cond_bias(self, cond: Tensor) -> Tensor:
        """(parts, cond_dim) -> first-layer bias (parts, hidden)."""
        return self.b0 + torch.einsum("pc,pch->ph", cond, self.w0[:, self.in_dim:])

    def per_part(self, bias: Tensor) -> list[tuple]:
        """The weights split by part once (one backward node per tensor, not one per part and use: a
        per-part index of a parameter costs a zero-filled gradient of the whole parameter in backward).

        bias: (parts, hidden) from `cond_bias`. Returns per part (w0, b0, [(w, b) per hidden layer]) for
        `run_part`; the output layer runs on all rows at once (`out_logits`).
        """
        hidden = [list(zip(self.wh[:, i].unbind(0), self.bh[:, i].unbind(0))) for i in range(self.wh.shape[1])]
        return [(w0, b0, [layer[p] for layer in hidden]) for p, (w0, b0) in
                enumerate(zip(self.w0[:, :self.in_dim].unbind(0), bias.unbind(0)))]

    @staticmethod
    def run_part(weights: tuple, x: Tensor) -> Tensor:
        """One part's hidden layers (weights from `per_part`) on its rows x (Q, in_dim) -> last hidden (Q, hidden)."""
        w0, b0, layers = weights
        h = F.leaky_relu(torch.addmm(b0, x, w0), 0.1)
        for w, b in layers:
            h = h + F.leaky_relu(torch.addmm(b, h, w), 0.1)
        return h

    def out_logits(self, part: Tensor, h: Tensor) -> Tensor:
        """Output layer of rows of any parts: part (R,), last hidden (R, hidden) -> logits (R,).

        All 20 parts' outputs by one (R, hidden) x (hidden, 20) product, then each row's own column: cheaper
        forward and backward than gathering an (R, hidden) weight row per sample (whose backward accumulates
        R rows into the (20, hidden) weight one by one).
        """
        return torch.addmm(self.bo, h, self.wo.T).gather(1, part[:, None])[:, 0]

    def forward_grouped(self, enc: Tensor, counts: list[int], bias: Tensor) -> tuple[Tensor, Tensor]:
        """Inference (no autograd): rows grouped by part, enc (R, in_dim) with counts[p] rows of part p in
        order, bias (parts, hidden) from `cond_bias` -> last hidden (R, hidden), logits (R,).

        Each part writes its layers into its row range of one output buffer (no per-part tensors to
        concatenate, activations and residuals in place): the same products as `run_part` + `out_logits`.
        """
        R, H = len(enc), self.wo.shape[1]
        feat = enc.new_empty(R, H)
        logits = enc.new_empty(R)
        tmp = enc.new_empty(max(counts, default=0), H)
        w0 = self.w0[:, :self.in_dim]
        s = 0
        for p, n in enumerate(counts):
            if not n:
                continue
            h = feat[s:s + n]
            torch.addmm(bias[p], enc[s:s + n], w0[p], out=h)
            F.leaky_relu_(h, 0.1)
            for layer in range(self.wh.shape[1]):
                t = tmp[:n]
                torch.addmm(self.bh[p, layer], h, self.wh[p, layer], out=t)
                h.add_(F.leaky_relu_(t, 0.1))
            torch.addmv(self.bo[p], h, self.wo[p], out=logits[s:s + n])
            s += n
        return feat, logits

    def part_forward(self, p: int, x: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        h = F.leaky_relu(torch.addmm(bias, x, self.w0[p, :self.in_dim]), 0.1)
        for layer in range(self.wh.shape[1]):
            h = h + F.leaky_relu(torch.addmm(self.bh[p, layer], h, self.wh[p, layer]), 0.1)
        return h @ self.wo[p] + self.bo[p], h


class OccupancyNet(nn.Module):
    """o(x | skeleton) in [0, 1] from per-bone part networks (HALO / NASA "deformable" model)."""

    def __init__(self, cfg: HandOccConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_dim = encoding_dim(3, 0, cfg.occ_pe_deg, True) + 1
        # bone-specific projection of the global pose (+ the bone's length) -> pose_proj values per bone
        b = 1.0 / math.sqrt(POSE_DIM + 1)
        self.pose_w = nn.Parameter(torch.empty(NUM_BONES, POSE_DIM + 1, cfg.pose_proj).uniform_(-b, b))
        self.pose_b = nn.Parameter(torch.zeros(NUM_BONES, cfg.pose_proj))
        self.parts = PartMLPs(NUM_BONES, self.enc_dim, cfg.pose_proj, cfg.occ_hidden, cfg.occ_layers)

    def forward(self, hand: HandSkeleton, x: Tensor, soft: bool = False, reference: bool = False,
                radial: Tensor | None = None) -> dict[str, Tensor]:
        """Occupancy of world points x (P, 3) for one hand.

        Each point is evaluated by its ``top_k`` nearest bones (capsule distance). The (point, bone) pairs
        are grouped by bone; per bone, the local coordinates u = axes^T (x - start) / length, their PE and
        the distance to the bone (cm: finger and palm thickness is absolute, not relative to the bone's
        length) go through that bone's MLP. Returns occ (P,) (soft-max blend of the parts when ``soft``,
        else their max), part (P,) winning bone, local (P, 3) coordinates in its frame, parts_occ (P, K),
        cand (P, K) candidate bones, and the winners' last hidden features through `winner_features`.

        The pairs' inputs (gathers, local coordinates, encoding) are built for all pairs at once in bone
        order, so the loop over bones only runs the part MLPs on contiguous row ranges of one encoded
        matrix: no per-bone gathers or concatenations in the forward pass, and as few nodes in the
        backward. ``reference`` runs the loop this replaced (tests check that both agree).

        ``radial`` (20,) or None: per bone a log radial scale of the field (`thickness.thicken`; the rendered field
        of a model with `BoneThickness`); ``local`` is then the scaled coordinates.
        """
        if reference:
            return self._forward_reference(hand, x, soft, radial)
        K = self.cfg.top_k
        P = len(x)
        if P == 0:
            return self._empty(x)
        xr, fr, dist, cand, order, counts, bias = self._candidates(hand, x)
        pt, bone = order // K, cand.reshape(-1)[order]  # each pair's point and bone, in bone order
        # all 20 bones' local coordinates of each point by one (P, 3) x (3, 60) product (about the bones'
        # centroid, as in segment_distance, for float32 precision), then the pairs' rows picked
        c = fr.start.mean(0)
        a = fr.axes / fr.length.clamp_min(1e-6)[:, None, None]  # (20, 3, 3)
        off = torch.einsum("bi,bij->bj", fr.start - c, a).reshape(-1)
        u_all = torch.addmm(off, xr - c, a.permute(1, 0, 2).reshape(3, -1), alpha=1.0, beta=-1.0)
        u_s = u_all.view(-1, 3).index_select(0, pt * NUM_BONES + bone)
        d_s = dist.view(-1).index_select(0, pt * NUM_BONES + bone)
        if radial is not None:
            u_s, d_s = thicken(u_s, fr.length[bone], radial[bone])
        if not torch.is_grad_enabled():  # inference: every buffer written once, in place
            enc = encode_into(u_s, 100.0 * d_s, self.cfg.occ_pe_deg)
            feat_s, logits_s = self.parts.forward_grouped(enc, counts, bias)
            return self._combine(P, K, order, cand, u_s, feat_s, logits_s, soft)
        if u_s.requires_grad or d_s.requires_grad:  # skeleton refinement: gradients reach the joints
            enc = torch.cat([positional_encoding(u_s, 0, self.cfg.occ_pe_deg, True), 100.0 * d_s[:, None]], -1)
        else:  # a constant input (only the networks learn): built in one buffer, as at inference
            enc = encode_into(u_s, 100.0 * d_s, self.cfg.occ_pe_deg)
        weights = self.parts.per_part(bias)
        feats = [self.parts.run_part(weights[b], e)  # one iteration per bone, never per point
                 for b, e in enumerate(enc.split(counts))]
        feat_s = torch.cat(feats)
        logits_s = self.parts.out_logits(bone, feat_s)  # one output layer over all rows: one backward node
        return self._combine(P, K, order, cand, u_s, feat_s, logits_s, soft)

    def _candidates(self, hand: HandSkeleton, x: Tensor):
        """The (point, bone) pairs of ``x`` (P, 3): points in the right-hand frame xr (P, 3), the bone frames,
        distances to the 20 bones (P, 20), each point's ``top_k`` nearest bones cand (P, K), the pairs' order
        grouped by bone (P*K,), the pair count per bone [20] and the pose-conditioned biases of the parts."""
        xr = hand.to_right(x)
        fr = hand.frames
        if torch.is_grad_enabled() and (xr.requires_grad or fr.start.requires_grad or fr.end.requires_grad):
            dist = segment_distance(xr, fr.start, fr.end)  # (P, 20)
            cand = torch.topk(dist - hand.radii, self.cfg.top_k, dim=-1, largest=False).indices  # (P, K)
        else:
            dist = segment_distance_(xr, fr.start, fr.end)
            cand = torch.topk(dist - hand.radii, self.cfg.top_k, dim=-1, largest=False).indices
        flat = cand.reshape(-1)
        order = torch.sort(flat.to(torch.uint8), stable=True).indices  # pairs grouped by bone (20 < 256)
        counts = torch.bincount(flat, minlength=NUM_BONES).tolist()
        cond_in = torch.cat([hand.pose.expand(NUM_BONES, -1), 10.0 * fr.length[:, None]], -1)
        bias = self.parts.cond_bias(torch.einsum("pc,pcj->pj", cond_in, self.pose_w) + self.pose_b)
        return xr, fr, dist, cand, order, counts, bias

    def _combine(self, P: int, K: int, order: Tensor, cand: Tensor, u_s: Tensor, feat_s: Tensor, logits_s: Tensor,
                 soft: bool) -> dict[str, Tensor]:
        """`forward`'s outputs from the pairs' local coordinates, features and logits in bone order."""
        dev = u_s.device
        o_pk = torch.sigmoid(torch.empty_like(logits_s).index_put((order,), logits_s)).reshape(P, K)
        win = o_pk.argmax(-1)
        ar = torch.arange(P, device=dev)
        inv = torch.empty_like(order).index_put((order,), torch.arange(len(order), device=dev))
        win_pos = inv[ar * K + win]  # row of each point's winning pair in the grouped order
        if soft:
            w = torch.softmax(self.cfg.beta * o_pk, dim=-1)
            occ = (w * o_pk).sum(-1)
        else:
            occ = o_pk[ar, win]
        return {"occ": occ, "part": cand[ar, win], "local": u_s[win_pos], "parts_occ": o_pk, "cand": cand,
                "feat_pairs": feat_s, "win_pos": win_pos}

    def _empty(self, x: Tensor) -> dict[str, Tensor]:
        K = self.cfg.top_k
        z = x.new_zeros(0)
        return {"occ": z, "part": z.long(), "local": x.new_zeros(0, 3), "parts_occ": x.new_zeros(0, K),
                "cand": z.long().reshape(0, K), "feat_pairs": x.new_zeros(0, self.cfg.occ_hidden),
                "win_pos": z.long()}

    def _forward_reference(self, hand: HandSkeleton, x: Tensor, soft: bool = False, radial: Tensor | None = None
                           ) -> dict[str, Tensor]:
        """`forward` as first written: per-bone gathers, encodings and concatenations."""
        K = self.cfg.top_k
        P = len(x)
        if P == 0:
            return self._empty(x)
        xr, fr, dist, cand, order, counts, bias = self._candidates(hand, x)
        logits, feats, locs = [], [], []
        for b, rows in enumerate(torch.split(order, counts)):  # one iteration per bone, never per point
            if not len(rows):
                continue
            pt = rows // K
            u = (xr[pt] - fr.start[b]) @ fr.axes[b] / fr.length[b].clamp_min(1e-6)
            d = dist[pt, b]
            if radial is not None:
                u, d = thicken(u, fr.length[b].expand(len(u)), radial[b].expand(len(u)))
            enc = torch.cat([positional_encoding(u, 0, self.cfg.occ_pe_deg, True), 100.0 * d[:, None]], -1)
            lg, h = self.parts.part_forward(b, enc, bias[b])
            logits.append(lg)
            feats.append(h)
            locs.append(u)
        logits_s, feat_s, u_s = torch.cat(logits), torch.cat(feats), torch.cat(locs)
        o_pk = torch.sigmoid(torch.empty_like(logits_s).index_put((order,), logits_s)).reshape(P, K)
        win = o_pk.argmax(-1)
        ar = torch.arange(P, device=x.device)
        inv = torch.empty_like(order).index_put((order,), torch.arange(len(order), device=x.device))
        win_pos = inv[ar * K + win]  # row of each point's winning pair in the grouped order
        if soft:
            w = torch.softmax(self.cfg.beta * o_pk, dim=-1)
            occ = (w * o_pk).sum(-1)
        else:
            occ = o_pk.gather(1, win[:, None])[:, 0]
        return {"occ": occ, "part": cand[ar, win], "local": u_s[win_pos], "parts_occ": o_pk, "cand": cand,
                "feat_pairs": feat_s, "win_pos": win_pos}


def segment_distance_(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """`segment_distance` (x (P, 3), segments a-b (B, 3) -> (P, B)) for inputs that need no gradient: the same
    operations in the same order, written in place into two (P, B) buffers instead of a dozen temporaries."""
    c = a.mean(0)
    x, a, b = x - c, a - c, b - c
    ab = b - a
    len2 = (ab * ab).sum(-1).clamp_min(1e-12)
    xab = (x @ ab.T).sub_((a * ab).sum(-1))  # (x - a) . ab
    s = (xab / len2).clamp_(0.0, 1.0)
    ax2 = (x @ a.T).mul_(2.0)
    torch.sub((x * x).sum(-1, keepdim=True), ax2, out=ax2).add_((a * a).sum(-1))  # |x - a|^2
    ax2.sub_(xab.mul_(2.0 * s))  # xab is not needed after this
    return ax2.add_(s.mul_(s).mul_(len2)).clamp_min_(0.0).sqrt_()


def encode_into(u: Tensor, extra: Tensor, max_deg: int, middle: Tensor | None = None,
                one_hot: tuple[Tensor, int] | None = None) -> Tensor:
    """[positional_encoding(u, 0, max_deg), middle, extra, one-hot] written into one buffer (no concatenation):
    u (R, 3), middle (R, F) or None, extra (R,), one_hot None or (classes (R,) long, C) ->
    (R, 3 + 6·max_deg + F + 1 + C), the values of the `torch.cat` it replaces.

    The buffer is feature-major (the result is the transpose of a contiguous (features, R) tensor): every
    sin / cos block is then one contiguous write, and matrix products take the column-major view as is.
    """
    n = 3 * max_deg
    f = 0 if middle is None else middle.shape[1]
    n_cls = 0 if one_hot is None else one_hot[1]
    out = u.new_empty(3 + 2 * n + f + 1 + n_cls, len(u))
    u_t = out[:3]
    u_t.copy_(u.T)
    y = (u_t[None] * (2.0 ** torch.arange(max_deg, device=u.device, dtype=u.dtype))[:, None, None]).reshape(n, -1)
    torch.sin(y, out=out[3:3 + n])
    torch.cos(y, out=out[3 + n:3 + 2 * n])
    if f:
        out[3 + 2 * n:3 + 2 * n + f].copy_(middle.T)
    out[3 + 2 * n + f] = extra
    if n_cls:
        hot = out[3 + 2 * n + f + 1:]
        hot.zero_()
        hot.view(-1).index_fill_(0, one_hot[0] * len(u) + torch.arange(len(u), device=u.device), 1.0)
    return out.T


def winner_features(q: dict, rows: Tensor) -> Tensor:
    """Last hidden features of the winning part at points ``rows`` of an `OccupancyNet` output: (R, hidden)."""
    return q["feat_pairs"][q["win_pos"][rows]]


class AppearanceEncoder(nn.Module):
    """Masked hand crop (B, 3, S, S) in [0, 1], black background -> appearance code (B, app_dim + 3).

    Strided 3x3 convolutions, global average pooling, a linear layer; the mean colour of the non-black
    pixels is appended to the code, which gives the colour network the skin tone directly.
    """

    def __init__(self, cfg: HandOccConfig):
        super().__init__()
        layers, c_in = [], 3
        for c in cfg.enc_channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(c_in + 3, cfg.app_dim)
        self.out_dim = self.code_dim(cfg)

    @staticmethod
    def code_dim(cfg: HandOccConfig) -> int:
        """Width of a code: the learned features and the reference crop's mean colour (3)."""
        return cfg.app_dim + 3

    def forward(self, crops: Tensor) -> Tensor:
        fg = (crops.amax(1, keepdim=True) > 0.02).to(crops.dtype)
        mean_rgb = (crops * fg).sum((2, 3)) / fg.sum((2, 3)).clamp_min(1.0)
        h = self.convs(crops).mean((2, 3))
        return torch.cat([self.head(torch.cat([h, mean_rgb], -1)), mean_rgb], -1)


class ColorNet(nn.Module):
    """rgb of a sample from the occupancy representation and the appearance code (no density output).

    The MLP predicts an offset in logit space from the reference crop's mean skin colour m (the code's
    last 3 values): rgb = sigmoid(logit(m) + Δ). Δ starts at zero, so an untrained model paints the
    reference's skin tone, and what is learned (shading, creases, nails) is relative to the subject's
    colour, which is what lets a reference image of another hand transfer its appearance.
    """

    def __init__(self, cfg: HandOccConfig, app_dim: int):
        super().__init__()
        self.cfg = cfg
        self.part = nn.Embedding(NUM_BONES, cfg.part_embed)
        self.app_dim = app_dim
        self.view_dim = encoding_dim(3, 0, cfg.view_pe_deg, True) if cfg.view_dir else 0
        self.normal_dim = 3 if cfg.normal_in else 0
        in_dim = self.input_dim(replace(cfg, view_dir=False, normal_in=False), app_dim)
        self.mlp = MLP(in_dim + self.view_dim + self.normal_dim, cfg.color_hidden, cfg.color_layers, 3)
        nn.init.zeros_(self.mlp.out.weight)
        nn.init.zeros_(self.mlp.out.bias)
        if self.view_dim or self.normal_dim:  # these columns start at zero: the same function as without them
            with torch.no_grad():
                self.mlp.layers[0].weight[:, in_dim:] = 0.0

    @staticmethod
    def input_dim(cfg: HandOccConfig, app_dim: int) -> int:
        """Width of the first layer's input: [PE(local), part embedding, part features, occupancy, bone axes (9),
        appearance code, PE(view direction) with ``view_dir``, capsule normal with ``normal_in``]."""
        view = encoding_dim(3, 0, cfg.view_pe_deg, True) if cfg.view_dir else 0
        return (encoding_dim(3, 0, cfg.color_pe_deg, True) + cfg.part_embed + cfg.occ_hidden + 1 + 9 + app_dim + view
                + (3 if cfg.normal_in else 0))

    def view_encoding(self, view: Tensor) -> Tensor:
        """(R, 3) ray directions (world) -> (R, view_dim) PE of the unit directions."""
        return positional_encoding(F.normalize(view, dim=-1), 0, self.cfg.view_pe_deg, True)

    def forward(self, local: Tensor, part: Tensor, feat: Tensor, occ: Tensor, axes: Tensor, app: Tensor,
                view: Tensor | None = None, normal: Tensor | None = None) -> Tensor:
        """Per sample: local (R, 3), part (R,), feat (R, F), occ (R,), axes (R, 9), app (R, A), view (R, 3)
        world ray directions (used with ``view_dir``), normal (R, 3) (with ``normal_in``) -> rgb (R, 3)."""
        x = [positional_encoding(local, 0, self.cfg.color_pe_deg, True), self.part(part), feat, occ[:, None], axes,
             app]
        if self.view_dim:
            x.append(self.view_encoding(view))
        if self.normal_dim:
            x.append(normal)
        x = torch.cat(x, -1)
        base = torch.logit(app[:, -3:].clamp(0.02, 0.98))
        return torch.sigmoid(base + self.mlp(x))

    def forward_hand(self, local: Tensor, part: Tensor, feat: Tensor, occ: Tensor, axes: Tensor, app: Tensor,
                     view: Tensor | None = None, normal: Tensor | None = None) -> Tensor:
        """`forward` for samples of one hand: axes (20, 9) its bones' world axes, app (A,) its code, view (R, 3)
        the samples' ray directions (with ``view_dir``), normal (R, 3) their normals (with ``normal_in``).

        The inputs that depend only on the part and the hand (part embedding, axes, code) go through the
        first layer once per part, a (20, hidden) table added to the per-sample product: the same first
        layer without concatenating (R, in_dim) inputs. local (R, 3), part (R,), feat (R, F), occ (R,) ->
        rgb (R, 3).
        """
        mlp = self.mlp
        w, b = mlp.layers[0].weight, mlp.layers[0].bias  # (hidden, in_dim), (hidden,)
        pe = encoding_dim(3, 0, self.cfg.color_pe_deg, True)
        ne, nf = self.part.embedding_dim, feat.shape[1]
        c_part, c_feat = pe, pe + ne
        c_occ = c_feat + nf
        c_axes, c_app = c_occ + 1, c_occ + 10
        c_view = c_app + self.app_dim
        c_norm = c_view + self.view_dim
        table = (self.part.weight @ w[:, c_part:c_feat].T + axes @ w[:, c_axes:c_app].T
                 + (w[:, c_app:c_view] @ app + b))  # (20, hidden)
        if not torch.is_grad_enabled():
            # inference: one product over [PE, feat, occ, one-hot part] built in one buffer (the part's table row
            # selected by the product, not gathered into an (R, hidden) matrix first)
            x = encode_into(local, occ, self.cfg.color_pe_deg, feat, (part, NUM_BONES))
            wx = torch.cat([w[:, :pe].T, w[:, c_feat:c_axes].T, table])  # (pe + F + 1 + 20, hidden)
            h = torch.mm(x, wx)
            if self.view_dim:
                h.addmm_(self.view_encoding(view), w[:, c_view:c_norm].T)
            if self.normal_dim:
                h.addmm_(normal, w[:, c_norm:].T)
            h = torch.relu_(h)
            for layer in mlp.layers[1:]:
                h = torch.relu_(layer(h))
            base = torch.logit(app[-3:].clamp(0.02, 0.98))
            return torch.sigmoid_(mlp.out(h).add_(base))
        h = torch.addmm(table[part], positional_encoding(local, 0, self.cfg.color_pe_deg, True), w[:, :pe].T)
        h = torch.addmm(h, feat, w[:, c_feat:c_occ].T) + occ[:, None] * w[:, c_occ]
        if self.view_dim:
            h = torch.addmm(h, self.view_encoding(view), w[:, c_view:c_norm].T)
        if self.normal_dim:
            h = torch.addmm(h, normal, w[:, c_norm:].T)
        h = mlp.act(h)
        for layer in mlp.layers[1:]:
            h = mlp.act(layer(h))
        base = torch.logit(app[-3:].clamp(0.02, 0.98))
        return torch.sigmoid(base + mlp.out(h))


class DensityCalibration(nn.Module):
    """The occupancy as rendered: o' = sigmoid(exp(s·p0) logit(o) + s·p1), identity at the start (p = 0).

    Mesh labels that are off the imaged hand by a random few millimetres (real fits, the realistic profile)
    teach the occupancy a soft band around the surface; rendered as density that band is opaque well outside
    the o = 0.5 surface (fat silhouettes), and the mask and photometric losses fight the labels over the same
    output. A monotone map between the labelled occupancy and the rendered one lets the images set the
    rendered surface's position and sharpness without moving the labels' optimum. ``scale`` s makes an Adam
    step of the run's learning rate move the slope's log and the offset by lr·s.
    """

    def __init__(self, scale: float = 5.0):
        super().__init__()
        self.scale = float(scale)
        self.p = nn.Parameter(torch.zeros(2))
        # cal_render "auto", set when training ends (render_calibration.py): what renders apply, -1 undecided
        # (nothing), 0 nothing, 1 the trained calibration (sixteenth round), 2 the one fitted to training views then,
        # sigmoid(exp(fitted[0]) logit(o) + fitted[1])
        self.register_buffer("in_render", torch.tensor(-1, dtype=torch.int8))
        self.register_buffer("fitted", torch.zeros(2))
        self.register_load_state_dict_pre_hook(self._undecided_before)

    @staticmethod
    def _undecided_before(module, state: dict, prefix: str, *args) -> None:
        """A checkpoint saved before ``in_render`` loads as undecided, one saved before ``fitted`` without a fit."""
        state.setdefault(prefix + "in_render", torch.tensor(-1, dtype=torch.int8))
        state.setdefault(prefix + "fitted", torch.zeros(2))

    @staticmethod
    def _calibrate(occ: Tensor, log_a: Tensor, b: Tensor) -> Tensor:
        return torch.where(occ > 0, torch.sigmoid(torch.exp(log_a) * torch.logit(occ.clamp(1e-6, 1.0 - 1e-6)) + b),
                           occ)

    def forward(self, occ: Tensor) -> Tensor:
        """occ (...) in [0, 1] -> calibrated occupancy (...) with the trained (a, b); 0 stays 0 (empty space stays
        empty)."""
        return self._calibrate(occ, self.scale * self.p[0], self.scale * self.p[1])

    def rendered(self, occ: Tensor) -> Tensor:
        """As ``forward`` with the (a, b) fitted for renders (``fitted``; ``in_render`` 2 says renders use it)."""
        return self._calibrate(occ, self.fitted[0], self.fitted[1])

    def slope_offset(self) -> tuple[float, float]:
        p = self.p.detach()
        return float(torch.exp(self.scale * p[0])), float(self.scale * p[1])


class HandOcc(nn.Module):
    """The three networks plus what a run needs to render on its own (saved in the checkpoint):
    relative capsule radii (20,) and the reference appearance crops (2, REF_CROPS, 3, S, S) of the right / left hand
    with their weights (2, REF_CROPS); and, for training, ``label_carved`` (2,): the sum and number of the steps'
    shares of inside labels the visual-hull check carved before ``occ_anneal_start``, and ``label_missed`` (2,): the
    same for the shares of the training views' hand pixels the labels' mesh leaves uncovered (``occ_anneal`` "auto")."""

    def __init__(self, cfg: HandOccConfig):
        super().__init__()
        self.cfg = cfg
        self.occ = OccupancyNet(cfg)
        self.app = AppearanceEncoder(cfg)
        self.color = ColorNet(cfg, self.app.out_dim)
        if cfg.density_cal:
            self.density_cal = DensityCalibration()
        if cfg.normal_detail and cfg.normal_in:
            self.normal_detail = NormalDetail(NUM_BONES, cfg.normal_pe_deg, cfg.normal_hidden)
        if cfg.bone_thickness != "off":
            self.thickness = BoneThickness()
        from handcli.methods.handocc.sampler import DEFAULT_RELATIVE_RADII

        self.register_buffer("rel_radii", torch.tensor(DEFAULT_RELATIVE_RADII))
        self.register_buffer("ref_crops", torch.zeros(2, REF_CROPS, 3, cfg.crop_size, cfg.crop_size))
        self.register_buffer("ref_weight", torch.zeros(2, REF_CROPS))
        self.register_buffer("label_carved", torch.zeros(2))
        self.register_buffer("label_missed", torch.zeros(2))
        self.register_load_state_dict_pre_hook(_one_reference_crop)
        self.register_load_state_dict_pre_hook(_missing_anneal_evidence)

    def use_config(self, cfg: HandOccConfig) -> None:
        """Switch to another config of the same architecture (sampler, render_step, wave, tau, ...): the
        sub-networks read their own reference to it."""
        self.cfg = self.occ.cfg = self.color.cfg = cfg

    @contextlib.contextmanager
    def sampling(self, **changes):
        """Render with some config fields changed for the duration of a ``with`` block, e.g.
        ``with model.sampling(sampler="uniform", n_uniform=64): ...``; the config is restored after."""
        before = self.cfg
        self.use_config(replace(before, **changes))
        try:
            yield self.cfg
        finally:
            self.use_config(before)

    def rendered_occ(self, hand: HandSkeleton, x: Tensor, soft: bool, reference: bool = False) -> dict[str, Tensor]:
        """`OccupancyNet` outputs of the field as rendered: with the learned bone thickness when the model has one
        (the occupancy labels supervise ``self.occ`` itself)."""
        thick = getattr(self, "thickness", None)
        radial = thick.log_scale(hand.side) if thick is not None and thick.in_use() else None
        return self.occ(hand, x, soft=soft, reference=reference, radial=radial)

    def rendered_calibration(self, train: bool) -> Callable[[Tensor], Tensor] | None:
        """The density calibration a render applies (occupancy (...) -> rendered occupancy (...)), or None: the
        model's trained one in training (with ``cal_train``, the default), and at inference the trained one with
        ``cal_render`` "on", or with "auto" the one chosen when training ended (``in_render``: 1 the trained one, 2 the
        fitted one, ``DensityCalibration.rendered``)."""
        cal = getattr(self, "density_cal", None)
        if cal is None:
            return None
        if train:
            return cal if self.cfg.cal_train else None
        mode = self.cfg.cal_render
        chosen = int(cal.in_render) if mode == "auto" else -1
        if mode == "on" or chosen == 1:
            return cal
        return cal.rendered if chosen == 2 else None

    def hand(self, joints: Tensor, side: str) -> HandSkeleton:
        return make_hand(joints.to(self.rel_radii.device), side, self.rel_radii, self.cfg.radius_dilation,
                         self.cfg.radius_margin)

    def default_codes(self, hands: list[HandSkeleton]) -> list[Tensor]:
        """The run's own appearance, one code per hand: per side the weighted mean of the codes of its stored
        reference crops (``ref_weight``; crops of training views of many cameras, so that no one camera's colour
        response sets the colour of the renders); a model without weights uses its first crop."""
        means = []
        for side in range(2):
            w = self.ref_weight[side]
            keep = w > 0
            if not keep.any():
                keep, w = torch.arange(REF_CROPS, device=w.device) == 0, torch.ones_like(w)
            means.append((self.app(self.ref_crops[side][keep]) * w[keep, None]).sum(0) / w[keep].sum())
        return [means[0 if h.side == "right" else 1] for h in hands]


# ---------------------------------------------------------------------------------------------------------
# Rendering


def inside_capsules_boxed(x: Tensor, hand: HandSkeleton) -> Tensor:
    """`inside_capsules` for points (P, 3), testing the capsules only for points inside the hand's box."""
    inbox = ((x >= hand.box_min) & (x <= hand.box_max)).all(-1)
    out = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    rows = torch.nonzero(inbox)[:, 0]
    if len(rows):
        out[rows] = inside_capsules(x[rows], hand.start, hand.end, hand.radii)
    return out


def _one_reference_crop(module, state: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: a checkpoint written before several reference crops holds one crop per side
    (2, 3, S, S); it becomes the first of ``REF_CROPS`` slots, with all the weight."""
    old = state.get(prefix + "ref_crops")
    if old is None or old.dim() != 4:
        return
    crops = old.new_zeros(old.shape[0], REF_CROPS, *old.shape[1:])
    crops[:, 0] = old
    weight = old.new_zeros(old.shape[0], REF_CROPS)
    weight[:, 0] = 1.0
    state[prefix + "ref_crops"], state[prefix + "ref_weight"] = crops, weight


def _missing_anneal_evidence(module, state: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: a checkpoint written before ``occ_anneal`` "auto" has no ``label_carved`` (its
    config loads with ``occ_anneal`` "on", which does not read it), one before the coverage check no
    ``label_missed`` (its config loads with ``anneal_missed`` 1, which nothing exceeds)."""
    state.setdefault(prefix + "label_carved", torch.zeros(2))
    state.setdefault(prefix + "label_missed", torch.zeros(2))  # older: no coverage check (its config: anneal_missed 1)


def occupancy_density(occ: Tensor, step: float) -> Tensor:
    """Density of an occupancy: σ = −ln(1 − o) / step, so a segment of length ``step`` has opacity o.

    Volume rendering with σ then gives the same opacity profile for any sample spacing (alpha =
    1 − (1 − o)^(δ / step)), so the uniform baseline and the capsule sampler render the same field.
    """
    return -torch.log1p(-occ.clamp(0.0, 1.0 - 1e-6)) / step


def _ray_samples(cfg: HandOccConfig, hand: HandSkeleton, origins: Tensor, dirs: Tensor, perturb: bool,
                 gen: torch.Generator | None, train: bool = False) -> dict:
    """One hand's sample intervals along N rays (capsule-bounded, or uniform in its box) and positions.

    At inference a ``render_step`` > 0 replaces ``step`` as the spacing, with ``max_samples`` scaled by
    step / render_step so that rays keep the same covered length; densities keep ``step`` as their unit."""
    if cfg.sampler == "uniform":
        t0, t1, valid = box_samples(origins, dirs, hand.box_min, hand.box_max, cfg.n_uniform, perturb, gen)
    else:  # capsules only for the rays that enter the hand's box
        rows = torch.nonzero(ray_aabb(origins, dirs, hand.box_min, hand.box_max)[2])[:, 0]
        spacing, n_max = cfg.step, cfg.max_samples
        if not train and cfg.render_step > 0:
            spacing, n_max = cfg.render_step, math.ceil(cfg.max_samples * cfg.step / cfg.render_step)
        if len(rows) == len(origins):  # every ray enters the box (the render driver keeps only those)
            t0, t1, valid = capsule_samples(origins, dirs, hand.start, hand.end, hand.radii, spacing, n_max)
        else:
            c0, c1, cv = capsule_samples(origins[rows], dirs[rows], hand.start, hand.end, hand.radii, spacing, n_max)
            shape = (len(origins), n_max)
            t0 = origins.new_zeros(shape).index_put((rows,), c0)
            t1 = origins.new_zeros(shape).index_put((rows,), c1)
            valid = torch.zeros(shape, dtype=torch.bool, device=origins.device).index_put((rows,), cv)
    # Every ray's used samples come first: the columns past the most any ray uses are empty on all rays (alpha 0,
    # never evaluated) and are dropped, so that the waves, the merge and the compositing work on fewer columns.
    # The positions are drawn for all columns first: the random stream stays that of the full layout.
    out = {"t_starts": t0, "t_ends": t1, "tm": sample_positions(t0, t1, perturb, gen), "valid": valid}
    used = max(int(valid.sum(1).max()) if len(valid) else 0, 1)
    if used < valid.shape[1]:
        out = {k: v[:, :used].contiguous() for k, v in out.items()}
    return out


def _cat_occupancy(parts: list[dict]) -> dict:
    """Concatenate `OccupancyNet` outputs of disjoint point sets (``win_pos`` re-based)."""
    if len(parts) == 1:
        return parts[0]
    out = {k: torch.cat([q[k] for q in parts]) for k in ("occ", "part", "local", "feat_pairs")}
    offsets = [0]
    for q in parts[:-1]:
        offsets.append(offsets[-1] + len(q["feat_pairs"]))
    out["win_pos"] = torch.cat([q["win_pos"] + o for q, o in zip(parts, offsets)])
    return out


def _occupancy_along_rays(model: HandOcc, hands: list[HandSkeleton], sets: list[dict], origins: Tensor,
                          dirs: Tensor, train: bool, reference: bool = False) -> int:
    """Evaluate each hand's occupancy at its samples and the samples' density (with hand ownership).

    Fills each set with idx (evaluated flat sample indices), q (occupancy outputs at them), occ and sigma
    (N, S), and narrows ``valid`` to the evaluated samples. At inference with the occupancy sampler the
    samples of all hands are visited front to back in depth order, ``cfg.wave`` per ray at a time, and a
    ray stops once its transmittance falls below 1e-4: samples behind an opaque surface are never
    evaluated. Returns the number of occupancy-network evaluations.

    The waves write their outputs in place into buffers allocated once (``reference``: the path this
    replaced, whole-buffer copies per wave and the waves' outputs concatenated at the end).
    """
    cfg = model.cfg
    N, device = len(origins), origins.device
    S = [s["tm"].shape[1] for s in sets]
    base = [sum(S[:a]) for a in range(len(S))]
    # all hands' samples in depth order (unused samples last)
    t_all = torch.cat([torch.where(s["valid"], s["tm"], torch.full_like(s["tm"], float("inf"))) for s in sets], -1)
    order = torch.sort(t_all, dim=-1, stable=True).indices if len(sets) > 1 else \
        torch.arange(S[0], device=device).expand(N, -1)
    valid_sorted = torch.cat([s["valid"] for s in sets], -1).gather(1, order)
    if reference:  # the hand of each sorted sample (the fast path reads it off the wave's sample indices)
        src = torch.zeros_like(order)
        for a in range(1, len(sets)):
            src += (order >= base[a]).long()
    total = sum(S)
    step = cfg.wave if (cfg.wave > 0 and not train and cfg.sampler == "occupancy") else total
    alive = torch.ones(N, dtype=torch.bool, device=device)
    log_t = torch.zeros(N, device=device)
    evals = 0
    compact = not reference and step < total  # several waves: each writes its rows into one buffer
    cal = model.rendered_calibration(train)
    one_origin = not reference and bool((origins == origins[:1]).all())
    for s in sets:
        s["occ"] = torch.zeros(s["tm"].shape, device=device)
        s["sigma"] = torch.zeros(s["tm"].shape, device=device)
        s["done"] = torch.zeros(s["tm"].shape, dtype=torch.bool, device=device)
        s["pieces"], s["idx_pieces"] = [], []
        s["delta"] = s["t_ends"] - s["t_starts"]
        if compact:
            m = int(s["valid"].sum())
            s["buf"] = {"occ": origins.new_zeros(m), "part": torch.zeros(m, dtype=torch.long, device=device),
                        "local": origins.new_zeros(m, 3), "feat_pairs": origins.new_zeros(m, cfg.occ_hidden),
                        "idx": torch.zeros(m, dtype=torch.long, device=device)}
            s["rows"] = 0
    for k in range(0, total, step):
        cols = slice(k, min(k + step, total))
        sel = valid_sorted[:, cols] & alive[:, None]
        if not sel.any():
            break
        if not reference:  # the wave's samples once (row-major), each hand's picked from them below
            r_all, j_all = torch.nonzero(sel, as_tuple=True)
            g_all = j_all + cols.start if len(sets) == 1 else order[:, cols][r_all, j_all]  # concatenated column
        for a, (hand, s) in enumerate(zip(hands, sets)):
            if reference:
                r, j = torch.nonzero(sel & (src[:, cols] == a), as_tuple=True)
                if not len(r):
                    continue
                c = order[:, cols][r, j] - base[a]
            elif len(sets) == 1:  # one hand: the depth order is the sample order
                r, c = r_all, g_all
            else:
                mine = (g_all >= base[a]) & (g_all < base[a] + S[a])
                r, c = r_all[mine], g_all[mine] - base[a]
                if not len(r):
                    continue
            fi = r * S[a] + c  # flat sample indices: 1-D gathers and writes in the fast path
            if reference:
                x = origins[r] + s["tm"][r, c, None] * dirs[r]
            else:  # rays of one camera: its origin broadcast (the same values)
                x = (origins[:1] if one_origin else origins[r]) + s["tm"].reshape(-1)[fi, None] * dirs[r]
            q = model.rendered_occ(hand, x, soft=train or cfg.blend_inference, reference=reference)
            if cfg.sampler == "uniform":  # the field is empty outside the capsules, whatever the sampler
                q["occ"] = q["occ"] * inside_capsules_boxed(x, hand)
            o, share = q["occ"], None if not reference else torch.ones_like(q["occ"])
            evals += len(x)
            for b, other in enumerate(hands):
                if b == a:
                    continue
                near = inside_capsules_boxed(x, other)
                if near.any():
                    o_b = torch.zeros_like(o).index_put((torch.nonzero(near)[:, 0],),
                                                        model.rendered_occ(other, x[near],
                                                                           soft=train or cfg.blend_inference,
                                                                           reference=reference)["occ"])
                    evals += int(near.sum())
                    share = torch.sigmoid(cfg.own_kappa * (o - o_b)) if train else (o >= o_b).to(o.dtype)
            o_cal = o if cal is None else cal(o)  # the rendered occupancy; ``occ`` below stays the network's
            sigma = occupancy_density(o_cal if share is None else o_cal * share, cfg.step)
            if reference:
                s["occ"] = s["occ"].index_put((r, c), o)
                s["sigma"] = s["sigma"].index_put((r, c), sigma)
                s["done"][r, c] = True
            else:
                s["occ"].view(-1).index_copy_(0, fi, o)
                s["sigma"].view(-1).index_copy_(0, fi, sigma)
                s["done"].view(-1).index_fill_(0, fi, True)
            if compact:
                rows = slice(s["rows"], s["rows"] + len(x))
                buf = s["buf"]
                buf["occ"][rows], buf["part"][rows], buf["local"][rows] = q["occ"], q["part"], q["local"]
                torch.index_select(q["feat_pairs"], 0, q["win_pos"], out=buf["feat_pairs"][rows])  # winners' features
                buf["idx"][rows] = fi
                s["rows"] += len(x)
            else:
                s["pieces"].append(q)
                s["idx_pieces"].append(fi)
            if step < total:
                if reference:
                    d_log_t = -sigma * (s["t_ends"][r, c] - s["t_starts"][r, c])
                else:
                    d_log_t = -sigma * s["delta"].reshape(-1)[fi]
                log_t = log_t.index_add(0, r, d_log_t) if reference else log_t.index_add_(0, r, d_log_t)
        alive &= log_t > math.log(1e-4)
    for s in sets:
        if compact:
            n = s.pop("rows")
            buf = {k: v[:n] for k, v in s.pop("buf").items()}
            s["idx"] = buf.pop("idx")
            s["q"] = {**buf, "win_pos": torch.arange(n, device=device)} if n else None
        else:
            s["q"] = _cat_occupancy(s["pieces"]) if s["pieces"] else None
            s["idx"] = torch.cat(s["idx_pieces"]) if s["idx_pieces"] else \
                torch.zeros(0, dtype=torch.long, device=device)
        s["valid"] = s["valid"] & s["done"]
        del s["pieces"], s["idx_pieces"], s["done"], s["delta"]
    return evals


def _merge_hands(parts: list[dict]) -> dict:
    """`composite_samples` of the hands' sample sets (values (N, S, 1) each), the same sort and result, with
    every gather on (N, ΣS) matrices: no (N, ΣS, 1) index expansion per value."""
    def cat(get) -> Tensor:
        return torch.cat([get(p) for p in parts], -1)

    t_starts, t_ends = cat(lambda p: p["t_starts"]), cat(lambda p: p["t_ends"])
    order = torch.sort(0.5 * (t_starts + t_ends), dim=-1, stable=True).indices
    source = cat(lambda p: torch.full_like(p["t_starts"], len(parts), dtype=torch.uint8))
    base = 0
    for i, p in enumerate(parts):  # set i's columns of the concatenation
        source[:, base:base + p["t_starts"].shape[1]] = i
        base += p["t_starts"].shape[1]
    return {"t_starts": t_starts.gather(-1, order), "t_ends": t_ends.gather(-1, order),
            "sigma": cat(lambda p: p["sigma"]).gather(-1, order), "valid": cat(lambda p: p["valid"]).gather(-1, order),
            "source": source.gather(-1, order).long(),
            "values": {k: cat(lambda p: p["values"][k][..., 0]).gather(-1, order)[..., None]
                       for k in parts[0]["values"]}}


def guided_samples(model: HandOcc, hands: list[HandSkeleton], origins: Tensor, dirs: Tensor,
                   perturb: bool = False, gen: torch.Generator | None = None, train: bool = False,
                   reference: bool = False) -> tuple[list[dict], Tensor, int, int]:
    """The samples of N rays that reach the radiance network, per hand.

    Returns (sets, active, occ_evals, n_samples): ``active`` (A,) the rays with at least one sample, and
    one dict per hand over those rays with t_starts, t_ends, tm (sample positions), valid (evaluated
    samples), occ and sigma (A, S), keep (A, S): samples whose occupancy exceeds tau, dilated by one
    sample along the ray (the occupancy-guided set; all valid samples for the uniform sampler), and the
    occupancy outputs q at the flat sample indices idx. n_samples counts the samples before early
    termination.
    """
    cfg = model.cfg
    sets = [_ray_samples(cfg, h, origins, dirs, perturb, gen, train) for h in hands]
    n_samples = int(sum(int(s["valid"].sum()) for s in sets))
    active = torch.nonzero(torch.stack([s["valid"].any(-1) for s in sets]).any(0))[:, 0]
    if len(active) < len(origins):
        origins, dirs = origins[active], dirs[active]
        for s in sets:
            for k in ("t_starts", "t_ends", "tm", "valid"):
                s[k] = s[k][active]
    occ_evals = _occupancy_along_rays(model, hands, sets, origins, dirs, train, reference)
    for s in sets:
        s["keep"] = dilate_along_ray(s["occ"] > cfg.tau, s["valid"]) if cfg.sampler == "occupancy" else s["valid"]
    return sets, active, occ_evals, n_samples


def _normals(model: HandOcc, q: dict, p: Tensor, axes: Tensor) -> Tensor:
    """World normals (S, 3) of the samples p of one hand's occupancy outputs q (their winning bones), axes (20, 9)
    that hand's `HandSkeleton.world_axes`: the capsules', with the model's learned relief if it has one."""
    local, part = q["local"][p], q["part"][p]
    detail = getattr(model, "normal_detail", None)
    residual = detail(local, part) if detail is not None else None
    return capsule_normals(local, axes.view(NUM_BONES, 3, 3)[part], residual)


def render_rays(model: HandOcc, hands: list[HandSkeleton], codes: list[Tensor] | None, origins: Tensor,
                dirs: Tensor, perturb: bool = False, gen: torch.Generator | None = None, train: bool = False,
                reference: bool = False) -> dict:
    """Volume-render N rays through the hands of one frame.

    hands: one or two HandSkeleton; codes: their appearance codes (A,), or None for opacity only.
    A sample's density is `occupancy_density` of its hand's occupancy there times its ownership (1 where the
    other hand's occupancy is lower; a sigmoid of the difference in training). Colour is evaluated only at samples
    with occupancy > tau (dilated) and weight > w_eps (occupancy sampler) or everywhere (uniform sampler).
    Returns rgb (N, 3) (None without codes), opacity (N,), depth (N,) expected ray distance, hand_opacity
    (N, H), weights and valid (N, S_total) of the merged samples, and counts: occ_evals, color_evals,
    evaluated (their sum), samples (valid samples before early termination).

    ``reference`` runs the simple path the fast one replaced (per-bone encodings, whole-buffer copies,
    colour inputs concatenated per sample); tests check that both agree.
    """
    cfg = model.cfg
    device = origins.device
    n_rays = len(origins)
    sets, active, occ_evals, n_samples = guided_samples(model, hands, origins, dirs, perturb, gen, train, reference)
    for s in sets:
        s["flat"] = torch.arange(s["tm"].numel(), device=device).reshape(s["tm"].shape + (1,))
    parts = [{"t_starts": s["t_starts"], "t_ends": s["t_ends"], "sigma": s["sigma"], "valid": s["valid"],
              "values": {"flat": s["flat"], "keep": s["keep"][..., None], "tm": s["tm"][..., None]}} for s in sets]
    if len(parts) == 1:
        merged = {**parts[0], "source": torch.zeros_like(sets[0]["flat"][..., 0])}
    elif reference:
        merged = composite_samples(parts)
    else:
        merged = _merge_hands(parts)
    w, _, _ = render_weights(merged["sigma"], merged["t_starts"], merged["t_ends"], merged["valid"])
    src = merged["source"]
    hand_opacity = torch.stack([(w * (src == h)).sum(-1) for h in range(len(sets))], -1)
    out = {"opacity": w.sum(-1), "depth": (w * merged["values"]["tm"][..., 0]).sum(-1),
           "hand_opacity": hand_opacity, "weights": w, "valid": merged["valid"], "rgb": None}
    color_evals = 0
    if codes is not None:
        eps = 1e-4 if train else cfg.w_eps
        need = merged["values"]["keep"][..., 0] & merged["valid"]
        if cfg.sampler == "occupancy":
            need = need & (w.detach() > eps)
        rgb = torch.zeros(*w.shape, 3, device=device) if reference else w.new_zeros(len(w), 3)
        view_dirs = dirs[active] if len(active) < n_rays else dirs  # (A, 3) the merged rows' directions
        for h, s in enumerate(sets):
            sel = need & (src == h) if reference or len(sets) > 1 else need
            if s["q"] is None or not sel.any():
                continue
            pos = torch.full((s["tm"].numel(),), -1, dtype=torch.long, device=device)
            pos[s["idx"]] = torch.arange(len(s["idx"]), device=device)
            if reference:
                p = pos[merged["values"]["flat"][..., 0][sel]]
            else:  # the merged samples' flat indices (row-major, as nonzero), and their hand's sample indices
                at = torch.nonzero(sel.reshape(-1))[:, 0]
                p = pos[merged["values"]["flat"].reshape(-1)[at]]
            q = s["q"]
            axes = hands[h].world_axes()  # (20, 9)
            color_evals += len(p)
            if reference:
                ray, col = torch.nonzero(sel, as_tuple=True)
                view = view_dirs[ray] if model.color.view_dim else None
                normal = _normals(model, q, p, axes) if model.color.normal_dim else None
                c = model.color(q["local"][p], q["part"][p], winner_features(q, p), q["occ"][p],
                                axes[q["part"][p]], codes[h].expand(len(p), -1), view, normal)
                rgb = rgb.index_put((ray, col), c)
                continue
            ray = at // w.shape[1]
            view = view_dirs[ray] if model.color.view_dim else None
            normal = _normals(model, q, p, axes) if model.color.normal_dim else None
            c = model.color.forward_hand(q["local"][p], q["part"][p], winner_features(q, p), q["occ"][p], axes,
                                         codes[h], view, normal)
            rgb = rgb.index_add(0, ray, w.reshape(-1)[at, None] * c)  # Σ w·c per ray, no (A, S, 3)
        out["rgb"] = (w[..., None] * rgb).sum(-2) if reference else rgb
    if len(active) < n_rays:
        for k in ("opacity", "depth", "hand_opacity", "weights", "rgb"):
            if out[k] is not None:
                out[k] = out[k].new_zeros((n_rays,) + out[k].shape[1:]).index_put((active,), out[k])
        out["valid"] = out["valid"].new_zeros((n_rays,) + out["valid"].shape[1:]).index_put((active,), out["valid"])
    out.update(occ_evals=occ_evals, color_evals=color_evals, evaluated=occ_evals + color_evals,
               samples=n_samples)
    return out


def occupancy_grid(model: HandOcc, hand: HandSkeleton, resolution: int, pad: float = 0.01,
                   chunk: int = 65536) -> tuple[Tensor, Tensor, float]:
    """Occupancy (max over parts) on a regular grid over the hand's capsule box (padded).

    The longest side gets ``resolution`` cells; points outside every capsule are 0 without evaluation.
    Returns grid (X, Y, Z), its origin (3,) world and the cell size (metres).
    """
    lo, hi = hand.box_min - pad, hand.box_max + pad
    h = float((hi - lo).max()) / max(resolution - 1, 1)
    n = [int(math.ceil(float(e) / h)) + 1 for e in (hi - lo)]
    axes = [lo[i] + h * torch.arange(n[i], device=lo.device, dtype=lo.dtype) for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    occ = torch.zeros(len(pts), device=lo.device)
    for s in range(0, len(pts), chunk):
        x = pts[s:s + chunk]
        inside = inside_capsules(x, hand.start, hand.end, hand.radii)
        if inside.any():
            occ[s:s + chunk][inside] = model.rendered_occ(hand, x[inside], soft=model.cfg.blend_inference)["occ"]
    return occ.reshape(*n), lo, h
