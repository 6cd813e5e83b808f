"""Synthetic HO-3D v3 in the real layout (docs/formats.md#ho3d), rendered from the open hand model grasping
procedural YCB-like objects, with annotations in the **OpenGL** camera convention.

Writes exactly the real layout::

    ROOT/train/{SEQ}/rgb/{id:04d}.jpg          640x480
    ROOT/train/{SEQ}/depth/{id:04d}.png        3-channel encoded depth (R + 256 G) * 0.000125 m
    ROOT/train/{SEQ}/seg/{id:04d}.png          320x240, hand = channel 0 (B) 255, object = channel 1 (G) 255
    ROOT/train/{SEQ}/meta/{id:04d}.pkl         python-2 style pickles (read with encoding='latin1')
    ROOT/train.txt, evaluation.txt             "SEQ/0000" lines of annotated frames
    ROOT/calibration/{BASE}/calibration/cam_orders.txt, trans_{i}.txt, cam_{i}_intrinsics.txt,
                                            cam_{i}_depth_scale.txt

plus YCB models (``ROOT/models/``, where ``--models`` defaults; the real HO-3D takes them from the YCB/DexYCB
download) and ground truth outside the layout::

    ROOT/handcli_gt/train/{group}/{id:04d}.npz      world hand/object meshes, joints, object pose, projected
                                                    joints and object-box corners per camera sequence
    ROOT/handcli_gt/train/{SEQ}/label_{id:04d}.png  full-resolution handcli labels (0, 1 hand, 3 object)
    ROOT/handcli_synth.json
    ROOT/handcli_est/train/{SEQ}/{id:04d}.npz       realistic profile only: a per-view hand estimate (OpenGL)

In the realistic profile (``synth/realism.py``) the meta pickles carry annotation error and ``seg`` is
rendered from the annotated hand; the ground-truth npz keeps the exact parameters and ``hand_model_vertices``
(their mesh) and the rendered surface (``hand_vertices``).

One multi-camera base (``BB1``: cameras ``BB10``.., a banana) whose world is the calibration's reference
frame, and one single-camera sequence (``SMu1``, a mug) whose world is its camera's OpenCV frame. In every
multi-camera sequence frame 2 is unannotated (hand and object fields None, not listed in train.txt).
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.camera import (
    box_corners,
    intrinsics,
    look_at,
    project,
    scale_intrinsics,
    transform,
    world_to_cam_matrix,
)
from handcli.data.dexycb import invert_rigid
from handcli.data.ho3d import DEPTH_SCALE, encode_depth
from handcli.data.ho_preprocess import C4, move_mano, root_joint
from handcli.data.objects import YCB_IDS, aabb
from handcli.hand.skeleton import HO3D_TO_21
from handcli.progress import progress
from handcli.render.raster import rasterize_meshes
from handcli.synth.grasp import grasp_object
from handcli.synth.objects import ScenePart, make_object, render_scene, write_ycb_model
from handcli.synth.realism import (
    RealismConfig,
    annotated_pose,
    camera_response,
    displace,
    estimated_pose,
    sequence_offset,
    stream,
    surface_offsets,
)
from handcli.synth.texture import skin_color, subject_style

WIDTH, HEIGHT = 640, 480
SEG_SIZE = (320, 240)
# objLabel is HO-3D's own class numbering, not DexYCB's ids (readers must map by objName)
OBJ_LABELS = {"011_banana": 3, "025_mug": 8, "003_cracker_box": 1, "005_tomato_soup_can": 2}
UNANNOTATED_ID = 2


@dataclass(frozen=True)
class HO3DSynthConfig:
    """What to generate. Small numbers give a tiny dataset for tests."""

    frames: int = 5
    cameras: int = 5  # cameras of the multi-camera base
    multi: tuple[str, str] = ("BB1", "011_banana")  # (base, object)
    single: tuple[str, str] | None = ("SMu1", "025_mug")  # (sequence, object) or None
    seed: int = 0
    jpeg_quality: int = 95
    mano_model: str = "open-hand/1"
    realism: RealismConfig = field(default_factory=RealismConfig)  # profile (synth/realism.py)


# ------------------------------------------------------------------------------------------------- pickles
def _binstring(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + len(b).to_bytes(4, "little")) + b


def py2_pickle_bytes(d: dict) -> bytes:
    """A protocol-2 pickle of a dict laid out as python 2 writes it: str keys and values are byte strings
    (BINSTRING opcodes) that python 3 only decodes with ``encoding='latin1'`` (or 'bytes'); numpy arrays,
    numbers and None are pickled as usual. Values: str, None, int, float, numpy arrays, lists of str."""
    out = io.BytesIO()
    out.write(b"\x80\x02}(")
    for k, v in d.items():
        out.write(_binstring(k.encode("latin1")))
        if v is None:
            out.write(b"N")
        elif isinstance(v, str):
            out.write(_binstring(v.encode("latin1")))
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out.write(b"](" + b"".join(_binstring(x.encode("latin1")) for x in v) + b"e")
        else:  # a self-contained fragment: its memo puts may overwrite earlier ones, never read them
            frag = pickle.dumps(v, protocol=2)
            out.write(frag[2:-1])
    out.write(b"u.")
    return out.getvalue()


# ------------------------------------------------------------------------------------------------- scene
class _Hand:
    def __init__(self):
        from handcli.hand.model import HandModel

        self.model = HandModel.load("right", None, flat_hand_mean=True)
        self.faces = np.asarray(self.model.faces)
        with torch.no_grad():
            self.rest21 = self.model(torch.zeros(1, 48)).joints[0].double().numpy()
        self.canon = self.model.v_template.numpy().astype(np.float64)
        self.lbs_weights = self.model.lbs_weights.detach().numpy().astype(np.float64)

    @torch.no_grad()
    def pose(self, pose: np.ndarray, betas: np.ndarray, trans: np.ndarray):
        out = self.model(torch.as_tensor(pose[None], dtype=torch.float32),
                         torch.as_tensor(betas[None], dtype=torch.float32),
                         torch.as_tensor(trans[None], dtype=torch.float32))
        return out.vertices[0].double().numpy(), out.joints[0].double().numpy()


def _cam_ring(n: int, rng: np.random.Generator, centre: np.ndarray) -> list[np.ndarray]:
    """(4, 4) camera->scene (OpenCV axes) for n cameras around ``centre``."""
    out = []
    for k in range(n):
        az = 2 * np.pi * k / max(n, 1) + rng.uniform(-0.25, 0.25)
        el = np.deg2rad(rng.uniform(5.0, 40.0))
        r = rng.uniform(0.38, 0.5)
        eye = centre + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        R = look_at(eye, centre + rng.normal(0, 0.01, 3), np.array([0.0, 0.0, 1.0]))
        out.append(invert_rigid(world_to_cam_matrix(R, -R @ eye)))
    return out


def _K(rng: np.random.Generator) -> np.ndarray:
    return intrinsics(614.0 + rng.uniform(-6, 6), 614.0 + rng.uniform(-6, 6), 320.0 + rng.uniform(-8, 8),
                      240.0 + rng.uniform(-6, 6))


def _ho3d_joints(joints21: np.ndarray) -> np.ndarray:
    """handcli order -> HO-3D handJoints3D order (MANO joints + tips)."""
    out = np.zeros_like(joints21)
    out[HO3D_TO_21] = joints21
    return out


def _sdf_grad(sdf, p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    g = np.stack([(sdf(p + eps * e) - sdf(p - eps * e)) / (2 * eps) for e in np.eye(3)], axis=1)
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def write_ho3d(root: str | Path, cfg: HO3DSynthConfig) -> Path:
    """Generate a synthetic HO-3D v3 dataset under ``root`` (absent or an empty folder)."""
    root = Path(root)
    rng = np.random.default_rng(cfg.seed)
    hand = _Hand()
    if not 1 <= cfg.cameras <= 10:
        raise ValueError("cameras must be 1..10")
    groups = [("multi", cfg.multi[0], cfg.multi[1])]
    if cfg.single is not None:
        groups.append(("single", cfg.single[0], cfg.single[1]))
    listed: list[str] = []
    jobs = []
    for gi, (kind, name, obj_name) in enumerate(groups):
        obj = make_object(obj_name)
        write_ycb_model(root / "models", obj, seed=cfg.seed + YCB_IDS[obj_name])
        betas = np.clip(rng.normal(0, 0.5, 10), -1.2, 1.2)
        J0 = root_joint(hand.model, betas)
        g = grasp_object(hand.model, obj.sdf, np.zeros(3), obj.approach, obj.finger_dir, betas)
        centre = np.array([0.0, 0.0, 0.0])
        if kind == "multi":
            cams = _cam_ring(cfg.cameras, rng, centre)
            order = rng.permutation(cfg.cameras).tolist()  # entry i: camera number k of trans_i
            cdir = root / "calibration" / name / "calibration"
            cdir.mkdir(parents=True)
            (cdir / "cam_orders.txt").write_text(" ".join(str(k) for k in order) + "\n")
            Ks = {}
            for i, k in enumerate(order):
                Ks[k] = _K(rng)
                K = Ks[k]
                np.savetxt(cdir / f"trans_{i}.txt", cams[k], fmt="%.10f")
                (cdir / f"cam_{i}_intrinsics.txt").write_text(
                    f"fx:{K[0, 0]:.6f}, fy:{K[1, 1]:.6f}, ppx:{K[0, 2]:.6f}, ppy:{K[1, 2]:.6f}\n")
                (cdir / f"cam_{i}_depth_scale.txt").write_text(f"{1.0 / DEPTH_SCALE:.6f}\n")
            seqs = [(f"{name}{k}", np.loadtxt(cdir / f"trans_{order.index(k)}.txt"), Ks[k])
                    for k in range(cfg.cameras)]
            scene_to_world = np.eye(4)  # the reference frame is the scene frame
        else:
            c2s = _cam_ring(1, rng, centre)[0]
            seqs = [(name, np.eye(4), _K(rng))]
            scene_to_world = invert_rigid(c2s)  # world = the camera's OpenCV frame
        yaw0 = rng.uniform(-np.pi, np.pi)
        real = cfg.realism
        offsets = surface_offsets(hand.canon, hand.lbs_weights, real, stream(cfg.seed, "surface", name))
        mano_off = sequence_offset(real, cfg.seed, name)
        for fid in range(cfg.frames):
            t = fid / max(cfg.frames - 1, 1)
            R = (Rotation.from_euler("z", yaw0 + 1.2 * t) * Rotation.from_euler("x", 0.4 * np.sin(2 * np.pi * t))
                 ).as_matrix()
            T_obj = np.eye(4)
            T_obj[:3, :3] = R
            T_obj[:3, 3] = centre + np.array([0.0, 0.0, 0.02 * np.sin(2 * np.pi * t)])
            obj_world = scene_to_world @ T_obj
            pose_w, trans_w = move_mano(g.pose, g.trans, J0, obj_world)
            verts, joints = hand.pose(pose_w, betas, trans_w)
            ann_pose, ann_trans = annotated_pose(lambda p: hand.pose(p, betas, trans_w)[0], pose_w, trans_w, mano_off,
                                                 real, stream(cfg.seed, "annotation", name, fid))
            ann_verts, ann_joints = hand.pose(ann_pose, betas, ann_trans)
            annotated = not (kind == "multi" and fid == UNANNOTATED_ID and cfg.frames > UNANNOTATED_ID + 1)
            jobs.append(dict(kind=kind, group=name, fid=fid, seqs=seqs, obj=obj, obj_world=obj_world, betas=betas,
                             J0=J0, pose=pose_w, trans=trans_w, verts=verts, joints=joints, annotated=annotated,
                             render_verts=displace(verts, hand.faces, offsets), ann_pose=ann_pose,
                             ann_trans=ann_trans, ann_verts=ann_verts, ann_joints=ann_joints,
                             scene_to_world=scene_to_world, style=subject_style(cfg.seed * 100 + gi),
                             bg_seed=cfg.seed * 7919 + gi * 101 + fid))
            if annotated:
                listed += [f"{s}/{fid:04d}" for s, _, _ in seqs]
    with progress() as bar:
        task = bar.add_task("synth ho3d", total=sum(len(j["seqs"]) for j in jobs))
        for job in jobs:
            _write_frame(root, job, hand, cfg)
            bar.advance(task, len(job["seqs"]))
    (root / "train.txt").write_text("".join(f"{x}\n" for x in sorted(listed)))
    (root / "evaluation.txt").write_text("")
    seqs_all = sorted({s for j in jobs for s, _, _ in j["seqs"]})
    meta = {"schema": "handcli.synth/1", "dataset": "ho3d", "config": asdict(cfg), "mano_model": cfg.mano_model,
            "flat_hand_mean": True, "profile": cfg.realism.profile,
            "camera_response": {s: camera_response(cfg.realism, cfg.seed, s).as_dict() for s in seqs_all}, "note": "annotations in the OpenGL camera frame; ground truth in handcli_gt/"}
    (root / "handcli_synth.json").write_text(json.dumps(meta, indent=1))
    return root


def _write_frame(root: Path, job: dict, hand: _Hand, cfg: HO3DSynthConfig) -> None:
    obj, fid = job["obj"], job["fid"]
    world_to_scene = invert_rigid(job["scene_to_world"])
    obj_world_verts = transform(job["obj_world"], obj.vertices)
    pts = obj.sample_points(2000, seed=cfg.seed + obj.ycb_id)
    obj_box = aabb(np.concatenate([obj_world_verts, transform(job["obj_world"], pts)]))
    obj_corners = box_corners(*obj_box)
    rest_box = aabb(obj.vertices)
    rest_corners = box_corners(*rest_box)
    real = cfg.realism
    parts = [ScenePart(transform(world_to_scene, obj_world_verts), obj.faces, obj.vertices, obj.albedo),
             ScenePart(transform(world_to_scene, job["render_verts"]), hand.faces, hand.canon,
                       lambda p: skin_color(p, hand.rest21, job["style"]), real.specular)]
    # HO-3D's seg is rendered from the annotated models: with annotation error it misses the true silhouette
    seg_parts = parts[:1] + [ScenePart(transform(world_to_scene, job["ann_verts"]), hand.faces, hand.canon,
                                       parts[1].albedo)]
    # hand_vertices: the rendered surface; hand_model_vertices: the exact parameters' model mesh
    gt = {"object_name": obj.name, "object_pose": job["obj_world"], "object_vertices": obj_world_verts,
          "object_faces": obj.faces, "object_box": obj_box, "hand_vertices": job["render_verts"],
          "hand_model_vertices": job["verts"],
          "hand_joints": job["joints"], "hand_faces": hand.faces, "hand_pose": job["pose"],
          "hand_trans": job["trans"], "betas": job["betas"], "annotated": job["annotated"]}
    # hand-object contact fields, from the object's SDF in its model frame
    v_obj = transform(invert_rigid(job["obj_world"]), job["ann_verts"])
    dist = obj.sdf(v_obj)
    surf = v_obj - dist[:, None] * _sdf_grad(obj.sdf, v_obj)
    for seq, c2w, K in job["seqs"]:
        w2c = invert_rigid(c2w)
        capture = real.capture_effects
        rgb, part, depth = render_scene(
            parts, K, w2c @ job["scene_to_world"], HEIGHT, WIDTH, job["bg_seed"], realism=real,
            response=camera_response(real, cfg.seed, seq) if capture else None,
            noise_rng=stream(cfg.seed, "sensor", seq, fid) if capture else None)
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[part == 0] = 3
        label[part == 1] = 1
        d = root / "train" / seq
        for sub in ("rgb", "depth", "seg", "meta"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / "rgb" / f"{fid:04d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, real.jpeg_quality or cfg.jpeg_quality])
        cv2.imwrite(str(d / "depth" / f"{fid:04d}.png"), encode_depth(depth))
        # the segmentation is rendered at 320x240 (centre-aligned intrinsics), not subsampled from 640x480
        Ks = scale_intrinsics(K, SEG_SIZE[0] / WIDTH, SEG_SIZE[1] / HEIGHT)
        ras = rasterize_meshes([(transform(w2c @ job["scene_to_world"], p.vertices), p.faces) for p in seg_parts],
                               Ks, SEG_SIZE[1], SEG_SIZE[0])
        small = np.zeros(ras.mesh_id.shape, np.uint8)
        small[ras.mesh_id == 0] = 3
        small[ras.mesh_id == 1] = 1
        seg = np.zeros(small.shape + (3,), np.uint8)
        seg[small == 1, 0] = 255
        seg[small == 3, 1] = 255
        cv2.imwrite(str(d / "seg" / f"{fid:04d}.png"), seg)
        gdir = root / "handcli_gt" / "train" / seq
        gdir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gdir / f"label_{fid:04d}.png"), label)
        gt[f"joints2d_{seq}"] = project(transform(w2c, job["joints"]), K)
        gt[f"corners2d_{seq}"] = project(transform(w2c, obj_corners), K)
        # annotations in this camera's OpenGL frame
        gl_from_world = C4 @ w2c
        meta = {"objName": obj.name, "objLabel": OBJ_LABELS.get(obj.name, 0), "camMat": K.astype(np.float64),
                "camIDList": [seq[-1]], "objCorners3DRest": rest_corners.astype(np.float64)}
        if job["annotated"]:
            pose_gl, trans_gl = move_mano(job["ann_pose"], job["ann_trans"], job["J0"], gl_from_world)
            obj_gl = gl_from_world @ job["obj_world"]
            trans_field = trans_gl.reshape(3, 1) if job["kind"] == "single" else trans_gl.reshape(3)
            meta.update({
                "handPose": pose_gl.astype(np.float64), "handBeta": job["betas"].astype(np.float64),
                "handTrans": trans_field.astype(np.float64),
                "handJoints3D": _ho3d_joints(transform(gl_from_world, job["ann_joints"])).astype(np.float64),
                "objRot": Rotation.from_matrix(obj_gl[:3, :3]).as_rotvec().reshape(3, 1),
                "objTrans": obj_gl[:3, 3].astype(np.float64),
                "objCorners3D": transform(obj_gl, rest_corners),
                "handVertContact": dist < 0.004, "handVertDist": np.abs(dist).astype(np.float32),
                "handVertIntersec": dist < 0.0,
                "handVertObjSurfProj": transform(gl_from_world, transform(job["obj_world"], surf)).astype(np.float32),
            })
        else:
            meta.update({k: None for k in ("handPose", "handBeta", "handTrans", "handJoints3D", "objRot", "objTrans",
                                           "objCorners3D", "handVertContact", "handVertDist", "handVertIntersec",
                                           "handVertObjSurfProj")})
        (d / "meta" / f"{fid:04d}.pkl").write_bytes(py2_pickle_bytes(meta))
        if job["annotated"] and real.estimates:
            _write_estimate(root, job, seq, w2c, hand, real, cfg.seed)
    gdir = root / "handcli_gt" / "train" / job["group"]
    gdir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(gdir / f"{fid:04d}.npz", **gt)


def _write_estimate(root: Path, job: dict, seq: str, w2c: np.ndarray, hand: _Hand, real: RealismConfig,
                    seed: int) -> None:
    """The input hand a single-image estimator would give for this view (realistic profile), written to
    ``handcli_est/train/{SEQ}/{id:04d}.npz`` in the meta files' convention (this camera's OpenGL frame):
    ``handPose`` (48,), ``handBeta`` (10,), ``handTrans`` (3,), ``handJoints3D`` (21, 3) HO-3D order and
    ``vertices`` (778, 3)."""
    fid, betas = job["fid"], job["betas"]
    rng = stream(seed, "estimate", seq, fid)
    pose, trans = estimated_pose(lambda p: hand.pose(p, betas, job["trans"])[0], job["pose"], job["trans"], w2c,
                                 real, rng)
    gl_from_world = C4 @ w2c
    pose_gl, trans_gl = move_mano(pose, trans, job["J0"], gl_from_world)
    verts, joints = hand.pose(pose_gl, betas, trans_gl)
    d = root / "handcli_est" / "train" / seq
    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / f"{fid:04d}.npz", handPose=pose_gl, handBeta=np.asarray(betas, np.float64),
                        handTrans=trans_gl, handJoints3D=_ho3d_joints(joints), vertices=verts.astype(np.float32))
