"""``handcli preprocess dexycb|ho3d``: hand-object datasets -> HDF5 cache with objects and semantic labels.

Shared by both datasets (the per-dataset parts only read files and move annotations to the world):

- the hand: the dataset's MANO parameters drive the real MANO model (``--mano-dir``) or, for a dataset made
  by ``handcli synth``, the open hand model whose own parameters they are; otherwise the open model is
  fitted to the dataset's 3D joints (as for InterHand2.6M);
- the object: the grasped YCB model (``models/{name}``), stored once per name, posed per frame;
- per view: the image (optionally downscaled), labels from the dataset's segmentation (0 background,
  1 right hand, 2 left hand, 3 the grasped object; rasterized from the posed meshes only where a
  segmentation file is missing), optional depth, and near/far and the 2D box of the AABB of the hand
  mesh and the posed object padded by 0.03 m (HandNeRF, Choi).

World frames: DexYCB uses the calibration's world (camera->world extrinsics); HO-3D uses a multi-camera
base's reference frame (``trans_i``, after converting OpenGL to OpenCV) or, for a single-camera
sequence, that camera's OpenCV frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from handcli.camera import transform
from handcli.checks import BadImageError, check_size, read_image_file
from handcli.data.cache import FrameRecord, HandRecord, ObjectRecord, ViewRecord
from handcli.data.objects import YCB_CLASSES, YCB_IDS, aabb, apply_pose, load_object_mesh
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

BOX_PADDING = 0.03  # metres, HandNeRF (Choi) pads AABB(hand mesh + object points)
C4 = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL <-> OpenCV camera axes

# ------------------------------------------------------------------------------------------------- MANO
def move_mano(pose: np.ndarray, trans: np.ndarray, J0: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MANO parameters after the rigid map ``X -> R X + t`` (M = (4, 4) [R | t]) of their output.

    pose (48,) (only the global orient changes), trans (3,), J0 (3,) the shaped model's root joint (the
    pivot of the global rotation). Exact: ``root' = R root``, ``trans' = R (J0 + trans) + t - J0``
    (docs/formats.md#ho3d-conventions for R = diag(1, -1, -1), t = 0).
    """
    from scipy.spatial.transform import Rotation

    R, t = M[:3, :3], M[:3, 3]
    out = np.array(pose, dtype=np.float64, copy=True)
    out[:3] = Rotation.from_matrix(R @ Rotation.from_rotvec(out[:3]).as_matrix()).as_rotvec()
    return out, R @ (J0 + np.asarray(trans, np.float64)) + t - J0


def root_joint(model, betas: np.ndarray) -> np.ndarray:
    """(3,) the model's shaped root joint J0(betas)."""
    import torch

    with torch.no_grad():
        return model.rest_joints(torch.as_tensor(np.asarray(betas)[None], dtype=torch.float32))[0, 0].double().numpy()


# ------------------------------------------------------------------------------------------------- samples
@dataclass
class HOHand:
    """A frame's hand in the world: joints, and (params mode) model parameters in the model's convention."""

    side: str
    joints: np.ndarray  # (21, 3) world metres
    joint_valid: np.ndarray  # (21,) bool
    record: dict | None  # the dataset's own MANO record (see docs/datasets-ho.md)
    params: dict | None = None  # {pose (48,), shape (10,), trans (3,)} world, the model's pose convention


@dataclass
class HOViewData:
    camera: CameraSpec  # native resolution
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray | None  # (H, W) uint8 handcli labels from the dataset's segmentation; None: rasterize
    depth: np.ndarray | None = None  # (H, W) metres
    hand_estimate: dict | None = None  # estimated input hand {vertices (V, 3), joints (21, 3)} world (hand_estimates)


@dataclass
class HOSample:
    key: str
    split: str
    capture: int
    seq: str
    frame_idx: int
    hand: HOHand
    object_name: str
    object_pose: np.ndarray  # (4, 4) object->world
    views: list[HOViewData] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    dataset: str  # "dexycb" or "ho3d" (DATASET_MANO_FLAGS key)
    mesh: MeshSource
    models_root: str
    scale: float
    depth: bool
    skip_bad_images: bool = False  # drop a frame whose image is truncated or undecodable (counted) instead of failing
    hand_estimates: str | None = None  # folder of per-view estimated input hands (handcli.data.hand_estimates)
    root: str = ""  # the dataset root (estimate paths mirror the image paths under it)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a missing file is an InputError naming it, a truncated or undecodable one a
    ``BadImageError``."""
    return np.ascontiguousarray(read_image_file(path)[:, :, ::-1])


def downscale_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Majority label per output pixel: each class's coverage by area resampling, then argmax."""
    classes = np.unique(labels)
    cover = np.stack([cv2.resize((labels == c).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
                      for c in classes])
    return classes[cover.argmax(0)].astype(np.uint8)


def pose_hand(hand: HOHand, opts: Options) -> tuple[np.ndarray, dict]:
    """Posed world vertices (V, 3) and the absolute model parameters that produce them."""
    import torch

    m = hand_models(opts.dataset, opts.mesh.model_dir)[hand.side]
    if opts.mesh.mode == "params":
        p = hand.params
        pose, shape, trans = (torch.as_tensor(np.asarray(p[k])[None], dtype=torch.float32)
                              for k in ("pose", "shape", "trans"))
    else:
        from handcli.hand.fit import fit_to_joints

        pose, shape, trans, _ = fit_to_joints(m, torch.as_tensor(hand.joints[None], dtype=torch.float32),
                                              torch.as_tensor(hand.joint_valid[None]))
    with torch.no_grad():
        verts = m(pose, shape, trans).vertices[0].double().numpy()
    return verts, model_params(m, pose, shape, trans)


def finish_frame(sample: HOSample | str, opts: Options) -> FrameResult:
    """Pose the hand and the object, build labels, bounds and the cache records of one frame (``sample``: a
    dataset's sample of it, or the reason the dataset's reader dropped it)."""
    from handcli.render.raster import rasterize_meshes

    if isinstance(sample, str):
        return FrameResult(None, drop_reason=sample)
    hand = sample.hand
    if hand.joint_valid.sum() < 6 and opts.mesh.mode == "joints":
        return FrameResult(None, drop_reason="too few valid joints to fit the hand model")
    verts, params = pose_hand(hand, opts)
    model = hand_models(opts.dataset, opts.mesh.model_dir)[hand.side]
    hrec = HandRecord(hand.joints.astype(np.float32), hand.joint_valid, hand.record, verts.astype(np.float32),
                      aabb(verts).astype(np.float32), params)
    obj = load_object_mesh(opts.models_root, sample.object_name)
    obj_verts = apply_pose(sample.object_pose, obj.vertices)
    obj_all = np.concatenate([obj_verts, apply_pose(sample.object_pose, obj.points)])
    orec = ObjectRecord(sample.object_name, sample.object_pose, aabb(obj_all).astype(np.float32))
    both = np.concatenate([verts, obj_all])
    bmin, bmax = both.min(0) - BOX_PADDING, both.max(0) + BOX_PADDING
    record = FrameRecord(sample.key, sample.split, sample.capture, sample.seq, sample.frame_idx,
                         {hand.side: hrec}, orec)
    res = FrameResult(record)
    for vd in sample.views:
        cam = vd.camera
        img, K = downscale_image(vd.rgb, cam.K, opts.scale)
        H, W = img.shape[:2]
        labels, depth = vd.labels, vd.depth
        if opts.scale != 1.0:
            if labels is not None:
                labels = downscale_labels(labels, W, H)
            if depth is not None:
                depth = cv2.resize(depth, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
        source = "seg"
        if labels is None:
            meshes = [(transform(cam.world_to_cam, verts), model.faces)]
            if len(obj.faces):
                meshes.append((transform(cam.world_to_cam, obj_verts), obj.faces))
            ras = rasterize_meshes(meshes, K, H, W)
            labels = np.zeros((H, W), np.uint8)
            labels[ras.mesh_id == 0] = LABELS[hand.side]
            labels[ras.mesh_id == 1] = LABELS["object"]
            source = "rasterized"
        spec = CameraSpec(cam.name, cam.capture, K, cam.world_to_cam, W, H)
        nf, box = box_bounds(bmin, bmax, spec)
        view = ViewRecord(-1, img, labels, nf, box, depth if opts.depth else None, source, vd.hand_estimate)
        if opts.depth and view.depth is None:
            view.depth = np.zeros((H, W), np.float32)
        res.views.append((spec, view))
    return res


def _object_loader(models_root: str):
    def load(name: str):
        m = load_object_mesh(models_root, name)
        return m.vertices, m.faces, m.points

    return load


def _run_options(dataset: str, root: Path, models_root: str, *, scale: float, depth: bool, skip_bad_images: bool,
                 hand_estimates: str | Path | None, mano_dir: str | None, mesh_from: str) -> Options:
    """A run's per-frame options: its mesh source (logged when approximate) and its checked estimates folder."""
    mesh = choose_mesh_source(root, mano_dir, mesh_from)
    log_mesh_source(mesh)
    return Options(dataset, mesh, models_root, scale, depth, skip_bad_images, _check_estimates(hand_estimates),
                   str(root))


def _write(items: list, process, out, opts: Options, *, split: str | None, selection: dict, shard: tuple[int, int],
           captures: dict, labels: str, mano_record: str, inputs: dict, workers: int, force: bool,
           command: str) -> dict:
    """Write the cache of ``items``; ``config.json``'s dataset-specific entries (``selection``, ``captures``
    {capture name: index}, ``labels`` and ``mano_record`` descriptions) join the ones every run has."""
    config = {"dataset": opts.dataset, "mano_flags": opts.dataset, "split": split, "selection": selection,
              "scale": opts.scale, "depth": opts.depth, "box_padding": BOX_PADDING, "shard": f"{shard[0]}/{shard[1]}",
              "mesh": asdict(opts.mesh), "captures": captures, "labels": labels, "mano_record": mano_record,
              "hand_estimates": opts.hand_estimates}
    return write_cache(out, items, process, root=inputs.get("root"), force=force, workers=workers,
                       description=f"preprocess {opts.dataset}", dataset=opts.dataset, scale=opts.scale,
                       config=config, inputs=inputs,
                       hand_models=hand_model_attrs(hand_models(opts.dataset, opts.mesh.model_dir), opts.mesh),
                       command=command, objects=True, depth=opts.depth,
                       object_loader=_object_loader(opts.models_root), hand_estimates=opts.hand_estimates is not None)


def parse_objects(spec: str | None) -> set[str] | None:
    """``"1,2,10"`` (DexYCB/YCB ids) or names (``003_cracker_box``) -> a set of YCB names."""
    if not spec:
        return None
    out = set()
    for part in parse_names(spec):
        if part.isdigit():
            if int(part) not in YCB_CLASSES:
                raise InputError(f"unknown YCB id {part}; expected 1-21", field="objects")
            out.add(YCB_CLASSES[int(part)])
        elif part in YCB_IDS:
            out.add(part)
        else:
            raise InputError(f"unknown object {part!r}; use YCB ids 1-21 or names like 003_cracker_box",
                             field="objects")
    return out


def _estimate(opts: Options, side: str, path: Path, fmt, cam_to_world: np.ndarray) -> dict | None:
    """A view's estimated input hand in the world (``--hand-estimates``), or None without that option."""
    if not opts.hand_estimates:
        return None
    from handcli.data.hand_estimates import read_estimate

    V = int(hand_models(opts.dataset, opts.mesh.model_dir)[side].lbs_weights.shape[0])
    return read_estimate(path, fmt, V, cam_to_world)


def _check_estimates(hand_estimates: str | Path | None) -> str | None:
    if hand_estimates is None:
        return None
    if not Path(hand_estimates).is_dir():
        raise InputError("folder of estimated hands not found", path=hand_estimates, field="hand-estimates")
    return str(Path(hand_estimates).resolve())


# ================================================================================================= DexYCB
@dataclass
class DexItem:
    frame: object  # handcli.data.dexycb.DexFrame
    cameras: dict  # serial -> DexCamera
    capture: int
    opts: Options


def dexycb_sample(item: DexItem) -> HOSample | str:
    """Read one DexYCB frame (labels of every view, images) and move its annotation to the world."""
    from handcli.data.dexycb import HEIGHT, WIDTH, has_hand, read_depth_png, read_label, seg_to_labels

    fr, opts = item.frame, item.opts
    seq = fr.seq
    ref_view = fr.views[0]
    ref = read_label(ref_view.label, len(seq.ycb_ids))
    if not has_hand(ref):
        return "no hand annotation (pose_m all zeros)"
    obj_cam = ref["pose_y"][seq.ycb_grasp_ind]
    if not np.any(obj_cam != 0.0):
        return "no pose for the grasped object (pose_y all zeros)"
    c2w = item.cameras[ref_view.serial].cam_to_world
    from handcli.data.objects import pose_from_3x4

    obj_pose = c2w @ pose_from_3x4(obj_cam)
    j_cam = ref["joint_3d"][0]
    valid = ~np.all(j_cam == -1.0, axis=1)
    joints = transform(c2w, j_cam)
    pm = ref["pose_m"][0]
    record = {"pose": pm[:48].copy(), "shape": seq.betas.copy(), "trans": pm[48:51].copy()}
    hand = HOHand(seq.mano_side, joints, valid, record)
    if opts.mesh.mode == "params":
        import torch

        m = hand_models(opts.dataset, opts.mesh.model_dir)[seq.mano_side]
        pose = m.expand_pca_pose(torch.as_tensor(pm[None, :48], dtype=torch.float32))[0].double().numpy()
        pose_w, trans_w = move_mano(pose, pm[48:51], root_joint(m, seq.betas), c2w)
        hand.params = {"pose": pose_w, "shape": seq.betas, "trans": trans_w}
    sample = HOSample(fr.key, seq.split, item.capture, seq.key, fr.frame, hand, seq.grasp_name, obj_pose)
    for k, v in enumerate(fr.views):
        lab = ref if k == 0 else read_label(v.label, len(seq.ycb_ids))
        try:
            rgb = read_image(v.color)
        except BadImageError:
            if not item.opts.skip_bad_images:
                raise
            return BAD_IMAGE
        if rgb.shape[:2] != (HEIGHT, WIDTH):
            raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]}, expected {WIDTH}x{HEIGHT} (the "
                             "intrinsics are for 640x480)", path=v.color)
        if lab["seg"].shape != rgb.shape[:2]:
            raise InputError(f"seg is {lab['seg'].shape}, image is {rgb.shape[:2]}", path=v.label, field="seg")
        cam = item.cameras[v.serial]
        spec = CameraSpec(v.serial, item.capture, cam.K, cam.world_to_cam, WIDTH, HEIGHT)
        depth = read_depth_png(v.depth) if opts.depth else None
        if depth is not None:
            check_size(depth, HEIGHT, WIDTH, v.depth, "depth image")
        est = None
        if opts.hand_estimates:
            from handcli.data.hand_estimates import DEXYCB, dexycb_estimate_path

            est = _estimate(opts, seq.mano_side, dexycb_estimate_path(Path(opts.hand_estimates), Path(opts.root),
                                                                      v.color, fr.frame), DEXYCB, cam.cam_to_world)
        sample.views.append(HOViewData(spec, rgb, seg_to_labels(lab["seg"], seq.grasp_id, seq.mano_side), depth,
                                       est))
    return sample


def process_dexycb(item: DexItem) -> FrameResult:
    return finish_frame(dexycb_sample(item), item.opts)


def preprocess_dexycb(root: str | Path, out: str | Path, *, split: str | None = None, seqs: str | None = None,
                      cameras: str | None = None, frames: str | None = None, every: int = 1,
                      objects: str | None = None, scale: float = 1.0, depth: bool = False, workers: int = 1,
                      shard: str | None = None, mano_dir: str | None = None, mesh_from: str = "auto",
                      force: bool = False, skip_bad_images: bool = False, hand_estimates: str | Path | None = None,
                      command: str = "") -> dict:
    """Read a DexYCB root and write the cache at ``out`` atomically. Returns run statistics.

    ``skip_bad_images``: drop frames with a truncated or undecodable image (counted as "bad image").
    ``hand_estimates``: a folder of per-view estimated input hands (``handcli.data.hand_estimates``), stored
    as ``views/hand_estimate``; every selected view of an annotated frame needs one (with HO-3D: every
    selected view with a hand annotation).
    ``command``: the command line recorded in the cache."""
    from handcli.data.dexycb import DexYCBReader

    root = Path(root)
    check_options(scale, mesh_from, every)
    shard_ij = parse_shard(shard)
    reader = DexYCBReader(root)
    obj_names = parse_objects(objects)
    obj_ids = {YCB_IDS[n] for n in obj_names} if obj_names else None
    cam_sel = [c for c in parse_names(cameras)] if cameras else None
    all_frames = reader.frames(split, parse_names(seqs), cam_sel, parse_selection(frames), every, obj_ids)
    if not all_frames:
        raise InputError("no frames match the selection", path=root)
    ext_ids = sorted({fr.seq.extrinsics for fr in all_frames})
    opts = _run_options("dexycb", root, str(reader.models), scale=scale, depth=depth, skip_bad_images=skip_bad_images,
                        hand_estimates=hand_estimates, mano_dir=mano_dir, mesh_from=mesh_from)
    items = []
    for fr in shard_items(all_frames, shard_ij):
        cams = {v.serial: reader.camera(v.serial, fr.seq.extrinsics) for v in fr.views}
        items.append(DexItem(fr, cams, ext_ids.index(fr.seq.extrinsics), opts))
    selection = {"seqs": sorted(parse_names(seqs)) if seqs else None, "cameras": cam_sel,
                 "frames": sorted(parse_selection(frames)) if frames else None, "every": every,
                 "objects": sorted(obj_names) if obj_names else None}
    inputs = {"root": str(root.resolve()), "models": str(reader.models), "calibration": sorted(reader.files_read)}
    return _write(items, process_dexycb, out, opts, split=split, selection=selection, shard=shard_ij,
                  captures={e: i for i, e in enumerate(ext_ids)},
                  labels="seg: grasped object id -> 3, 255 -> 1 (right) / 2 (left) by mano_sides, other ids -> 0",
                  mano_record="mano_pose = pose_m[:48] (global orient + 45 PCA coefficients, flat_hand_mean=False), "
                              "mano_trans = pose_m[48:51], in the camera frame of the frame's first view",
                  inputs=inputs, workers=workers, force=force, command=command)


# ================================================================================================= HO-3D
@dataclass
class HOItem:
    frame: object  # handcli.data.ho3d.HOFrame
    capture: int
    opts: Options


def ho3d_sample(item: HOItem) -> HOSample | str:
    """Read one HO-3D frame (every camera of its group) and move its annotation to the world."""
    from handcli.data.ho3d import GL_TO_CV, read_depth, read_meta, read_seg, seg_to_labels
    from handcli.data.objects import pose_from_rotvec

    fr, opts = item.frame, item.opts
    metas = [read_meta(v.meta) for v in fr.views]
    ref = next((k for k, m in enumerate(metas) if m.has_hand and m.has_object), None)
    if ref is None:
        if not any(m.has_hand for m in metas):
            return "unannotated (hand fields None)"
        return "no object pose (objRot None)"
    meta, view = metas[ref], fr.views[ref]
    if meta.obj_name is None:
        raise InputError("missing object name", path=meta.path, field="objName")
    c2w = view.camera.cam_to_world
    gl2w = c2w @ C4
    obj_pose = gl2w @ pose_from_rotvec(meta.obj_rot, meta.obj_trans)
    joints = transform(c2w, meta.joints_gl @ GL_TO_CV.T)
    record = {"pose": meta.hand_pose.copy(), "shape": meta.betas.copy(), "trans": meta.trans.copy()}
    hand = HOHand("right", joints, np.ones(21, bool), record)
    if opts.mesh.mode == "params":
        m = hand_models(opts.dataset, opts.mesh.model_dir)["right"]
        pose_w, trans_w = move_mano(meta.hand_pose, meta.trans, root_joint(m, meta.betas), gl2w)
        hand.params = {"pose": pose_w, "shape": meta.betas, "trans": trans_w}
    sample = HOSample(fr.key, fr.split, item.capture, fr.group, fr.frame, hand, meta.obj_name, obj_pose)
    for v, m in zip(fr.views, metas):
        try:
            rgb = read_image(v.rgb)
        except BadImageError:
            if not opts.skip_bad_images:
                raise
            return BAD_IMAGE
        H, W = rgb.shape[:2]
        K = v.camera.K
        if K is None:  # single-camera sequence: the frame's own camMat
            if m.K is None:
                raise InputError("missing camera matrix", path=m.path, field="camMat")
            K = m.K
        spec = CameraSpec(v.camera.name, item.capture, K, v.camera.world_to_cam, W, H)
        seg = read_seg(v.seg, H, W)
        labels = seg_to_labels(*seg) if seg is not None else None
        depth = read_depth(v.depth) if opts.depth else None
        if depth is not None:
            check_size(depth, H, W, v.depth, "depth image")
        est = None
        if opts.hand_estimates and m.has_hand:
            from handcli.data.hand_estimates import HO3D, ho3d_estimate_path

            est = _estimate(opts, "right", ho3d_estimate_path(Path(opts.hand_estimates), fr.split, v.seq, fr.frame),
                            HO3D, v.camera.cam_to_world)
        sample.views.append(HOViewData(spec, rgb, labels, depth, est))
    return sample


def process_ho3d(item: HOItem) -> FrameResult:
    return finish_frame(ho3d_sample(item), item.opts)


def preprocess_ho3d(root: str | Path, out: str | Path, *, split: str = "train", seqs: str | None = None,
                    cameras: str | None = None, frames: str | None = None, every: int = 1,
                    objects: str | None = None, listed_only: bool = False, models: str | None = None,
                    scale: float = 1.0, depth: bool = False, workers: int = 1, shard: str | None = None,
                    mano_dir: str | None = None, mesh_from: str = "auto", force: bool = False,
                    skip_bad_images: bool = False, hand_estimates: str | Path | None = None, command: str = "") -> dict:
    """Read a HO-3D v3 root and write the cache at ``out`` atomically. Returns run statistics; the options
    are :func:`preprocess_dexycb`'s (and ``listed_only``: only frames listed in train.txt / evaluation.txt;
    ``models``: the YCB models folder, default ``root/models``)."""
    from handcli.data.ho3d import HO3DReader, read_meta

    root = Path(root)
    check_options(scale, mesh_from, every)
    shard_ij = parse_shard(shard)
    reader = HO3DReader(root, split)
    models_root = Path(models) if models else root / "models"
    if not models_root.is_dir():
        raise InputError("YCB models folder not found (pass --models, e.g. $DEX_YCB_DIR/models)",
                         path=models_root)
    all_frames = reader.frames(parse_names(seqs), parse_names(cameras), parse_selection(frames), every,
                               listed_only)
    obj_names = parse_objects(objects)
    if obj_names is not None:  # the object is fixed per group: read it from the group's first named meta
        keep: dict[str, bool] = {}
        for fr in all_frames:
            if fr.group not in keep:
                name = next((m.obj_name for m in (read_meta(v.meta) for v in fr.views) if m.obj_name), None)
                keep[fr.group] = name in obj_names if name is not None else None
        all_frames = [fr for fr in all_frames if keep.get(fr.group) is not False]
    if not all_frames:
        raise InputError("no frames match the selection", path=reader.split_dir)
    groups = sorted({fr.group for fr in all_frames})
    opts = _run_options("ho3d", root, str(models_root), scale=scale, depth=depth, skip_bad_images=skip_bad_images,
                        hand_estimates=hand_estimates, mano_dir=mano_dir, mesh_from=mesh_from)
    items = [HOItem(fr, groups.index(fr.group), opts) for fr in shard_items(all_frames, shard_ij)]
    selection = {"seqs": sorted(parse_names(seqs)) if seqs else None,
                 "cameras": sorted(parse_names(cameras)) if cameras else None,
                 "frames": sorted(parse_selection(frames)) if frames else None, "every": every,
                 "objects": sorted(obj_names) if obj_names else None, "listed_only": listed_only}
    inputs = {"root": str(root.resolve()), "models": str(models_root.resolve()),
              "calibration": sorted(reader.files_read)}
    return _write(items, process_ho3d, out, opts, split=split, selection=selection, shard=shard_ij,
                  captures={g: i for i, g in enumerate(groups)},
                  labels="seg PNG (nearest-resized to the image): channel 0 == 255 -> 1 (hand, wins overlaps), "
                         "channel 1 == 255 -> 3; rasterized from the posed meshes where the PNG is missing",
                  mano_record="handPose/handBeta/handTrans as stored (OpenGL camera frame of the frame's first "
                              "annotated view, flat_hand_mean=True)",
                  inputs=inputs, workers=workers, force=force, command=command)
