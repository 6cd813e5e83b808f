"""2D teacher-feature targets for feature distillation (HandNeRF, Guo §3.4).

Per view of the cache: the teacher runs on the **masked** image (background pixels, label 0, set to black),
every feature vector is L2-normalised, reduced by PCA to D dimensions and L2-normalised again (the official
trainer normalises the PCA features before its MSE: `F.normalize(batch["feat_pretrain"], dim=-1)`), and the
map is stored at the teacher's native stride (float16). Training fetches the target of a ray by nearest
neighbour, the cell that holds the ray's pixel (the official code replicates each token over its 8x8 patch).

Images are padded at the bottom and right with black (the masked background's colour) to a multiple of the
teacher's padding unit, so every pixel falls in a cell: a view of H x W pixels has
ceil(H / stride) x ceil(W / stride) cells, cell (r, c) covering pixel rows [r*s, r*s + s) and columns
[c*s, c*s + s). (DINO's patch convolution would otherwise drop the last H mod 8 rows.)

PCA (`--pca`):
- ``global`` (default): fitted once on up to ``pca_samples`` vectors drawn from ``pca_views`` random views
  (seeded), then applied to every view. All views share one basis, so a given 3D point has the same target
  in every view, which is what distillation into one 3D field needs.
- ``batch``: fitted on all vectors of each group of ``batch`` consecutive views, as the official
  `generate_features.py` (10 images per batch). Bases (and signs) differ between groups, so the same
  surface point can get unrelated targets in two views of different groups; kept for reproducing the paper.

File layout (``handcli.targets.features/1``), M views, Q cells of all views::

    /  attrs: schema, handcli_version, teacher, weights, weights_sha256 (first 16 hex), layers, stride,
              channels (teacher's, before PCA), dim, pca, pca_views, pca_samples, seed, batch, input_norm,
              normalisation, cache, cache_num_views, num_views, command, config (JSON), inputs (JSON)
    /views/offset (M,) int64   the view's cells are features[offset : offset + grid_h * grid_w], row-major
    /views/grid_h, grid_w (M,) cells; /views/height, width (M,) image size (cache resolution)
    /features (Q, D) float16   unit-norm vectors (background cells included)
    /pca/mean (C,), /pca/components (D, C) float32   (global mode only)
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handcli import __version__
from handcli.data.cache import CHECKSUM
from handcli.errors import InputError
from handcli.targets.store import FeatureTargets, sample_features  # noqa: F401  (re-exported)

SCHEMA = "handcli.targets.features/1"
TEACHERS = ("dino-vits8", "efficientnet-lite0")
# raw teacher features of the PCA views are kept for the second pass when they fit in this many bytes
_KEEP_BYTES = 256 << 20


@dataclass
class Teacher:
    """A loaded teacher: `net` maps normalised (B, 3, H, W) images to (B, channels, H / stride, W / stride)."""

    name: str
    net: object
    stride: int
    pad_multiple: int
    channels: int
    layers: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str
    weights_sha256: str = ""
    device: str = "cpu"
    input_norm: str = "teacher"
    extra: dict = field(default_factory=dict)


def file_sha256(path: str | Path, n_hex: int = 16) -> str:
    """First n_hex hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n_hex]


def load_teacher(name: str, weights: str | Path | None = None, device: str = "cpu",
                 input_norm: str = "teacher") -> Teacher:
    """Load a teacher by name (`dino-vits8` needs a local checkpoint; `efficientnet-lite0` ships its own).

    input_norm: ``teacher`` normalises inputs with the teacher's training statistics (ImageNet mean/std for
    DINO, (255x - 127) / 128 for EfficientNet-Lite); ``none`` feeds [0, 1] RGB as the official HandNeRF
    script does for DINO.
    """
    if input_norm not in ("teacher", "none"):
        raise InputError(f"unknown input normalisation {input_norm!r} (teacher or none)", field="input_norm")
    if name == "dino-vits8":
        from handcli.nn.vit import IMAGENET_MEAN, IMAGENET_STD, load_dino_vits8

        if weights is None:
            raise InputError("teacher dino-vits8 needs --weights PATH to the local DINO checkpoint "
                             "dino_deitsmall8_pretrain.pth (nothing is downloaded)", field="weights")
        net = load_dino_vits8(weights)

        def run(x, _net=net):
            return _net.patch_features(x, layer=1)

        t = Teacher(name, run, 8, 8, 384, "blocks.1 tokens -> final LayerNorm `norm`, CLS dropped",
                    IMAGENET_MEAN, IMAGENET_STD, str(Path(weights).resolve()), extra={"module": net})
    elif name == "efficientnet-lite0":
        from handcli.nn.efficientnet_teacher import (
            LITE0_CHANNELS,
            LITE0_LAYERS,
            LITE0_MEAN,
            LITE0_STD,
            default_weights_path,
            load_efficientnet_lite0,
        )

        net = load_efficientnet_lite0(weights)
        path = Path(weights) if weights is not None else default_weights_path()
        t = Teacher(name, net, 8, 16, LITE0_CHANNELS, "; ".join(LITE0_LAYERS), LITE0_MEAN, LITE0_STD,
                    str(path.resolve()), extra={"module": net})
    else:
        raise InputError(f"unknown teacher {name!r} (choose from {', '.join(TEACHERS)})", field="teacher")
    t.weights_sha256 = file_sha256(t.weights)
    t.input_norm = input_norm
    t.device = device
    t.extra["module"].to(device)
    return t


def masked_image(rgb: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image and (H, W) labels -> (H, W, 3) float32 in [0, 1] with background (label 0) = 0."""
    img = rgb.astype(np.float32) / 255.0
    img[label == 0] = 0.0
    return img


def teacher_features(teacher: Teacher, img: np.ndarray):
    """Teacher feature map of one image: (H, W, 3) float [0, 1] -> torch (C, ceil(H/s), ceil(W/s)) float32.

    The image is padded with zeros (black) at the bottom and right to a multiple of `pad_multiple`,
    normalised, run through the teacher, and the map cropped to the cells that cover the image.
    """
    import torch
    import torch.nn.functional as F

    H, W = img.shape[:2]
    m, s = teacher.pad_multiple, teacher.stride
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(teacher.device)
    x = F.pad(x, (0, (-W) % m, 0, (-H) % m))
    if teacher.input_norm == "teacher":
        mean = torch.tensor(teacher.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(teacher.std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    with torch.inference_mode():
        f = teacher.net(x)[0]
    return f[:, : math.ceil(H / s), : math.ceil(W / s)].float()


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit-L2-norm rows: (N, C) -> (N, C); zero rows stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def fit_pca(X: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of rows X (N, C) -> mean (C,), components (dim, C) (orthonormal rows, by decreasing variance).

    Same subspace and projections as sklearn's PCA (centred data); each component's sign is fixed so that
    its largest-magnitude entry is positive, which makes the result deterministic.
    """
    X = np.asarray(X)
    N, C = X.shape
    if dim > C:
        raise InputError(f"dim {dim} is larger than the teacher's {C} channels", field="dim")
    if dim > N:
        raise InputError(f"dim {dim} needs at least {dim} feature vectors for the PCA, got {N}", field="dim")
    mean = X.mean(0, dtype=np.float64)
    Xc = (X - mean).astype(np.float32)               # float32 product: 4x faster, ample for unit vectors
    cov = (Xc.T @ Xc).astype(np.float64) / max(N - 1, 1)
    _, vecs = np.linalg.eigh(cov)                   # ascending eigenvalues
    comps = vecs[:, ::-1][:, :dim].T.copy()          # (dim, C)
    big = np.abs(comps).argmax(1)
    comps *= np.sign(comps[np.arange(dim), big])[:, None]
    return mean, comps


def project_pca(X: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, D) float32: (X - mean) @ components^T."""
    return (np.asarray(X, dtype=np.float32) - mean.astype(np.float32)) @ comps.T.astype(np.float32)


def _view_vectors(teacher: Teacher, cache, j: int, clock: list[float]) -> np.ndarray:
    """L2-normalised teacher vectors of view j: (h*w, C) float32, cells row-major.

    Adds the teacher's run time and 1 to clock = [seconds, runs].
    """
    v = cache.view(j)
    img = masked_image(v["rgb"], v["label"])
    t0 = time.perf_counter()
    f = teacher_features(teacher, img)
    C = f.shape[0]
    X = f.reshape(C, -1).T.cpu().numpy()
    clock[0] += time.perf_counter() - t0
    clock[1] += 1
    return l2_normalize(X)


def compute_features(cache_path: str | Path, out: str | Path, *, teacher: str = "efficientnet-lite0",
                     weights: str | Path | None = None, dim: int = 256, batch: int = 10, pca: str = "global",
                     pca_views: int = 64, pca_samples: int = 100_000, seed: int = 0, input_norm: str = "teacher",
                     device: str = "cpu", force: bool = False, command: str = "") -> dict:
    """Write per-view PCA-reduced teacher features of a cache to ``out`` (atomic). Returns stats.

    See the module docstring for the procedure and file layout.
    """
    import h5py

    from handcli.data.shards import open_cache
    from handcli.outputs import atomic_path, check_writable
    from handcli.progress import progress

    if pca not in ("global", "batch"):
        raise InputError(f"unknown PCA mode {pca!r} (global or batch)", field="pca")
    if dim < 1 or batch < 1 or pca_views < 1 or pca_samples < 1:
        raise InputError("dim, batch, pca_views and pca_samples must be positive", field="dim")
    check_writable(out, force, inputs=[cache_path, weights], is_dir=False)
    t0 = time.perf_counter()
    with open_cache(cache_path) as cache:
        t = load_teacher(teacher, weights, device=device, input_norm=input_norm)
        if dim > t.channels:
            raise InputError(f"dim {dim} is larger than the {t.channels} channels of teacher {t.name}",
                             field="dim")
        vt = cache.view_table()
        M = cache.num_views
        if M == 0:
            raise InputError("the cache has no views", path=cache_path, field="num_views")
        H, W = vt["height"].astype(np.int64), vt["width"].astype(np.int64)
        gh, gw = -(-H // t.stride), -(-W // t.stride)
        cells = gh * gw
        offsets = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int64)
        total = int(cells.sum())
        rng = np.random.default_rng(seed)
        clock = [0.0, 0]
        with atomic_path(out, force=force) as tmp, h5py.File(tmp, "w") as f, progress() as bar:
            ds = f.create_dataset("features", (total, dim), dtype="f2", chunks=(max(1, min(4096, total)), dim),
                                  **CHECKSUM)
            kept: dict[int, np.ndarray] = {}
            mean = comps = None
            if pca == "global":
                fit_views = np.sort(rng.choice(M, size=min(M, pca_views), replace=False))
                per_view = max(1, math.ceil(pca_samples / len(fit_views)))
                keep = int(cells[fit_views].sum()) * t.channels * 4 <= _KEEP_BYTES
                task = bar.add_task("targets features: PCA fit", total=len(fit_views))
                samples = []
                for j in fit_views:
                    X = _view_vectors(t, cache, int(j), clock)
                    if keep:
                        kept[int(j)] = X
                    pick = rng.choice(len(X), size=min(len(X), per_view), replace=False)
                    samples.append(X[np.sort(pick)])
                    bar.advance(task)
                mean, comps = fit_pca(np.concatenate(samples)[:pca_samples], dim)
                f.create_dataset("pca/mean", data=mean.astype(np.float32), **CHECKSUM)
                f.create_dataset("pca/components", data=comps.astype(np.float32), **CHECKSUM)
            task = bar.add_task("targets features", total=M)
            for b0 in range(0, M, batch if pca == "batch" else M):
                group = range(b0, min(M, b0 + (batch if pca == "batch" else M)))
                if pca == "batch":
                    vecs = [_view_vectors(t, cache, j, clock) for j in group]
                    mean, comps = fit_pca(np.concatenate(vecs), dim)
                for k, j in enumerate(group):
                    if pca == "batch":
                        X = vecs[k]
                    elif j in kept:
                        X = kept.pop(j)
                    else:
                        X = _view_vectors(t, cache, j, clock)
                    Y = l2_normalize(project_pca(X, mean, comps))
                    ds[offsets[j]:offsets[j] + cells[j]] = Y.astype(np.float16)
                    bar.advance(task)
            g = f.create_group("views")
            g.create_dataset("offset", data=offsets, **CHECKSUM)
            g.create_dataset("grid_h", data=gh.astype(np.int32), **CHECKSUM)
            g.create_dataset("grid_w", data=gw.astype(np.int32), **CHECKSUM)
            g.create_dataset("height", data=H.astype(np.int32), **CHECKSUM)
            g.create_dataset("width", data=W.astype(np.int32), **CHECKSUM)
            config = {"teacher": t.name, "dim": dim, "batch": batch, "pca": pca, "pca_views": pca_views,
                      "pca_samples": pca_samples, "seed": seed, "input_norm": input_norm, "device": device}
            a = f.attrs
            a.update({
                "schema": SCHEMA, "handcli_version": __version__, "teacher": t.name, "weights": t.weights,
                "weights_sha256": t.weights_sha256, "layers": t.layers, "stride": t.stride,
                "channels": t.channels, "dim": dim, "pca": pca, "pca_views": pca_views,
                "pca_samples": pca_samples, "seed": seed, "batch": batch, "input_norm": input_norm,
                "normalisation": "L2 per vector -> PCA to dim -> L2 per vector",
                "masking": "background (cache label 0) set to black before the teacher",
                "padding": f"bottom/right with black to a multiple of {t.pad_multiple} px",
                "cache": str(Path(cache_path).resolve()), "cache_num_views": M, "num_views": M,
                "command": command, "config": json.dumps(config),
                "inputs": json.dumps({"cache": str(cache_path), "weights": t.weights}),
            })
    seconds = time.perf_counter() - t0
    return {"views": M, "cells": total, "seconds": seconds, "seconds_per_view": seconds / max(M, 1),
            "teacher_runs": clock[1], "teacher_seconds_per_run": clock[0] / max(clock[1], 1)}
