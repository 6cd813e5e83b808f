"""Synthetic DexYCB in the real layout (docs/formats.md#dexycb), rendered from the open hand model grasping
procedural YCB-like objects.

Writes exactly the real layout::

    ROOT/{date}-subject-{XX}/{date}_{HHMMSS}/meta.yml, pose.npz
    ROOT/{subject}/{sequence}/{serial}/color_{f:06d}.jpg, aligned_depth_to_color_{f:06d}.png, labels_{f:06d}.npz
    ROOT/calibration/intrinsics/{serial}_640x480.yml      (with the !!python/tuple depth->colour extrinsics)
    ROOT/calibration/extrinsics_{id}/extrinsics.yml        (camera->world 3x4 per serial + apriltag; master)
    ROOT/calibration/mano_{id}/mano.yml                    (betas)
    ROOT/models/{ycb_name}/textured_simple.obj, textured_simple.obj.mtl, points.xyz

plus, outside the layout, ground truth::

    ROOT/handcli_gt/{subject}/{sequence}/{f:06d}.npz      world hand/object meshes, joints, object pose,
                                                           projected joints and object-box corners per serial
    ROOT/handcli_gt/{subject}/{sequence}/{serial}/label_{f:06d}.png   handcli labels 0/1/2/3
    ROOT/handcli_synth.json                                generator config (MANO parameters are the open
                                                           hand model's: PCA over its own hands_components)
    ROOT/handcli_est/{subject}/{sequence}/{serial}/mano_{f:06d}.npz   realistic profile only: a per-view hand
                                                           estimate (pose_m, joint_3d, vertices; camera frame)

In the realistic profile (``synth/realism.py``) ``pose.npz``/``labels`` carry annotation error and ``seg`` is
rendered from the annotated hand; the ground-truth npz keeps the exact parameters (``hand_pose``,
``hand_trans``, ``hand_joints``, ``hand_model_vertices``) and the rendered surface (``hand_vertices``).

A scene is a table (z up) with the grasped object and distractor objects; the camera rig's world is the
master camera's frame. Frame 0 of every sequence has no hand (pose_m zeros); frame 1 of the first sequence
shows the hand but carries no hand annotation. Left-hand subjects alternate with right-hand ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from scipy.spatial.transform import Rotation

from handcli.camera import box_corners, intrinsics, look_at, project, transform, world_to_cam_matrix
from handcli.data.dexycb import SERIALS, SUBJECTS, invert_rigid
from handcli.data.ho_preprocess import move_mano, root_joint
from handcli.data.objects import YCB_IDS, aabb
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
from handcli.synth.texture import skin_color, subject_style, value_noise

MASTER = "840412060917"
WIDTH, HEIGHT = 640, 480
GRASP_OBJECTS = ("003_cracker_box", "005_tomato_soup_can", "011_banana", "025_mug")


@dataclass(frozen=True)
class DexYCBSynthConfig:
    """What to generate. Small numbers give a tiny dataset for tests."""

    subjects: int = 2
    seqs: int = 1  # sequences per subject
    frames: int = 6
    cameras: int = 8
    objects: tuple[str, ...] = GRASP_OBJECTS  # grasped objects, cycled over sequences
    distractors: int = 1  # other objects on the table (seg = their id, label 0 in caches)
    unannotated_frame: bool = True
    seed: int = 0
    jpeg_quality: int = 95
    mano_model: str = "open-hand/1"
    realism: RealismConfig = field(default_factory=RealismConfig)  # profile (synth/realism.py)


class _Hands:
    def __init__(self):
        from handcli.hand.model import HandModel

        self.flat = {s: HandModel.load(s, None, flat_hand_mean=True) for s in ("right", "left")}
        with torch.no_grad():
            self.rest21 = self.flat["right"](torch.zeros(1, 48)).joints[0].double().numpy()
        self.faces = {s: np.asarray(m.faces, np.int64) for s, m in self.flat.items()}
        self.lbs_weights = {s: m.lbs_weights.detach().numpy().astype(np.float64) for s, m in self.flat.items()}

    @torch.no_grad()
    def pose(self, side: str, pose: np.ndarray, betas: np.ndarray, trans: np.ndarray):
        out = self.flat[side](torch.as_tensor(pose[None], dtype=torch.float32),
                              torch.as_tensor(betas[None], dtype=torch.float32),
                              torch.as_tensor(trans[None], dtype=torch.float32))
        return out.vertices[0].double().numpy(), out.joints[0].double().numpy()

    def canon(self, side: str) -> np.ndarray:
        """Texture coordinates: the right hand's rest surface (left hands mirrored onto it)."""
        t = self.flat[side].v_template.numpy().astype(np.float64)
        return t * np.array([-1.0, 1.0, 1.0]) if side == "left" else t


def _pca_pose_m(hands: _Hands, side: str, pose_abs: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(51,) DexYCB pose_m: global orient, 45 PCA coefficients relative to hands_mean, translation."""
    m = hands.flat[side]
    comps = m.hands_components.numpy().astype(np.float64)
    rel = pose_abs[3:] - m.hands_mean.numpy().astype(np.float64)
    coeffs = np.linalg.lstsq(comps.T, rel, rcond=None)[0]
    return np.concatenate([pose_abs[:3], coeffs, trans])


def _rig(n: int, rng: np.random.Generator, intr: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """serial -> (4, 4) camera->table for a ring of cameras looking at the workspace."""
    serials = SERIALS[:n]
    out = {}
    for k, s in enumerate(serials):
        az = 2 * np.pi * k / max(n, 1) + rng.uniform(-0.2, 0.2)
        el = np.deg2rad(rng.uniform(35.0, 55.0))
        r = rng.uniform(0.75, 0.9)
        target = np.array([0.0, 0.0, 0.12]) + rng.normal(0, 0.01, 3)
        eye = target + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        R = look_at(eye, target, np.array([0.0, 0.0, 1.0]))
        out[s] = invert_rigid(world_to_cam_matrix(R, -R @ eye))
    return out


def _table_part(rng_seed: int) -> ScenePart:
    n = 24
    xs = np.linspace(-0.35, 0.35, n + 1)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])  # normals +z

    def albedo(p):
        g = value_noise(p * np.array([1.0, 8.0, 1.0]), 30.0, rng_seed)  # wood-like grain along x
        return np.clip(np.array([0.55, 0.42, 0.30]) * (0.8 + 0.4 * g)[:, None], 0, 1)

    return ScenePart(v, faces, v, albedo)


def _obj_pose_table(obj, xy: np.ndarray, yaw: float, lift: float = 0.0, tilt: float = 0.0) -> np.ndarray:
    """(4, 4) object->table: resting upright on the table at xy, turned by yaw, lifted and tilted."""
    R = Rotation.from_euler("z", yaw).as_matrix() @ Rotation.from_euler("x", tilt).as_matrix()
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = [xy[0], xy[1], obj.up_extent + 0.001 + lift]
    return M


def _yaml_intrinsics(K: np.ndarray, Kd: np.ndarray, d2c: np.ndarray) -> str:
    data = {"color": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "ppx": float(K[0, 2]), "ppy": float(K[1, 2])},
            "depth": {"fx": float(Kd[0, 0]), "fy": float(Kd[1, 1]), "ppx": float(Kd[0, 2]), "ppy": float(Kd[1, 2])},
            "extrinsics": tuple(float(x) for x in d2c.reshape(-1))}
    return yaml.dump(data, default_flow_style=False)  # the tuple becomes !!python/tuple, as in the real files


def write_dexycb(root: str | Path, cfg: DexYCBSynthConfig) -> Path:
    """Generate a synthetic DexYCB dataset under ``root`` (absent or an empty folder)."""
    root = Path(root)
    rng = np.random.default_rng(cfg.seed)
    hands = _Hands()
    if not 1 <= cfg.cameras <= len(SERIALS):
        raise ValueError(f"cameras must be 1..{len(SERIALS)}")
    if not 1 <= cfg.subjects <= len(SUBJECTS):
        raise ValueError(f"subjects must be 1..{len(SUBJECTS)}")
    serials = SERIALS[:cfg.cameras]
    master = MASTER if MASTER in serials else serials[0]
    calib = root / "calibration"
    (calib / "intrinsics").mkdir(parents=True)

    intr = {}
    for s in serials:
        K = intrinsics(613.0 + rng.uniform(-5, 5), 612.0 + rng.uniform(-5, 5), 313.0 + rng.uniform(-6, 6),
                       245.0 + rng.uniform(-5, 5))
        Kd = intrinsics(385.0 + rng.uniform(-3, 3), 385.0 + rng.uniform(-3, 3), 320.0 + rng.uniform(-4, 4),
                        240.0 + rng.uniform(-4, 4))
        d2c = np.concatenate([np.eye(3), np.array([[0.0148], [0.0003], [0.0002]])], axis=1)
        (calib / "intrinsics" / f"{s}_{WIDTH}x{HEIGHT}.yml").write_text(_yaml_intrinsics(K, Kd, d2c))
        intr[s] = K

    names = list(dict.fromkeys(list(cfg.objects) + list(GRASP_OBJECTS)))
    objs = {n: make_object(n) for n in names}
    for n, o in objs.items():
        write_ycb_model(root / "models", o, seed=cfg.seed + YCB_IDS[n])

    jobs = []
    seq_counter = 0
    for si in range(cfg.subjects):
        subject = SUBJECTS[si]
        date = subject.split("-")[0]
        side = "right" if si % 2 == 0 else "left"
        ext_id = f"{date}_10{si:02d}00"
        cam_to_table = _rig(cfg.cameras, rng, intr)
        table_to_world = invert_rigid(cam_to_table[master])
        cam_to_world = {s: table_to_world @ cam_to_table[s] for s in serials}
        ext = {"extrinsics": {s: [round(float(x), 9) for x in cam_to_world[s][:3].reshape(-1)] for s in serials},
               "master": master}
        ext["extrinsics"]["apriltag"] = [round(float(x), 9) for x in table_to_world[:3].reshape(-1)]
        (calib / f"extrinsics_{ext_id}").mkdir()
        (calib / f"extrinsics_{ext_id}" / "extrinsics.yml").write_text(yaml.safe_dump(ext))
        cam_to_world = {s: _read_back(ext["extrinsics"][s]) for s in serials}  # what readers see
        betas = np.clip(rng.normal(0, 0.5, 10), -1.2, 1.2).round(6)
        mano_calib = f"{date}_100500_subject-{si + 1:02d}_{side}"
        (calib / f"mano_{mano_calib}").mkdir()
        (calib / f"mano_{mano_calib}" / "mano.yml").write_text(yaml.safe_dump({"betas": betas.tolist()}))
        style = subject_style(cfg.seed * 100 + si)
        J0 = root_joint(hands.flat[side], betas)
        real = cfg.realism
        offsets = surface_offsets(hands.canon(side), hands.lbs_weights[side], real, stream(cfg.seed, "surface", si))
        for q in range(cfg.seqs):
            seq_name = f"{date}_14{10 + q:02d}{(7 * si) % 60:02d}"
            grasp_name = cfg.objects[seq_counter % len(cfg.objects)]
            others = [n for n in names if n != grasp_name][:cfg.distractors]
            ycb_ids = [YCB_IDS[grasp_name]] + [YCB_IDS[n] for n in others]
            obj = objs[grasp_name]
            # grasp in the object frame, from a random side
            turn = {"box": rng.choice([0.0, np.pi]), "can": rng.uniform(-np.pi, np.pi),
                    "mug": rng.uniform(-0.8, 0.8), "banana": 0.0}[obj.kind]
            Rz = Rotation.from_euler("z", turn).as_matrix()
            fdir = obj.finger_dir * (rng.choice([-1.0, 1.0]) if obj.kind == "banana" else 1.0)
            centre = np.array([0.0, 0.0, 0.15 * obj.up_extent])
            g = grasp_object(hands.flat[side], obj.sdf, centre, Rz @ obj.approach, Rz @ fdir, betas)
            xy0, yaw0 = rng.uniform(-0.03, 0.03, 2), rng.uniform(-np.pi, np.pi)
            rest = [(objs[n], _obj_pose_table(objs[n], np.array([0.2 * np.cos(a), 0.2 * np.sin(a)]),
                                               rng.uniform(-np.pi, np.pi)))
                    for n, a in zip(others, rng.uniform(0, 2 * np.pi, len(others)))]
            seq_dir = root / subject / seq_name
            seq_dir.mkdir(parents=True)
            meta = {"serials": list(serials), "num_frames": cfg.frames, "extrinsics": ext_id, "ycb_ids": ycb_ids,
                    "ycb_grasp_ind": 0, "mano_sides": [side], "mano_calib": [mano_calib]}
            (seq_dir / "meta.yml").write_text(yaml.safe_dump(meta, default_flow_style=False))
            seq_pose_y = np.zeros((cfg.frames, len(ycb_ids), 7), np.float32)
            seq_pose_m = np.zeros((cfg.frames, 1, 51), np.float32)
            mano_off = sequence_offset(real, cfg.seed, subject, seq_name)
            for k in range(cfg.frames):
                t = (k - 1) / max(cfg.frames - 2, 1)
                lifted = k >= 1
                T_obj = _obj_pose_table(obj, xy0, yaw0 + 0.6 * t * lifted, 0.02 + 0.13 * t if lifted else 0.0,
                                        0.3 * t if lifted else 0.0)
                obj_world = table_to_world @ T_obj
                poses_world = [obj_world] + [table_to_world @ P for _, P in rest]
                for i, P in enumerate(poses_world):
                    seq_pose_y[k, i] = np.concatenate([Rotation.from_matrix(P[:3, :3]).as_quat(), P[:3, 3]])
                state = None
                if lifted:
                    pose_w, trans_w = move_mano(g.pose, g.trans, J0, obj_world)
                    verts, joints = hands.pose(side, pose_w, betas, trans_w)
                    state = {"pose": pose_w, "trans": trans_w, "verts": verts, "joints": joints,
                             "render_verts": displace(verts, hands.faces[side], offsets)}
                    ann_pose, ann_trans = annotated_pose(lambda p: hands.pose(side, p, betas, trans_w)[0], pose_w,
                                                         trans_w, mano_off, real,
                                                         stream(cfg.seed, "annotation", subject, seq_name, k))
                    ann_verts, ann_joints = hands.pose(side, ann_pose, betas, ann_trans)
                    state.update(ann_pose=ann_pose, ann_trans=ann_trans, ann_verts=ann_verts, ann_joints=ann_joints)
                    annotated = not (cfg.unannotated_frame and seq_counter == 0 and k == 1)
                    if annotated:
                        seq_pose_m[k, 0] = _pca_pose_m(hands, side, ann_pose, ann_trans)
                    state["annotated"] = annotated
                jobs.append(dict(subject=subject, seq=seq_name, frame=k, side=side, betas=betas, J0=J0,
                                 state=state, obj=obj, obj_world=obj_world, rest=rest, table_to_world=table_to_world,
                                 cam_to_world=cam_to_world, intr=intr, ycb_ids=ycb_ids, style=style,
                                 bg_seed=cfg.seed * 7919 + seq_counter * 101 + k))
            np.savez_compressed(seq_dir / "pose.npz", pose_y=seq_pose_y, pose_m=seq_pose_m)
            seq_counter += 1

    table = _table_part(cfg.seed)
    with progress() as bar:
        task = bar.add_task("synth dexycb", total=len(jobs) * len(serials))
        for job in jobs:
            _write_frame(root, job, serials, hands, table, cfg)
            bar.advance(task, len(serials))
    meta = {"schema": "handcli.synth/1", "dataset": "dexycb", "config": asdict(cfg), "mano_model": cfg.mano_model,
            "flat_hand_mean": False, "master": master, "profile": cfg.realism.profile,
            "camera_response": {s: camera_response(cfg.realism, cfg.seed, s).as_dict() for s in serials},
            "note": "pose_m PCA coefficients use the open hand model's hands_components; ground truth in handcli_gt/"}
    (root / "handcli_synth.json").write_text(json.dumps(meta, indent=1))
    return root


def _read_back(values: list[float]) -> np.ndarray:
    M = np.eye(4)
    M[:3] = np.asarray(values, np.float64).reshape(3, 4)
    return M


def _write_frame(root: Path, job: dict, serials: list[str], hands: _Hands, table: ScenePart,
                 cfg: DexYCBSynthConfig) -> None:
    side, state, obj = job["side"], job["state"], job["obj"]
    seq_dir = root / job["subject"] / job["seq"]
    gt_dir = root / "handcli_gt" / job["subject"] / job["seq"]
    f = job["frame"]
    world_to_table = invert_rigid(job["table_to_world"])
    # scene parts in the table frame (z up, for the lights)
    parts = [table]
    seg_values = [0]
    grasped_world = transform(job["obj_world"], obj.vertices)
    for o, P in job["rest"]:
        parts.append(ScenePart(transform(P, o.vertices), o.faces, o.vertices, o.albedo))
        seg_values.append(o.ycb_id)
    parts.append(ScenePart(transform(world_to_table, grasped_world), obj.faces, obj.vertices, obj.albedo))
    seg_values.append(obj.ycb_id)
    real = cfg.realism
    if state is not None:
        rest21 = hands.rest21
        parts.append(ScenePart(transform(world_to_table, state["render_verts"]), hands.flat[side].faces,
                               hands.canon(side), lambda p: skin_color(p, rest21, job["style"]), real.specular))
        seg_values.append(255)
    seg_lut = np.array(seg_values, np.int64)
    label_lut = np.array([0] * (len(parts) - (2 if state is not None else 1)) + [3]
                         + ([1 if side == "right" else 2] if state is not None else []), np.uint8)
    obj_box = aabb(np.concatenate([grasped_world, transform(job["obj_world"], obj.sample_points(2000, seed=cfg.seed +
                                                                                                  obj.ycb_id))]))
    corners = box_corners(*obj_box)
    gt = {"hand_present": state is not None, "hand_annotated": bool(state and state["annotated"]), "side": side,
          "object_name": obj.name, "object_pose": job["obj_world"], "object_vertices": grasped_world,
          "object_faces": obj.faces, "object_box": obj_box, "betas": job["betas"]}
    if state is not None:
        # hand_vertices: the rendered surface; hand_model_vertices: the exact parameters' model mesh
        gt.update(hand_vertices=state["render_verts"], hand_model_vertices=state["verts"], hand_joints=state["joints"],
                  hand_faces=hands.flat[side].faces, hand_pose=state["pose"], hand_trans=state["trans"])
    capture = real.capture_effects
    for s in serials:
        c2w = job["cam_to_world"][s]
        w2c = invert_rigid(c2w)
        K = job["intr"][s]
        rgb, part, depth = render_scene(
            parts, K, w2c @ job["table_to_world"], HEIGHT, WIDTH, job["bg_seed"], realism=real,
            response=camera_response(real, cfg.seed, s) if capture else None,
            noise_rng=stream(cfg.seed, "sensor", job["subject"], job["seq"], f, s) if capture else None)
        seg_part = part
        if state is not None and real.annotation_error:
            # DexYCB's seg is rendered from the annotated models, so it misses the true silhouette at the edges
            ann_parts = parts[:-1] + [ScenePart(transform(world_to_table, state["ann_verts"]), parts[-1].faces,
                                                parts[-1].canon, parts[-1].albedo)]
            M = w2c @ job["table_to_world"]
            seg_part = rasterize_meshes([(transform(M, p.vertices), p.faces) for p in ann_parts], K, HEIGHT,
                                        WIDTH).mesh_id
        seg = np.where(seg_part >= 0, seg_lut[np.maximum(seg_part, 0)], 0).astype(np.uint8)
        label = np.where(part >= 0, label_lut[np.maximum(part, 0)], 0).astype(np.uint8)
        cam_dir = seq_dir / s
        cam_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cam_dir / f"color_{f:06d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, real.jpeg_quality or cfg.jpeg_quality])
        cv2.imwrite(str(cam_dir / f"aligned_depth_to_color_{f:06d}.png"),
                    np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16))
        pose_y = np.zeros((len(job["ycb_ids"]), 3, 4), np.float32)
        pose_y[0] = (w2c @ job["obj_world"])[:3]
        for i, (_, P) in enumerate(job["rest"], 1):
            pose_y[i] = (w2c @ job["table_to_world"] @ P)[:3]
        pose_m = np.zeros((1, 51), np.float32)
        joint_3d = -np.ones((1, 21, 3), np.float32)
        joint_2d = -np.ones((1, 21, 2), np.float32)
        if state is not None:
            j_cam = transform(w2c, state["joints"])
            gt[f"joints2d_{s}"] = project(j_cam, K)
            if state["annotated"]:
                pose_c, trans_c = move_mano(state["ann_pose"], state["ann_trans"], job["J0"], w2c)
                pose_m[0] = _pca_pose_m(hands, side, pose_c, trans_c)
                ann_cam = transform(w2c, state["ann_joints"])
                joint_3d[0] = ann_cam
                joint_2d[0] = project(ann_cam, K)
                if real.estimates:
                    _write_estimate(root, job, s, w2c, hands, real, cfg.seed)
        gt[f"corners2d_{s}"] = project(transform(w2c, corners), K)
        np.savez_compressed(cam_dir / f"labels_{f:06d}.npz", seg=seg, pose_y=pose_y, pose_m=pose_m,
                            joint_3d=joint_3d, joint_2d=joint_2d)
        (gt_dir / s).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gt_dir / s / f"label_{f:06d}.png"), label)
    np.savez_compressed(gt_dir / f"{f:06d}.npz", **gt)


def _write_estimate(root: Path, job: dict, serial: str, w2c: np.ndarray, hands: _Hands, real: RealismConfig,
                    seed: int) -> None:
    """The input hand a single-image estimator would give for this view (realistic profile), written to
    ``handcli_est/{subject}/{seq}/{serial}/mano_{f:06d}.npz`` in the labels' convention (camera frame):
    ``pose_m`` (1, 51) PCA, ``joint_3d`` (1, 21, 3), ``vertices`` (1, 778, 3), float32."""
    side, state, f = job["side"], job["state"], job["frame"]
    rng = stream(seed, "estimate", job["subject"], job["seq"], f, serial)
    betas = job["betas"]
    pose, trans = estimated_pose(lambda p: hands.pose(side, p, betas, state["trans"])[0], state["pose"],
                                 state["trans"], w2c, real, rng)
    pose_c, trans_c = move_mano(pose, trans, job["J0"], w2c)
    verts, joints = hands.pose(side, pose_c, betas, trans_c)
    d = root / "handcli_est" / job["subject"] / job["seq"] / serial
    d.mkdir(parents=True, exist_ok=True)
    pose_m = _pca_pose_m(hands, side, pose_c, trans_c)[None].astype(np.float32)
    np.savez_compressed(d / f"mano_{f:06d}.npz", pose_m=pose_m, joint_3d=joints[None].astype(np.float32),
                        vertices=verts[None].astype(np.float32))
