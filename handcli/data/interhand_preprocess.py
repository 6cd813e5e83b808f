"""``handcli preprocess interhand``: InterHand2.6M root -> HDF5 cache.

Per frame: posed hand meshes (MANO parameters as-is, or the hand model fitted to the 3D
joints when only the open hand model is available for real data); per view: the JPEG
decoded and optionally downscaled, a foreground label map rendered from the posed meshes
(InterHand has no masks; the nearer hand wins), near/far bounds of the padded mesh box
along the camera's rays, and the box's projected 2D rectangle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handcli.camera import transform
from handcli.checks import BadImageError, read_image_file
from handcli.data.cache import FrameRecord, HandRecord, ViewRecord
from handcli.data.interhand import IHCamera, IHFrame, InterHandReader
from handcli.data.pipeline import (
    BAD_IMAGE,
    CameraSpec,
    FrameResult,
    MeshSource,
    box_bounds,
    check_options,
    choose_mesh_source,
    downscale_image,
    hand_model_attrs,
    hand_models,
    log_mesh_source,
    model_params,
    shard_items,
    write_cache,
)
from handcli.data.selection import parse_names, parse_selection, parse_shard
from handcli.errors import InputError
from handcli.labels import LABELS
from handcli.progress import log

BOX_PADDING = 0.05  # metres, as HandNeRF (Guo) pads the posed-mesh AABB
BLACK_LEVEL = 10  # an image whose brightest pixel is below this is a failed (all-black) capture


@dataclass
class WorkItem:
    frame: IHFrame
    cameras: dict[str, IHCamera]
    scale: float
    mesh: MeshSource
    fitted: dict | None = None  # side -> {pose, shape, trans} tensors from prefit_joints (mesh.mode "joints")
    skip_bad_images: bool = False
    refine_masks: int = 0  # band (pixels of the cache image) in which mask_refine.refine_labels may move the edge


def prefit_joints(items: list[WorkItem]) -> None:
    """Fit the hand model to the joints of every item's hands at once (``hand.fit.fit_sequence`` batched,
    without warm start: each frame gets exactly its single-frame fit, whose vertex error the warm start
    raised by ~3 % in bench/bench_fit.py) and keep the result in ``item.fitted`` for the workers."""
    import time

    import torch

    from handcli.hand.fit import fit_sequence

    if not items:
        return
    models = hand_models("interhand", items[0].mesh.model_dir)
    for side in ("right", "left"):
        idx = [i for i, it in enumerate(items) if side in it.frame.sides and it.frame.joint_valid[side].sum() >= 6]
        if not idx:
            continue
        t = time.perf_counter()
        fr = [items[i].frame for i in idx]
        joints = torch.as_tensor(np.stack([f.joints[side] for f in fr]), dtype=torch.float32)
        valid = torch.as_tensor(np.stack([f.joint_valid[side] for f in fr]))
        seq = [(f.capture, f.seq) for f in fr]
        starts = np.array([k == 0 or seq[k] != seq[k - 1] for k in range(len(fr))])
        pose, shape, trans, err = fit_sequence(models[side], joints, valid, starts, segment=1)
        for k, i in enumerate(idx):
            items[i].fitted = items[i].fitted or {}
            # clones: a slice would pickle the whole (T, ...) storage into every worker's item
            items[i].fitted[side] = {"pose": pose[k:k + 1].clone(), "shape": shape[k:k + 1].clone(),
                                     "trans": trans[k:k + 1].clone()}
        dt = time.perf_counter() - t
        log(f"fitted the {side} hand model to {len(idx)} frames' joints in {dt:.1f} s ({len(idx) / dt:.1f} "
            f"frames/s, mean joint error {float(err.mean()) * 1000:.2f} mm)")


def pose_hands(frame: IHFrame, mesh: MeshSource,
               fitted: dict | None = None) -> dict[str, tuple[np.ndarray, dict]] | str:
    """Per present hand: posed world vertices (V, 3) and the model parameters that produce them
    (absolute pose, betas, trans), or a drop reason. ``fitted``: the result of :func:`prefit_joints`."""
    import torch

    models = hand_models("interhand", mesh.model_dir)
    out = {}
    for side in frame.sides:
        m = models[side]
        if mesh.mode == "params":
            p = frame.mano[side]
            if p is None:
                return "missing MANO parameters"
            pose, shape, trans = (torch.as_tensor(p[k][None], dtype=torch.float32) for k in ("pose", "shape", "trans"))
            with torch.no_grad():
                res = m(pose, shape, trans)
            out[side] = (res.vertices[0].double().numpy(), model_params(m, pose, shape, trans))
        else:
            from handcli.hand.fit import fit_to_joints

            valid = frame.joint_valid[side]
            if valid.sum() < 6:
                return "too few valid joints to fit the hand model"
            if fitted is not None and side in fitted:
                pose, shape, trans = (fitted[side][k] for k in ("pose", "shape", "trans"))
            else:
                pose, shape, trans, _ = fit_to_joints(m, torch.as_tensor(frame.joints[side][None],
                                                                         dtype=torch.float32),
                                                      torch.as_tensor(valid[None]))
            with torch.no_grad():
                out[side] = (m(pose, shape, trans).vertices[0].double().numpy(),
                             model_params(m, pose, shape, trans))
    return out


def process_frame(item: WorkItem) -> FrameResult:
    """Worker: one frame -> its record and views (or a drop reason)."""
    from handcli.render.raster import rasterize_meshes

    frame = item.frame
    verts = pose_hands(frame, item.mesh, item.fitted)
    if isinstance(verts, str):
        return FrameResult(None, drop_reason=verts)
    if not verts:
        return FrameResult(None, drop_reason="no valid hand")
    hands = {}
    params = {s: p for s, (_, p) in verts.items()}
    verts = {s: v for s, (v, _) in verts.items()}
    for side, v in verts.items():
        hands[side] = HandRecord(frame.joints[side].astype(np.float32), frame.joint_valid[side], frame.mano[side],
                                 v.astype(np.float32), np.stack([v.min(0), v.max(0)]).astype(np.float32),
                                 params[side])
    all_v = np.concatenate(list(verts.values()))
    bmin, bmax = all_v.min(0) - BOX_PADDING, all_v.max(0) + BOX_PADDING
    record = FrameRecord(frame.key, frame.split, frame.capture, frame.seq, frame.frame_idx, hands)
    res = FrameResult(record)
    sides = list(verts)
    faces = {s: hand_models("interhand", item.mesh.model_dir)[s].faces for s in sides}
    for view in frame.views:
        try:
            img = read_image_file(view.path)
        except BadImageError:
            if not item.skip_bad_images:
                raise
            res.dropped_views[BAD_IMAGE] = res.dropped_views.get(BAD_IMAGE, 0) + 1
            continue
        if img.shape[:2] != (view.height, view.width):
            raise InputError(f"image is {img.shape[1]}x{img.shape[0]} but data.json says "
                             f"{view.width}x{view.height}", path=view.path)
        if int(img.max()) < BLACK_LEVEL:
            res.dropped_views["all-black image"] = res.dropped_views.get("all-black image", 0) + 1
            continue
        cam = item.cameras[view.cam_id]
        img, K = downscale_image(img, cam.K, item.scale)
        H, W = img.shape[:2]
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        meshes = [(transform(cam.world_to_cam, verts[s]), faces[s]) for s in sides]
        ras = rasterize_meshes(meshes, K, H, W)
        label = np.zeros((H, W), np.uint8)
        for i, s in enumerate(sides):
            label[ras.mesh_id == i] = LABELS[s]
        if item.refine_masks:
            from handcli.data.mask_refine import refine_labels

            label = refine_labels(rgb, label, item.refine_masks)
        spec = CameraSpec(cam.cam_id, cam.capture, K, cam.world_to_cam, W, H)
        res.views.append((spec, ViewRecord(-1, rgb, label, *box_bounds(bmin, bmax, spec))))
    if not res.views:
        return FrameResult(None, dropped_views=res.dropped_views,
                           drop_reason="all-black frame" if res.dropped_views else "no views")
    return res


def preprocess_interhand(root: str | Path, out: str | Path, *, split: str = "train", captures: str | None = None,
                         seqs: str | None = None, cameras: str | None = None, frames: str | None = None,
                         scale: float = 1.0, keep_mono: bool = False, workers: int = 1, shard: str | None = None,
                         mano_dir: str | None = None, mesh_from: str = "auto", force: bool = False,
                         skip_bad_images: bool = False, refine_masks: int = 0, command: str = "") -> dict:
    """Read an InterHand2.6M root and write the cache at ``out`` atomically. Returns run statistics.

    ``command``: the command line recorded in the cache (formed by the command layer). ``refine_masks``: a band
    in pixels of the cache images (after ``scale``) in which the hand labels rendered from the annotated
    meshes are refined against the image (``mask_refine.refine_labels``; 0: the rendered labels as they are).

    A truncated or undecodable image is an ``InputError``; with ``skip_bad_images`` its view is dropped
    and counted (``dropped_views["bad image"]``). A selection that keeps no frame is an ``InputError``."""
    root = Path(root)
    check_options(scale, mesh_from)
    if isinstance(refine_masks, bool) or not isinstance(refine_masks, int) or refine_masks < 0:
        raise InputError(f"refine_masks must be a band of >= 0 pixels, got {refine_masks!r}", field="refine_masks")
    shard_ij = parse_shard(shard)
    reader = InterHandReader(root, split)
    sel = {
        "captures": parse_selection(captures),
        "seqs": parse_names(seqs),
        "cameras": {c.removeprefix("cam") for c in parse_names(cameras)} if cameras else None,
        "frames": parse_selection(frames),
    }
    selected = reader.select(sel["captures"], sel["seqs"], sel["cameras"], sel["frames"], keep_mono)
    if not selected:
        raise InputError("no frames match the selection", path=reader.files["data"])
    # joints, MANO and cameras are read for this shard's frames only
    shard_frames = reader.load(shard_items(selected, shard_ij))
    mesh = choose_mesh_source(root, mano_dir, mesh_from)
    log_mesh_source(mesh)
    items = []
    for fr in shard_frames:
        cams = {v.cam_id: reader.camera(fr.capture, v.cam_id, v.width, v.height) for v in fr.views}
        items.append(WorkItem(fr, cams, scale, mesh, skip_bad_images=skip_bad_images, refine_masks=refine_masks))
    if mesh.mode == "joints":
        prefit_joints(items)
    config = {"dataset": "interhand2.6m", "split": split, "selection": {k: (sorted(v) if v else None)
                                                                       for k, v in sel.items()},
              "scale": scale, "keep_mono": keep_mono, "box_padding": BOX_PADDING, "shard": f"{shard_ij[0]}/"
              f"{shard_ij[1]}", "mesh": asdict(mesh), "refine_masks": refine_masks}
    inputs = {"root": str(root.resolve()), "files": {k: str(v) for k, v in reader.files.items()}}
    return write_cache(out, items, process_frame, root=root, force=force, workers=workers,
                       description="preprocess interhand", dataset="interhand2.6m", scale=scale, config=config,
                       inputs=inputs, hand_models=hand_model_attrs(hand_models("interhand", mesh.model_dir), mesh),
                       command=command)
