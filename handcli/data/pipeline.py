"""Streaming preprocess pipeline shared by the dataset readers.

A dataset source turns its annotations into a list of picklable *work items* (one per
frame). Workers turn an item into a ``FrameRecord`` plus its views (images decoded,
resized, masks rendered); the main process appends them to the cache in order. At most
``2 * workers`` frames are in flight, so memory stays bounded whatever the dataset size.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from handcli.data.cache import CacheWriter, FrameRecord, ViewRecord
from handcli.errors import InputError
from handcli.interrupts import graceful_signals, raise_if_signalled
from handcli.progress import log, progress

BAD_IMAGE = "bad image"  # drop reason of views/frames skipped by --skip-bad-images
MESH_FROM = ("auto", "params", "joints")


@dataclass
class CameraSpec:
    """A camera at cache resolution, as a worker reports it."""

    name: str
    capture: int
    K: np.ndarray
    world_to_cam: np.ndarray
    width: int
    height: int


@dataclass
class FrameResult:
    record: FrameRecord | None  # None: the frame was dropped
    views: list[tuple[CameraSpec, ViewRecord]] = field(default_factory=list)
    dropped_views: dict[str, int] = field(default_factory=dict)
    drop_reason: str | None = None


@dataclass(frozen=True)
class MeshSource:
    """How posed hand meshes are obtained for a cache."""

    mode: str  # "params": dataset MANO parameters drive the model; "joints": fit the model to 3D joints
    model_dir: str | None  # None: the open hand model
    kind: str  # "mano" or "open-hand/1"


def downscale_image(img: np.ndarray, K: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``img`` (H, W, ...) area-resampled to ``scale`` of its size (at least one pixel), and its intrinsics
    K (3, 3) to match; both as given at scale 1."""
    if scale == 1.0:
        return img, K
    import cv2

    from handcli.camera import scale_intrinsics

    H, W = img.shape[:2]
    W2, H2 = max(1, round(W * scale)), max(1, round(H * scale))
    return cv2.resize(img, (W2, H2), interpolation=cv2.INTER_AREA), scale_intrinsics(K, W2 / W, H2 / H)


def box_bounds(box_min: np.ndarray, box_max: np.ndarray, camera: CameraSpec) -> tuple[np.ndarray, np.ndarray]:
    """A view's bounds of the box (box_min, box_max) (3,): (2,) near/far along ``camera``'s rays and the (4,)
    x0, y0, x1, y1 rectangle it projects to."""
    from handcli.camera import box_2d, box_near_far, camera_center

    return (box_near_far(box_min, box_max, camera_center(camera.world_to_cam)),
            box_2d(box_min, box_max, camera.world_to_cam, camera.K, camera.width, camera.height))


def choose_mesh_source(root: Path, mano_dir: str | None, mesh_from: str) -> MeshSource:
    """Which model drives the meshes, and whether the dataset's MANO parameters apply to it.

    Dataset MANO parameters only make sense for the real MANO model; for a synthetic dataset made by
    ``handcli synth`` (``handcli_synth.json``) they are the open hand model's own parameters.
    """
    synth = root / "handcli_synth.json"
    synth_open = False
    if synth.is_file():
        try:
            synth_open = json.loads(synth.read_text()).get("mano_model") == "open-hand/1"
        except json.JSONDecodeError:
            raise InputError("malformed JSON", path=synth) from None
    if mano_dir is not None:
        kind = "mano"
        mode = "params" if mesh_from in ("auto", "params") else "joints"
    else:
        kind = "open-hand/1"
        if mesh_from == "auto":
            mode = "params" if synth_open else "joints"
        else:
            mode = mesh_from
    return MeshSource(mode, mano_dir, kind)


def log_mesh_source(mesh: MeshSource) -> None:
    """Warn when the meshes (and the masks rendered from them) come from fitting the open hand model."""
    if mesh.kind != "mano" and mesh.mode == "joints":
        log("[yellow]no MANO files given: fitting the open hand model to the 3D joints (approximate hand "
            "meshes and masks; pass --mano-dir for the real model)[/yellow]")


_HAND_MODELS: dict = {}


def hand_models(flags: str, model_dir: str | None) -> dict:
    """Both hand models (side -> model) with the MANO flags of dataset ``flags``, cached per process."""
    key = (flags, model_dir)
    if key not in _HAND_MODELS:
        from handcli.hand.model import load_hand_models

        _HAND_MODELS[key] = load_hand_models(flags, model_dir)
    return _HAND_MODELS[key]


def model_params(m, pose, shape, trans) -> dict:
    """A posed model's parameters as the cache stores them, the pose made absolute (the model's mean pose
    added where it applies): pose (1, 48), shape (1, 10), trans (1, 3) tensors -> (48,), (10,), (3,) float64."""
    return {"pose": (pose + m.pose_mean)[0].detach().double().numpy(),
            "shape": shape[0].detach().double().numpy(), "trans": trans[0].detach().double().numpy()}


def hand_model_attrs(models: dict, mesh: MeshSource) -> dict:
    """The cache's ``hand_model/{side}`` entries of the hand models (side -> model) that posed its meshes."""
    from handcli.hand.export import model_to_dict

    return {side: {"faces": m.faces, "weights": m.lbs_weights.numpy(), "parents": m.parents.numpy(),
                   "mano": model_to_dict(m), "kind": mesh.kind, "flat_hand_mean": bool(m.flat_hand_mean),
                   "mesh_source": "mano-params" if mesh.mode == "params" else "fit-to-joints",
                   "shapedirs_fixed": bool(getattr(m, "shapedirs_fixed", False)), "model_path": str(m.source or "")}
            for side, m in models.items()}


def write_cache(out, items: list[Any], process: Callable[[Any], FrameResult], *, root, force: bool, workers: int,
                description: str, **writer_args) -> dict:
    """Process ``items`` into a new cache at ``out``, written atomically (``CacheWriter(tmp, **writer_args)``).

    ``root``: the dataset root (an input the output may not overwrite; named when no frame is kept).
    Returns `run_pipeline`'s counts plus ``selected_frames``.
    """
    from handcli.outputs import atomic_path

    with atomic_path(out, force=force, inputs=[root]) as tmp:
        writer = CacheWriter(tmp, **writer_args)
        try:
            stats = run_pipeline(items, process, writer, workers=workers, description=description)
        finally:
            writer.close()
        check_not_empty(stats, root)
    stats["selected_frames"] = len(items)
    return stats


def check_options(scale: float, mesh_from: str, every: int = 1) -> None:
    """Validate the options every dataset's preprocess takes (InputError naming the option)."""
    if not 0.0 < scale <= 1.0:
        raise InputError(f"scale must be in (0, 1], got {scale}", field="scale")
    if mesh_from not in MESH_FROM:
        raise InputError(f"mesh_from must be {', '.join(MESH_FROM)}, got {mesh_from!r}", field="mesh-from")
    if every < 1:
        raise InputError(f"every must be at least 1, got {every}", field="every")


def shard_items(items: Sequence[Any], shard: tuple[int, int]) -> list[Any]:
    """Contiguous block ``i`` of ``N``: merging shards 0..N-1 in order gives the unsharded order."""
    i, n = shard
    total = len(items)
    return list(items[i * total // n:(i + 1) * total // n])


def check_not_empty(stats: dict, root) -> None:
    """``InputError`` when a preprocess run kept no frame (an empty cache is never written)."""
    if stats["frames"] == 0:
        why = {**stats["dropped_frames"], **{f"views: {k}": v for k, v in stats["dropped_views"].items()}}
        raise InputError("no frame kept, nothing to write (dropped: "
                         f"{', '.join(f'{v} {k}' for k, v in why.items()) or 'none selected'})", path=root,
                         field="frames")


def _init_worker(parent: int) -> None:
    from handcli.interrupts import die_with_parent

    die_with_parent(parent)  # first: a parent killed during the imports below is noticed at once

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def run_pipeline(items: list[Any], process: Callable[[Any], FrameResult], writer: CacheWriter, workers: int = 1,
                 description: str = "preprocess") -> dict:
    """Process ``items`` (in parallel when workers > 1) and append results to ``writer`` in order.

    Returns counts: frames written, views written, dropped frames and views by reason, and
    images/s (views decoded per second of wall time).
    """
    stats = {"frames": 0, "views": 0, "dropped_frames": {}, "dropped_views": {}, "seconds": 0.0}
    t0 = time.perf_counter()
    decoded = 0
    first: list[float] = []  # (time, images) when the first frame arrived: excludes worker start-up

    def consume(res: FrameResult) -> None:
        nonlocal decoded
        decoded += len(res.views) + sum(res.dropped_views.values())
        if not first:
            first.extend([time.perf_counter(), decoded])
        for k, v in res.dropped_views.items():
            stats["dropped_views"][k] = stats["dropped_views"].get(k, 0) + v
        if res.record is None:
            reason = res.drop_reason or "dropped"
            stats["dropped_frames"][reason] = stats["dropped_frames"].get(reason, 0) + 1
            return
        views = []
        for cam, view in res.views:
            view.camera = writer.add_camera(cam.name, cam.capture, cam.K, cam.world_to_cam, cam.width, cam.height)
            views.append(view)
        writer.add_frame(res.record, views)
        stats["frames"] += 1
        stats["views"] += len(views)

    stop = "interrupted; no cache written"
    with graceful_signals() as sig, progress() as bar:
        task = bar.add_task(description, total=len(items))
        if workers <= 1:
            for item in items:
                consume(process(item))
                bar.advance(task)
                raise_if_signalled(sig, stop)
            raise_if_signalled(sig, stop)
        else:
            # one thread per worker process: the workers already use every core
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(var, "1")
            ctx = mp.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(os.getpid(),))
            try:
                pending: deque = deque()
                it = iter(items)
                for item in it:
                    pending.append(pool.submit(process, item))
                    if len(pending) >= 2 * workers:
                        consume(pending.popleft().result())
                        bar.advance(task)
                        raise_if_signalled(sig, stop)
                while pending:
                    consume(pending.popleft().result())
                    bar.advance(task)
                    raise_if_signalled(sig, stop)
            finally:  # on an error or a signal: drop queued frames, wait only for the running ones
                pool.shutdown(wait=True, cancel_futures=True)
            raise_if_signalled(sig, stop)
    t1 = time.perf_counter()
    stats["seconds"] = t1 - t0
    stats["images"] = decoded
    stats["images_per_s"] = decoded / max(stats["seconds"], 1e-9)
    if first and decoded > first[1]:
        stats["steady_images_per_s"] = (decoded - first[1]) / max(t1 - first[0], 1e-9)
    return stats
