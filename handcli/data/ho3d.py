"""HO-3D v3 reader (docs/formats.md#ho3d).

Reads the real layout exactly::

    ROOT/{train,evaluation}/{SEQ}/rgb/{id:04d}.jpg, depth/{id:04d}.png, meta/{id:04d}.pkl, seg/{id:04d}.png
    ROOT/train.txt, evaluation.txt                               lines "SEQ/0000" (annotated frames)
    ROOT/calibration/{BASE}/calibration/cam_orders.txt, trans_{i}.txt, cam_{i}_intrinsics.txt

Annotations are python-2 pickles (``encoding='latin1'``) in the **OpenGL** camera frame (hand and object
at negative z). ``C = diag(1, -1, -1)`` takes a point to OpenCV: ``X_cv = C X_gl``. The camera sequences
``BASE + k`` of a multi-camera base share a reference frame: ``trans_i`` (i = position of k in
cam_orders.txt) maps OpenCV camera-i points to it (the official ``vis_pcl_all_cameras.py`` applies it to
OpenCV point clouds; HandNeRF (Choi) uses it as camera->world). That reference frame is the world of a
multi-camera group; a single-camera sequence's world is its camera's OpenCV frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handcli import safe_pickle
from handcli.camera import intrinsics, project
from handcli.checks import check_size, read_image_file
from handcli.errors import InputError
from handcli.hand.skeleton import HO3D_TO_21

GL_TO_CV = np.diag([1.0, -1.0, -1.0])
DEPTH_SCALE = 0.00012498664727900177  # metres per unit of the 16-bit (R + 256 G) depth code
WIDTH, HEIGHT = 640, 480
MULTI_CAMERA_BASES = ("ABF1", "BB1", "GPMF1", "GSF1", "MDF1", "SB1", "ShSu1", "SiBF1", "SMu4", "MPM1", "AP1")
INPUT_CAMERA_SUFFIX = "10"  # HandNeRF (Choi)'s input camera: the sequence ending in "10" (e.g. ABF10)
SPLITS = ("train", "evaluation")
HAND_KEYS = ("handPose", "handBeta", "handTrans", "handJoints3D")
OBJECT_KEYS = ("objRot", "objTrans", "objName")
_ID_RE = re.compile(r"^(\d+)\.(jpg|png)$")


# ------------------------------------------------------------------------------------------------- files
def load_pickle(path: str | Path) -> dict:
    """A HO-3D meta pickle (python 2, ``encoding='latin1'``) as a dict; errors name the file.

    Read with the restricted unpickler: a meta holding anything but plain data and numpy arrays is refused."""
    path = Path(path)
    if not path.is_file():
        raise InputError("missing annotation file", path=path)
    data = safe_pickle.load_pickle(path, "pickle")
    if not isinstance(data, dict):
        raise InputError(f"expected a dict, found {type(data).__name__}", path=path)
    return data


def read_intrinsics_txt(path: str | Path) -> np.ndarray:
    """``cam_{i}_intrinsics.txt``: one line ``fx:…, fy:…, ppx:…, ppy:…`` -> (3, 3)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("missing camera intrinsics file", path=path)
    vals = {}
    for item in path.read_text(errors="replace").strip().split(","):
        if ":" in item:
            k, v = item.split(":", 1)
            vals[k.strip()] = v.strip()
    out = []
    for k in ("fx", "fy", "ppx", "ppy"):
        if k not in vals:
            raise InputError("missing key", path=path, field=k)
        try:
            x = float(vals[k])
        except ValueError:
            raise InputError(f"expected a number, found {vals[k]!r}", path=path, field=k) from None
        if not np.isfinite(x):
            raise InputError("NaN or Inf", path=path, field=k)
        out.append(x)
    return intrinsics(*out)


def read_matrix_txt(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """A whitespace-separated matrix file (``np.loadtxt``) of the given shape, finite."""
    path = Path(path)
    if not path.is_file():
        raise InputError("missing calibration file", path=path)
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise InputError(f"malformed numbers ({e})", path=path) from None
    if a.size != int(np.prod(shape)):
        raise InputError(f"expected {int(np.prod(shape))} numbers, found {a.size}", path=path)
    a = a.reshape(shape)
    if not np.isfinite(a).all():
        raise InputError("contains NaN or Inf", path=path)
    return a


def read_cam_orders(path: Path) -> list[int]:
    """``cam_orders.txt``: entry i is the camera number k of ``trans_i`` / ``cam_i_intrinsics``."""
    if not path.is_file():
        raise InputError("missing calibration file", path=path)
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=1).reshape(-1)
    except ValueError as e:
        raise InputError(f"malformed numbers ({e})", path=path) from None
    if a.size == 0 or not np.all(a == np.round(a)) or np.any(a < 0) or len(set(a.tolist())) != a.size:
        raise InputError("expected distinct non-negative camera numbers", path=path)
    return [int(x) for x in a]


def decode_depth(img_bgr: np.ndarray) -> np.ndarray:
    """HO-3D 3-channel depth PNG (cv2 BGR) -> (H, W) float32 metres: (R + 256 G) * DEPTH_SCALE."""
    code = img_bgr[:, :, 2].astype(np.float64) + 256.0 * img_bgr[:, :, 1].astype(np.float64)
    return (code * DEPTH_SCALE).astype(np.float32)


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Inverse of ``decode_depth``: (H, W) metres -> (H, W, 3) uint8 BGR (B = 0, G = MSB, R = LSB)."""
    code = np.clip(np.round(np.asarray(depth_m, np.float64) / DEPTH_SCALE), 0, 65535).astype(np.int64)
    out = np.zeros(code.shape + (3,), np.uint8)
    out[:, :, 1] = code // 256
    out[:, :, 2] = code % 256
    return out


def read_depth(path: str | Path) -> np.ndarray | None:
    import cv2

    path = Path(path)
    if not path.is_file():
        return None
    return decode_depth(read_image_file(path, cv2.IMREAD_COLOR, "depth image"))


def read_seg(path: str | Path, height: int = HEIGHT, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray] | None:
    """``seg/{id}.png`` -> (hand, object) boolean masks at (height, width); None if the file is absent.

    Hand = channel 0 (blue in cv2's BGR) == 255, object = channel 1 (green) == 255 (HandNeRF, Choi's
    ``load_seg``). v3 masks are stored at 320x240: resized with nearest neighbour, as Choi does.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        return None
    seg = read_image_file(path, cv2.IMREAD_COLOR, "segmentation image")
    # v3 stores masks at half resolution; any other size does not belong to this image
    check_size(seg, height, width, path, "segmentation image", allowed=((height // 2, width // 2),))
    if seg.shape[:2] != (height, width):
        seg = cv2.resize(seg, (width, height), interpolation=cv2.INTER_NEAREST)
    return seg[:, :, 0] == 255, seg[:, :, 1] == 255


def seg_to_labels(hand: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """HO-3D masks -> handcli labels: 1 right hand (all HO-3D hands are right), 3 object, 0 background.
    A pixel marked as both is given to the hand."""
    out = np.zeros(hand.shape, np.uint8)
    out[obj] = 3
    out[hand] = 1
    return out


# ------------------------------------------------------------------------------------------------- annotations
@dataclass
class HO3DMeta:
    """One frame's annotation, as stored (OpenGL camera frame, metres). Hand fields None when unannotated."""

    path: Path
    hand_pose: np.ndarray | None  # (48,) axis-angle, flat_hand_mean=True, global orient first
    betas: np.ndarray | None  # (10,)
    trans: np.ndarray | None  # (3,)
    joints_gl: np.ndarray | None  # (21, 3) handcli order, OpenGL camera frame
    obj_rot: np.ndarray | None  # (3,) axis-angle
    obj_trans: np.ndarray | None  # (3,)
    obj_name: str | None
    obj_label: int | None
    K: np.ndarray | None  # (3, 3) camMat

    @property
    def has_hand(self) -> bool:
        return self.hand_pose is not None

    @property
    def has_object(self) -> bool:
        return self.obj_rot is not None and self.obj_name is not None


def _arr(d: dict, key: str, shapes: tuple[tuple[int, ...], ...], path: Path) -> np.ndarray | None:
    v = d.get(key)
    if v is None:
        return None
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("expected numbers", path=path, field=key) from None
    if a.shape not in shapes:
        raise InputError(f"expected shape {' or '.join(map(str, shapes))}, got {a.shape}", path=path, field=key)
    if not np.isfinite(a).all():
        raise InputError("contains NaN or Inf", path=path, field=key)
    return a


def read_meta(path: str | Path) -> HO3DMeta:
    """Parse ``meta/{id:04d}.pkl``; the hand is None when any hand field is None (unannotated frames), and a
    root-only ``handJoints3D`` (evaluation split) leaves the hand unannotated too."""
    path = Path(path)
    d = load_pickle(path)
    pose = _arr(d, "handPose", ((48,),), path)
    betas = _arr(d, "handBeta", ((10,),), path)
    trans = _arr(d, "handTrans", ((3,), (3, 1), (1, 3)), path)
    joints = _arr(d, "handJoints3D", ((21, 3), (3,), (1, 3)), path)
    hand_ok = all(x is not None for x in (pose, betas, trans, joints)) and joints.shape == (21, 3)
    rot = _arr(d, "objRot", ((3,), (3, 1), (1, 3)), path)
    otrans = _arr(d, "objTrans", ((3,), (3, 1), (1, 3)), path)
    name = d.get("objName")
    if name is not None and not isinstance(name, str):
        name = name.decode("latin1") if isinstance(name, bytes) else None
        if name is None:
            raise InputError("expected a YCB model name", path=path, field="objName")
    K = _arr(d, "camMat", ((3, 3),), path)
    label = d.get("objLabel")
    obj_ok = rot is not None and otrans is not None
    return HO3DMeta(
        path,
        pose if hand_ok else None, betas if hand_ok else None, trans.reshape(3) if hand_ok else None,
        joints[HO3D_TO_21] if hand_ok else None,
        rot.reshape(3) if obj_ok else None, otrans.reshape(3) if obj_ok else None, name,
        int(np.asarray(label).reshape(-1)[0]) if label is not None else None, K,
    )


def project_gl(K: np.ndarray, pts_gl: np.ndarray) -> np.ndarray:
    """The official ``project_3D_points(camMat, pts3D, is_OpenGL_coords=True)``: (N, 3) -> (N, 2)."""
    return project(np.asarray(pts_gl, dtype=np.float64) @ GL_TO_CV.T, K)


# ------------------------------------------------------------------------------------------------- reader
@dataclass
class HOCamera:
    name: str  # the camera's sequence folder, e.g. "ABF10"
    K: np.ndarray | None  # (3, 3); None: take camMat from each frame's meta (single-camera sequences)
    cam_to_world: np.ndarray  # (4, 4) OpenCV camera -> world
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def world_to_cam(self) -> np.ndarray:
        return np.linalg.inv(self.cam_to_world)


@dataclass
class HOView:
    seq: str
    camera: HOCamera
    rgb: Path
    meta: Path
    seg: Path
    depth: Path


@dataclass
class HOFrame:
    split: str
    group: str  # multi-camera base (e.g. "ABF1") or the single sequence's name
    frame: int
    multi: bool
    views: list[HOView] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.split}/{self.group}/{self.frame:04d}"


def parse_list_file(path: Path) -> set[tuple[str, int]]:
    """``train.txt`` / ``evaluation.txt``: lines ``SEQ/0000`` -> {(SEQ, 0)}."""
    out = set()
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        seq, _, fid = line.partition("/")
        if not fid.isdigit():
            raise InputError(f"line {n}: expected 'SEQ/0000', found {line!r}", path=path)
        out.add((seq, int(fid)))
    return out


class HO3DReader:
    """Sequences, calibration and frame lists of one split of a HO-3D v3 root."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; expected train or evaluation", field="split")
        self.split = split
        self.split_dir = self.root / split
        if not self.split_dir.is_dir():
            raise InputError("split folder not found", path=self.split_dir)
        self.list_file = self.root / f"{split}.txt"
        self._calib: dict[str, dict[int, HOCamera] | None] = {}
        self.files_read: set[str] = set()

    def sequences(self) -> list[str]:
        return sorted(p.name for p in self.split_dir.iterdir() if p.is_dir() and (p / "rgb").is_dir())

    def calibration(self, base: str) -> dict[int, HOCamera] | None:
        """Camera k of a multi-camera base -> its HOCamera (K, camera->reference); None if not calibrated."""
        if base not in self._calib:
            cdir = self.root / "calibration" / base / "calibration"
            if not cdir.is_dir():
                self._calib[base] = None
                return None
            order_path = cdir / "cam_orders.txt"
            cams = {}
            for i, k in enumerate(read_cam_orders(order_path)):
                K = read_intrinsics_txt(cdir / f"cam_{i}_intrinsics.txt")
                T = read_matrix_txt(cdir / f"trans_{i}.txt", (4, 4))
                if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3),
                                                                           atol=1e-4):
                    raise InputError("expected a rigid 4x4 camera->reference matrix", path=cdir / f"trans_{i}.txt")
                cams[int(k)] = HOCamera(f"{base}{k}", K, T)
                self.files_read.update({str(cdir / f"cam_{i}_intrinsics.txt"), str(cdir / f"trans_{i}.txt")})
            self.files_read.add(str(order_path))
            self._calib[base] = cams
        return self._calib[base]

    def group_of(self, seq: str) -> tuple[str, HOCamera, bool]:
        """(group, camera, multi) of a sequence folder: ``BASE + k`` of a calibrated base, or itself."""
        if len(seq) > 1 and seq[-1].isdigit():
            cams = self.calibration(seq[:-1])
            if cams is not None:
                k = int(seq[-1])
                if k not in cams:
                    raise InputError(f"camera {k} of {seq} is not in cam_orders.txt",
                                     path=self.root / "calibration" / seq[:-1] / "calibration" / "cam_orders.txt")
                return seq[:-1], cams[k], True
        return seq, HOCamera(seq, None, np.eye(4)), False

    @staticmethod
    def _images(rgb: Path, frames: set[int] | None) -> list[Path]:
        """A sequence's colour images: with a frame selection only those names are looked up (the real
        layout's ``0000.jpg``), without one the folder is listed."""
        if frames is None:
            return sorted(rgb.iterdir())
        out = []
        for fid in sorted(frames):
            for ext in ("jpg", "png"):
                p = rgb / f"{fid:04d}.{ext}"
                if p.is_file():
                    out.append(p)
                    break
        return out

    def frames(self, seqs: set[str] | None = None, cameras: set[str] | None = None, frames: set[int] | None = None,
               every: int = 1, listed_only: bool = False) -> list[HOFrame]:
        """Frames (one per group and frame id, with a view per camera sequence that has the image), sorted by
        (group, id). ``seqs``: group or sequence names; ``cameras``: sequence folder names; ``every``: ids with
        id % every == 0; ``listed_only``: only frames listed in ``{split}.txt``."""
        listed = None
        if listed_only:
            if not self.list_file.is_file():
                raise InputError("missing frame list", path=self.list_file)
            listed = parse_list_file(self.list_file)
            self.files_read.add(str(self.list_file))
        grouped: dict[tuple[str, int], HOFrame] = {}
        for seq in self.sequences():
            # a sequence's group is itself or seq[:-1]: unselected sequences are skipped before their
            # calibration is read
            if seqs is not None and seq not in seqs and seq[:-1] not in seqs:
                continue
            if cameras is not None and seq not in cameras:
                continue
            group, cam, multi = self.group_of(seq)
            if seqs is not None and seq not in seqs and group not in seqs:
                continue
            d = self.split_dir / seq
            for p in self._images(d / "rgb", frames):
                m = _ID_RE.match(p.name)
                if not m:
                    continue
                fid = int(m.group(1))
                if fid % every or (frames is not None and fid not in frames):
                    continue
                if listed is not None and (seq, fid) not in listed:
                    continue
                stem = p.name[:-4]
                fr = grouped.setdefault((group, fid), HOFrame(self.split, group, fid, multi))
                fr.views.append(HOView(seq, cam, p, d / "meta" / f"{stem}.pkl", d / "seg" / f"{stem}.png",
                                       d / "depth" / f"{stem}.png"))
        return [grouped[k] for k in sorted(grouped)]
