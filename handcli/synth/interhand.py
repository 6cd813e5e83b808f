"""Synthetic InterHand2.6M (v1.0 layout) rendered from the open hand model.

Writes exactly the real layout (docs/formats.md#interhand26m)::

    ROOT/images/{split}/Capture{c}/{seq}/cam{cam}/image{frame:04d}.jpg
    ROOT/annotations/skeleton.txt, subject.txt
    ROOT/annotations/{split}/InterHand2.6M_{split}_{data,camera,joint_3d,MANO_NeuralAnnot}.json

plus, outside the real layout, ground truth for evaluation::

    ROOT/handcli_gt/{split}/Capture{c}/{seq}/cam{cam}/mask{frame:04d}.png   0 bg, 100 left, 200 right
    ROOT/handcli_gt/{split}/Capture{c}/{seq}/cam{cam}/depth{frame:04d}.npy  float32 z-depth, metres
    ROOT/handcli_gt/joints2d.json   {image_id: 42x2 projected exact joints (px, unrounded)}
    ROOT/handcli_gt/InterHand2.6M_{split}_{joint_3d,MANO_NeuralAnnot}.json   the exact rendered values
    ROOT/handcli_gt/surface_offsets.npz   per capture and side: the rendered surface's offsets along normals
    ROOT/handcli_synth.json         generator config; MANO parameters are for the open hand model

With ``--profile realistic`` (``synth/realism.py``) the annotation files carry annotation error, the
rendered hand has detail outside the model and the images capture effects; the exact values stay in
``handcli_gt/``. The all-black frame's ground-truth mask and depth are empty.

Quirks of the real data that are reproduced on purpose: frame indices below and above
1000 (zero-padded to 4 digits), a 5-digit frame index, a landscape colour camera, a
monochrome (grey) landscape camera, an all-black frame and a frame whose left-hand MANO
entry is null.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from handcli.camera import intrinsics, look_at, project, transform, world_to_cam_matrix
from handcli.errors import InputError
from handcli.hand.skeleton import IH_TO_21
from handcli.progress import progress
from handcli.render.raster import interpolate, rasterize_meshes
from handcli.synth.motion import finger_pose, gesture_flex, hand_orientation, mirror_rotation
from handcli.synth.realism import (
    RealismConfig,
    annotated_pose,
    apply_capture,
    camera_response,
    displace,
    joint_noise,
    random_direction,
    stream,
    surface_offsets,
)
from handcli.synth.shading import background, blinn_phong, lambert, vertex_normals
from handcli.synth.texture import skin_color, subject_style

# HandNeRF's published view split (docs/formats.md#handnerf-guo-data): portrait colour cameras.
HANDNERF_TRAIN_VIEWS = ["400002", "400004", "400010", "400012", "400013", "400016", "400018", "400042",
                        "400053", "400059"]
HANDNERF_TEST_VIEWS = ["400009", "400017", "400019", "400023", "400026", "400027", "400028", "400029",
                       "400030", "400031", "400037", "400039", "400041", "400048", "400051", "400060",
                       "400063", "400064"]
LANDSCAPE_COLOUR_CAMERA = "400262"
MONO_CAMERA = "410028"  # monochrome, landscape (as camera 410028 in the real data)

SEQ_KINDS = {
    "right": ("rh_wave", "wave"),
    "left": ("lh_count", "count"),
    "interacting": ("dh_touch", "grab"),
}
# Frame numbering per sequence: (first index, step). Covers <1000, crossing 1000, and 5 digits.
FRAME_STARTS = [(995, 3), (23320, 5), (41, 4)]
HAND_CENTRE = np.array([0.0, 0.0, 1.0])  # metres; hands sit ~1 m above the world origin


@dataclass(frozen=True)
class InterHandSynthConfig:
    """What to generate. Small numbers give a tiny dataset for tests."""

    split: str = "train"
    captures: int = 1
    seqs: tuple[str, ...] = ("right", "interacting")
    frames: int = 6
    cameras: int = 8  # colour cameras: (cameras - 1) portrait + 1 landscape
    mono_cameras: int = 1
    camera_ids: tuple[str, ...] = ()  # explicit portrait ids (overrides the default list)
    black_frame: bool = True
    null_mano: bool = True
    seed: int = 0
    jpeg_quality: int = 95
    mano_model: str = "open-hand/1"
    extra: dict = field(default_factory=dict)
    realism: RealismConfig = field(default_factory=RealismConfig)  # profile (synth/realism.py)


def portrait_camera_ids(n: int) -> list[str]:
    """Default portrait colour camera ids: HandNeRF train and test views interleaved."""
    order = []
    for i in range(max(len(HANDNERF_TRAIN_VIEWS), len(HANDNERF_TEST_VIEWS))):
        if i < len(HANDNERF_TRAIN_VIEWS):
            order.append(HANDNERF_TRAIN_VIEWS[i])
        if i < len(HANDNERF_TEST_VIEWS):
            order.append(HANDNERF_TEST_VIEWS[i])
    extra = [f"4001{i:02d}" for i in range(100)]
    return (order + extra)[:n]


@dataclass
class SynthCamera:
    cam_id: str
    width: int
    height: int
    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3) world -> camera
    campos: np.ndarray  # (3,) metres
    mono: bool

    @property
    def world_to_cam(self) -> np.ndarray:
        return world_to_cam_matrix(self.R, -self.R @ self.campos)


def make_cameras(cfg: InterHandSynthConfig, rng: np.random.Generator) -> list[SynthCamera]:
    """A ring of calibrated cameras around the hands, like the InterHand capture dome."""
    ids = list(cfg.camera_ids) if cfg.camera_ids else portrait_camera_ids(max(cfg.cameras - 1, 0))
    specs = [(i, "portrait", False) for i in ids]
    if cfg.cameras >= 1 and not cfg.camera_ids:
        specs.append((LANDSCAPE_COLOUR_CAMERA, "landscape", False))
    specs += [(MONO_CAMERA if k == 0 else f"41003{k}", "landscape", True) for k in range(cfg.mono_cameras)]
    n = len(specs)
    cams = []
    for k, (cam_id, orient, mono) in enumerate(specs):
        az = 2 * np.pi * k / n + rng.uniform(-0.15, 0.15)
        el = np.deg2rad([-10.0, 20.0, 40.0, 5.0][k % 4] + rng.uniform(-5, 5))
        radius = rng.uniform(0.85, 1.05)
        eye = HAND_CENTRE + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        target = HAND_CENTRE + rng.normal(0.0, 0.01, size=3)
        R = look_at(eye, target, np.array([0.0, 0.0, 1.0]))
        w, h = (334, 512) if orient == "portrait" else (512, 334)
        f = rng.uniform(1240.0, 1290.0)
        K = intrinsics(f, f * rng.uniform(0.998, 1.002), w / 2 + rng.uniform(-12, 12), h / 2 + rng.uniform(-8, 8))
        cams.append(SynthCamera(cam_id, w, h, K, R, eye, mono))
    return cams


class _Hands:
    """The open hand model on both sides, posed from absolute poses."""

    def __init__(self):
        from handcli.hand.model import HandModel

        self.models = {s: HandModel.load(s, None, flat_hand_mean=True) for s in ("right", "left")}
        self.faces = {s: np.asarray(m.faces, dtype=np.int64) for s, m in self.models.items()}
        self.hands_mean = {s: m.hands_mean.numpy().astype(np.float64) for s, m in self.models.items()}
        self.template = {s: m.v_template.numpy().astype(np.float64) for s, m in self.models.items()}
        self.lbs_weights = {s: m.lbs_weights.detach().numpy().astype(np.float64) for s, m in self.models.items()}
        zero = torch.zeros(1, 48)
        self.rest_joints21 = {}
        for s, m in self.models.items():
            with torch.no_grad():
                out = m(zero, torch.zeros(1, 10), torch.zeros(1, 3))
            self.rest_joints21[s] = out.joints[0].numpy().astype(np.float64)

    @torch.no_grad()
    def pose(self, side: str, pose48: np.ndarray, betas: np.ndarray, trans: np.ndarray):
        out = self.models[side](
            torch.as_tensor(pose48[None], dtype=torch.float32),
            torch.as_tensor(betas[None], dtype=torch.float32),
            torch.as_tensor(trans[None], dtype=torch.float32),
        )
        return out.vertices[0].double().numpy(), out.joints[0].double().numpy(), out.joints16[0].double().numpy()

    def wrist_offset(self, side: str, betas: np.ndarray) -> np.ndarray:
        """Rest wrist position J0(betas): trans = wrist_world - J0 places the wrist."""
        _, _, j16 = self.pose(side, np.zeros(48), betas, np.zeros(3))
        return j16[0]


def _hand_state(hands: _Hands, side: str, t: float, gesture: str, phase: np.ndarray, R: np.ndarray,
                wrist: np.ndarray, betas: np.ndarray) -> dict:
    """Pose one hand. ``R`` is the final world rotation of that hand's model frame."""
    flex, spread, oppose = gesture_flex(t, gesture, phase)
    fingers = finger_pose(flex, spread, oppose)
    if side == "left":  # the left model is the mirrored right: mirror the finger rotations too
        fingers = (fingers.reshape(15, 3) * np.array([1.0, -1.0, -1.0])).reshape(45)
    pose_abs = np.concatenate([Rotation.from_matrix(R).as_rotvec(), fingers])
    trans = wrist - hands.wrist_offset(side, betas)
    verts, joints21, _ = hands.pose(side, pose_abs, betas, trans)
    return {"pose_abs": pose_abs, "trans": trans, "betas": betas, "verts": verts, "joints": joints21}


def _min_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(cKDTree(a).query(b, k=1)[0].min())


def sequence_states(hands: _Hands, kind: str, n_frames: int, rng: np.random.Generator,
                    betas: dict[str, np.ndarray]) -> list[dict[str, dict]]:
    """Per-frame hand states {side: state} for one sequence kind (right / left / interacting)."""
    _, gesture = SEQ_KINDS[kind]
    phase = rng.uniform(-0.05, 0.05, size=5)
    yaw0, tilt, yaw_speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.4), rng.uniform(1.2, 2.0)
    states = []
    for k in range(n_frames):
        t = k / max(n_frames - 1, 1)
        if kind in ("right", "left"):
            R = hand_orientation(t, yaw0, tilt, yaw_speed)
            if kind == "left":
                R = mirror_rotation(R)
            wrist = HAND_CENTRE - R @ np.array([0.09 * (1 if kind == "right" else -1), 0.0, 0.0])
            wrist = wrist + 0.02 * np.array([np.sin(2 * np.pi * t), 0.0, np.cos(2 * np.pi * t) - 1])
            states.append({kind: _hand_state(hands, kind, t, gesture, phase, R, wrist, betas[kind])})
            continue
        # Two hands, palms facing each other; they approach, touch mid-sequence and part.
        R_pair = {"right": hand_orientation(0.0, 0.0, 0.0, 0.0)}
        R_pair["left"] = mirror_rotation(R_pair["right"])  # palms face each other across x = 0
        wrist0 = {"right": HAND_CENTRE - R_pair["right"] @ np.array([0.09, 0.0, 0.0])}
        wrist0["left"] = wrist0["right"] * np.array([-1.0, 1.0, 1.0])
        right0 = _hand_state(hands, "right", t, "grab", phase, R_pair["right"], wrist0["right"], betas["right"])
        left0 = _hand_state(hands, "left", t, "wave", phase[::-1], R_pair["left"], wrist0["left"], betas["left"])
        lo, hi = -0.05, 0.15
        for _ in range(30):  # bisection on the half separation along world x for a 1 mm gap
            mid = 0.5 * (lo + hi)
            gap = _min_gap(right0["verts"] + [mid, 0, 0], left0["verts"] - [mid, 0, 0])
            lo, hi = (mid, hi) if gap < 0.001 else (lo, mid)
        touch = float(np.clip(1.0 - abs(t - 0.5) * 3.0, 0.0, 1.0))
        d = hi + 0.035 * (1.0 - touch)
        yaw = yaw0 + yaw_speed * 0.5 * t
        R_yaw = Rotation.from_euler("z", yaw).as_matrix()
        frame = {}
        for side, sign in (("right", 1.0), ("left", -1.0)):
            wrist = wrist0[side] + np.array([sign * d, 0.0, 0.0])
            wrist = R_yaw @ (wrist - HAND_CENTRE) + HAND_CENTRE
            g = "grab" if side == "right" else "wave"
            ph = phase if side == "right" else phase[::-1]
            frame[side] = _hand_state(hands, side, t, g, ph, R_yaw @ R_pair[side], wrist, betas[side])
        states.append(frame)
    return states


def _render_view(hands: _Hands, frame: dict[str, dict], cam: SynthCamera, styles: dict, bg_seed: int,
                 realism: RealismConfig | None = None, noise_rng: np.random.Generator | None = None,
                 response=None):
    """Render one image: (rgb uint8 HxWx3, label HxW uint8 {0,100,200}, z-depth HxW float32).

    The hands are drawn with their ``render_verts`` (the realistic profile's surface) when present; with a
    ``realism`` config the skin gets its specular term and the image the camera ``response`` and sensor noise.
    """
    realism = realism or RealismConfig()
    sides = [s for s in ("right", "left") if s in frame]
    M = cam.world_to_cam
    verts = {s: frame[s].get("render_verts", frame[s]["verts"]) for s in sides}
    meshes = [(transform(M, verts[s]), hands.faces[s]) for s in sides]
    ras = rasterize_meshes(meshes, cam.K, cam.height, cam.width)
    img = background(cam.height, cam.width, bg_seed)
    label = np.zeros((cam.height, cam.width), np.uint8)
    fg = ras.face_id >= 0
    if fg.any():
        face_offsets = np.cumsum([0] + [len(hands.faces[s]) for s in sides])
        vert_offsets = np.cumsum([0] + [len(verts[s]) for s in sides])
        faces_all = np.concatenate([hands.faces[s] + vert_offsets[i] for i, s in enumerate(sides)])
        canon = np.concatenate([hands.template[s] * ([-1.0, 1, 1] if s == "left" else 1.0) for s in sides])
        normals = np.concatenate([vertex_normals(verts[s], hands.faces[s]) for s in sides])
        attr = np.concatenate([canon, normals], axis=1)
        if realism.specular > 0:
            attr = np.concatenate([attr, np.concatenate([verts[s] for s in sides])], axis=1)
        interp = interpolate(ras, attr, faces_all)[fg]
        pix_mesh = ras.mesh_id[fg]
        albedo = np.zeros((fg.sum(), 3))
        for i, s in enumerate(sides):
            sel = pix_mesh == i
            joints = hands.rest_joints21["right"]
            albedo[sel] = skin_color(interp[sel, :3], joints, styles[s])
        n = interp[:, 3:6]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        shade = albedo * lambert(n)[:, None]
        if realism.specular > 0:  # skin's view-dependent highlight (white, as for a dielectric)
            view = cam.campos - interp[:, 6:9]
            view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-12)
            shade = shade + realism.specular * blinn_phong(n, view, realism.shininess)[:, None]
        img[fg] = np.clip(shade, 0.0, 1.0)
        for i, s in enumerate(sides):
            label[fg & (ras.mesh_id == i)] = 200 if s == "right" else 100
        del face_offsets
    if noise_rng is not None or response is not None:
        from handcli.synth.realism import CameraResponse

        rgb = apply_capture(img, response or CameraResponse(), realism, noise_rng or np.random.default_rng(0))
    else:
        rgb = (img * 255.0 + 0.5).astype(np.uint8)
    if cam.mono:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return rgb, label, ras.depth.astype(np.float32)


def _skeleton_lines() -> list[str]:
    names = []
    for side in ("r", "l"):
        for f in ("thumb", "index", "middle", "ring", "pinky"):
            names += [f"{side}_{f}{k}" for k in (4, 3, 2, 1)]
        names.append(f"{side}_wrist")
    lines = ["# joint_name joint_id joint_parent_id"]
    for i, name in enumerate(names):
        base = 21 * (i // 21)
        j = i - base
        if j == 20:
            parent = -1
        elif j % 4 == 3:
            parent = base + 20
        else:
            parent = i + 1
        lines.append(f"{name} {i} {parent}")
    return lines


def _ih42(joints: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Our per-side 21-joint arrays (metres) -> InterHand 42x3 (mm) and validity (42,)."""
    out = np.zeros((42, 3))
    valid = np.zeros(42, dtype=bool)
    for side, off in (("right", 0), ("left", 21)):
        if side in joints:
            idx = np.asarray(IH_TO_21) + off
            out[idx] = joints[side] * 1000.0
            valid[idx] = True
    return out, valid


def write_interhand(root: str | Path, cfg: InterHandSynthConfig) -> Path:
    """Generate a synthetic InterHand2.6M dataset under ``root`` (absent or an empty folder)."""
    root = Path(root)
    rng = np.random.default_rng(cfg.seed)
    real = cfg.realism
    hands = _Hands()
    split = cfg.split
    ann_dir = root / "annotations" / split
    ann_dir.mkdir(parents=True)
    (root / "annotations" / "skeleton.txt").write_text("\n".join(_skeleton_lines()) + "\n")

    data = {"images": [], "annotations": []}
    camera_json, joint_json, mano_json, joints2d = {}, {}, {}, {}
    exact_joint_json, exact_mano_json, offsets_npz, responses = {}, {}, {}, {}
    subjects = []
    image_id = 0
    jobs = []
    for c in range(cfg.captures):
        cams = make_cameras(cfg, rng)
        camera_json[str(c)] = {
            "campos": {cam.cam_id: (cam.campos * 1000.0).tolist() for cam in cams},
            "camrot": {cam.cam_id: cam.R.tolist() for cam in cams},
            "focal": {cam.cam_id: [cam.K[0, 0], cam.K[1, 1]] for cam in cams},
            "princpt": {cam.cam_id: [cam.K[0, 2], cam.K[1, 2]] for cam in cams},
        }
        subject = c + 1
        subjects.append(f"Capture{c} {subject}")
        styles = {"right": subject_style(cfg.seed * 100 + c), "left": subject_style(cfg.seed * 100 + c)}
        betas = {"right": np.clip(rng.normal(0, 0.6, size=10), -1.5, 1.5)}
        betas["left"] = betas["right"].copy()
        joint_json[str(c)], mano_json[str(c)] = {}, {}
        exact_joint_json[str(c)], exact_mano_json[str(c)] = {}, {}
        offsets = {}
        for sd in ("right", "left"):  # the subject's hand detail outside the model (zero when ideal)
            canon = hands.template[sd] * ([-1.0, 1, 1] if sd == "left" else 1.0)
            offsets[sd] = surface_offsets(canon, hands.lbs_weights[sd], real, stream(cfg.seed, "surface", c, sd))
            offsets_npz[f"capture{c}_{sd}"] = offsets[sd].astype(np.float32)
        for cam in cams:
            responses[f"{c}/{cam.cam_id}"] = camera_response(real, cfg.seed, f"{c}/{cam.cam_id}")
        for s, kind in enumerate(cfg.seqs):
            if kind not in SEQ_KINDS:
                raise ValueError(f"unknown sequence kind {kind!r} (use {sorted(SEQ_KINDS)})")
            seq_name = f"{s:04d}_{SEQ_KINDS[kind][0]}"
            start, step = FRAME_STARTS[s % len(FRAME_STARTS)]
            states = sequence_states(hands, kind, cfg.frames, rng, betas)
            black = 1 if (cfg.black_frame and s == 0 and cfg.frames >= 3) else -1
            seq_rng = stream(cfg.seed, "seq-offsets", c, seq_name)
            mano_off = {sd: random_direction(seq_rng) * real.mano_seq_mm / 1000.0 for sd in ("right", "left")}
            joint_off = {sd: random_direction(seq_rng) * real.joint_seq_mm / 1000.0 for sd in ("right", "left")}
            for k, frame in enumerate(states):
                fidx = start + step * k
                hand_type = "interacting" if len(frame) == 2 else next(iter(frame))
                ann = {}  # what the annotation files say: the exact state plus annotation error
                for sd, st in frame.items():
                    st["render_verts"] = displace(st["verts"], hands.faces[sd], offsets[sd])
                    frng = stream(cfg.seed, "annotation", c, seq_name, k, sd)
                    pose, trans = annotated_pose(
                        lambda p, sd=sd, st=st: hands.pose(sd, p, st["betas"], st["trans"])[0], st["pose_abs"],
                        st["trans"], mano_off[sd], real, frng)
                    ann[sd] = {"pose_abs": pose, "betas": st["betas"], "trans": trans,
                               "joints": st["joints"] + joint_noise(frng, 21, real.joint_frame_mm) + joint_off[sd]}
                j42, jvalid = _ih42({sd: a["joints"] for sd, a in ann.items()})
                j42_exact, _ = _ih42({sd: st["joints"] for sd, st in frame.items()})
                for out, joints in ((joint_json, j42), (exact_joint_json, j42_exact)):
                    out[str(c)][str(fidx)] = {
                        "world_coord": joints.tolist(),
                        "joint_valid": [[bool(v)] for v in jvalid],
                        "hand_type": hand_type,
                        "hand_type_valid": True,
                    }
                for out, states_ in ((mano_json, ann), (exact_mano_json, frame)):
                    mano_entry = {}
                    for sd in ("right", "left"):
                        if sd not in states_:
                            mano_entry[sd] = None
                            continue
                        st = states_[sd]
                        rel = st["pose_abs"].copy()
                        rel[3:] -= hands.hands_mean[sd]  # InterHand poses are relative to the mean pose
                        mano_entry[sd] = {"pose": rel.tolist(), "shape": st["betas"].tolist(),
                                          "trans": st["trans"].tolist()}
                    if cfg.null_mano and kind == "interacting" and k == min(2, cfg.frames - 1):
                        mano_entry["left"] = None
                    out[str(c)][str(fidx)] = mano_entry
                for cam in cams:
                    file_name = f"Capture{c}/{seq_name}/cam{cam.cam_id}/image{fidx:04d}.jpg"
                    data["images"].append({
                        "id": image_id, "file_name": file_name, "width": cam.width, "height": cam.height,
                        "capture": c, "subject": subject, "seq_name": seq_name, "camera": cam.cam_id,
                        "frame_idx": fidx,
                    })
                    uv = project(transform(cam.world_to_cam, j42 / 1000.0), cam.K)
                    vis = uv[jvalid]
                    x0, y0 = vis.min(0) - 20
                    x1, y1 = vis.max(0) + 20
                    data["annotations"].append({
                        "id": image_id, "image_id": image_id, "bbox": [float(x0), float(y0), float(x1 - x0),
                                                                       float(y1 - y0)],
                        "joint_valid": [[int(v)] for v in jvalid], "hand_type": hand_type,
                        "hand_type_valid": 1,
                    })
                    uv_exact = project(transform(cam.world_to_cam, j42_exact / 1000.0), cam.K)
                    joints2d[str(image_id)] = np.where(jvalid[:, None], uv_exact, np.nan).tolist()
                    jobs.append((file_name, frame, cam, styles, image_id, k == black, c))
                    image_id += 1

    img_root = root / "images" / split
    gt_root = root / "handcli_gt" / split
    with progress() as bar:
        task = bar.add_task("synth interhand", total=len(jobs))
        for file_name, frame, cam, styles, iid, is_black, c in jobs:
            capture = real.capture_effects
            rgb, label, depth = _render_view(hands, frame, cam, styles, bg_seed=cfg.seed * 7919 + iid, realism=real,
                                             noise_rng=stream(cfg.seed, "sensor", iid) if capture else None,
                                             response=responses[f"{c}/{cam.cam_id}"] if capture else None)
            if is_black:  # a failed capture: nothing was seen, so the ground truth is empty too
                rgb[:] = 0
                label[:] = 0
                depth[:] = 0
            path = img_root / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, real.jpeg_quality or cfg.jpeg_quality])
            if not ok:
                raise OSError(f"could not write {path}")
            gt_dir = gt_root / Path(file_name).parent
            gt_dir.mkdir(parents=True, exist_ok=True)
            stem = Path(file_name).stem.replace("image", "")
            cv2.imwrite(str(gt_dir / f"mask{stem}.png"), label)
            np.save(gt_dir / f"depth{stem}.npy", depth)
            bar.advance(task)

    def dump(obj, path):
        with open(path, "w") as f:
            json.dump(obj, f)

    dump(data, ann_dir / f"InterHand2.6M_{split}_data.json")
    dump(camera_json, ann_dir / f"InterHand2.6M_{split}_camera.json")
    dump(joint_json, ann_dir / f"InterHand2.6M_{split}_joint_3d.json")
    dump(mano_json, ann_dir / f"InterHand2.6M_{split}_MANO_NeuralAnnot.json")
    (root / "annotations" / "subject.txt").write_text("# capture subject_id\n" + "\n".join(subjects) + "\n")
    dump(joints2d, root / "handcli_gt" / "joints2d.json")
    # the exact values the images were rendered from, in the annotation files' own format
    dump(exact_joint_json, root / "handcli_gt" / f"InterHand2.6M_{split}_joint_3d.json")
    dump(exact_mano_json, root / "handcli_gt" / f"InterHand2.6M_{split}_MANO_NeuralAnnot.json")
    np.savez_compressed(root / "handcli_gt" / "surface_offsets.npz", **offsets_npz)
    meta = {"schema": "handcli.synth/1", "dataset": "interhand2.6m", "config": asdict(cfg),
            "mano_model": cfg.mano_model, "flat_hand_mean": False, "profile": real.profile,
            "camera_response": {k: v.as_dict() for k, v in responses.items()},
            "note": ("MANO parameters drive the open hand model; ground truth in handcli_gt/"
                     + ("" if real.profile == "ideal" else
                        " (annotations carry the realistic profile's error: exact values in handcli_gt/)"))}
    dump(meta, root / "handcli_synth.json")
    return root


EXACT_ANNOTATIONS = ("joint_3d", "MANO_NeuralAnnot")  # annotation files whose exact values handcli_gt/ holds


def exact_annotation_copy(root: str | Path, dst: str | Path) -> Path:
    """A copy of the synthetic InterHand set ``root`` at ``dst`` whose annotation files are the ground-truth sidecar's
    exact ones (``handcli_gt/``): preprocessed, it gives the exact joints and hand models in the cache's own
    conventions, to measure annotation error and its refinement against. Other files are linked, not copied."""
    root, dst = Path(root), Path(dst)
    exact = {f.name: f for name in EXACT_ANNOTATIONS
             for f in (root / "handcli_gt").glob(f"InterHand2.6M_*_{name}.json")}
    if not exact:
        raise InputError("no exact annotations (not a handcli synthetic InterHand set?)", path=root / "handcli_gt",
                         field="InterHand2.6M_*_joint_3d.json")

    def link_or_copy(src: str, out: str) -> None:
        if Path(src).name in exact:
            shutil.copy(exact[Path(src).name], out)
        else:
            Path(out).symlink_to(Path(src).resolve())

    shutil.copytree(root / "annotations", dst / "annotations", copy_function=link_or_copy)
    for entry in root.iterdir():
        if entry.name != "annotations":
            (dst / entry.name).symlink_to(entry.resolve())
    return dst
