"""DexYCB reader (docs/formats.md#dexycb).

Reads the real layout exactly::

    ROOT/{date}-subject-{XX}/{YYYYMMDD_HHMMSS}/meta.yml
    ROOT/{subject}/{sequence}/{serial}/color_{f:06d}.jpg, aligned_depth_to_color_{f:06d}.png, labels_{f:06d}.npz
    ROOT/calibration/intrinsics/{serial}_640x480.yml          (color/depth blocks, !!python/tuple extrinsics)
    ROOT/calibration/extrinsics_{id}/extrinsics.yml            (3x4 camera->world per serial, metres)
    ROOT/calibration/mano_{calib}/mano.yml                     (betas)
    ROOT/models/{ycb_name}/textured_simple.obj, points.xyz

The world is the calibration's world (the master camera's frame); ``world_to_cam`` is the inverse of the
camera->world extrinsics, ``[R^T | -R^T t]``. Labels (``seg``, ``pose_y``, ``pose_m``, ``joint_3d``) are per
camera and in that camera's frame; the preprocessor moves them to the world. Sequences and annotation files
are only listed here; per-frame files are read by the preprocessing workers.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handcli.camera import intrinsics
from handcli.checks import read_image_file
from handcli.data.objects import YCB_CLASSES
from handcli.errors import InputError

SUBJECTS = [
    "20200709-subject-01", "20200813-subject-02", "20200820-subject-03", "20200903-subject-04",
    "20200908-subject-05", "20200918-subject-06", "20200928-subject-07", "20201002-subject-08",
    "20201015-subject-09", "20201022-subject-10",
]
SERIALS = ["836212060125", "839512060362", "840412060917", "841412060263", "932122060857", "932122060861",
           "932122061900", "932122062010"]
INPUT_SERIAL = "836212060125"  # HandNeRF (Choi)'s single input view
WIDTH, HEIGHT = 640, 480
HAND_SEG = 255
SPLITS = ("s0_train", "s0_val", "s0_test")
_SEQ_RE = re.compile(r"^\d{8}_\d{6}$")
_SUBJECT_RE = re.compile(r"subject-(\d+)$")


# ------------------------------------------------------------------------------------------------- YAML
def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader plus the ``!!python/tuple`` tag of DexYCB's intrinsics files (read as a list)."""

    def _tuple(loader, node):
        return list(loader.construct_sequence(node))

    Loader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)
    return Loader


def load_yaml(path: str | Path, what: str = "calibration file"):
    """Parse a DexYCB YAML file safely (``!!python/tuple`` supported); errors name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what}", path=path)
    try:
        with open(path, "rb") as f:
            data = yaml.load(f, Loader=_yaml_loader())  # safe: a SafeLoader subclass (+ python/tuple only)
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML ({str(e).splitlines()[0]})", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a YAML mapping", path=path)
    return data


def _key(d: dict, key: str, path: Path, fld: str | None = None):
    if not isinstance(d, dict) or key not in d:
        raise InputError("missing key", path=path, field=fld or key)
    return d[key]


def _floats(value, n: int, path: Path, fld: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"expected {n} numbers", path=path, field=fld) from None
    if a.size != n:
        raise InputError(f"expected {n} numbers, found {a.size}", path=path, field=fld)
    if not np.isfinite(a).all():
        raise InputError("contains NaN or Inf", path=path, field=fld)
    return a


def cam_to_world_3x4(values, path: Path, fld: str) -> np.ndarray:
    """12 row-major floats ``[R | t]`` (camera->world) -> (4, 4)."""
    a = _floats(values, 12, path, fld).reshape(3, 4)
    M = np.eye(4)
    M[:3] = a
    return M


def invert_rigid(M: np.ndarray) -> np.ndarray:
    """(4, 4) ``[R | t]`` -> ``[R^T | -R^T t]`` (the spec's world->camera for a camera->world matrix)."""
    R, t = M[:3, :3], M[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


# ------------------------------------------------------------------------------------------------- records
@dataclass
class DexCamera:
    serial: str
    K: np.ndarray  # (3, 3) colour intrinsics at 640x480
    cam_to_world: np.ndarray  # (4, 4) metres
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def world_to_cam(self) -> np.ndarray:
        return invert_rigid(self.cam_to_world)


@dataclass
class DexSequence:
    subject: str
    name: str
    path: Path
    meta_path: Path
    serials: list[str]
    num_frames: int
    extrinsics: str
    ycb_ids: list[int]
    ycb_grasp_ind: int
    mano_side: str
    mano_calib: str
    betas: np.ndarray  # (10,)
    subject_index: int  # 0-based subject number (subject-01 -> 0)
    seq_index: int  # position among the subject's sequences sorted by name
    split: str  # s0_train / s0_val / s0_test

    @property
    def grasp_id(self) -> int:
        return int(self.ycb_ids[self.ycb_grasp_ind])

    @property
    def grasp_name(self) -> str:
        return YCB_CLASSES[self.grasp_id]

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.name}"


@dataclass
class DexView:
    serial: str
    color: Path
    label: Path
    depth: Path


@dataclass
class DexFrame:
    seq: DexSequence
    frame: int
    views: list[DexView] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.seq.subject}/{self.seq.name}/{self.frame}"


def s0_split(subject_index: int, seq_index: int) -> str:
    """DexYCB's s0 rule (dex_ycb.py): i % 5 != 4 -> train; i % 5 == 4 -> val (subjects 0, 1) or test (2-9)."""
    if seq_index % 5 != 4:
        return "s0_train"
    return "s0_val" if subject_index in (0, 1) else "s0_test"


def subject_index(name: str, fallback: int) -> int:
    """``20200709-subject-01`` -> 0; names without ``subject-NN`` use ``fallback`` (sorted position)."""
    m = _SUBJECT_RE.search(name)
    return int(m.group(1)) - 1 if m else fallback


# ------------------------------------------------------------------------------------------------- labels
LABEL_KEYS = ("seg", "pose_y", "pose_m", "joint_3d")


def read_label(path: str | Path, num_objects: int) -> dict[str, np.ndarray]:
    """One ``labels_{f:06d}.npz``, validated: seg (480, 640) uint8, pose_y (num_obj, 3, 4) object->camera,
    pose_m (1, 51), joint_3d (1, 21, 3) camera metres (-1 when absent). NaN/Inf is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("missing label file", path=path)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in LABEL_KEYS:
                if k not in z.files:
                    raise InputError("missing key", path=path, field=k)
                out[k] = z[k]
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(f"malformed or truncated npz ({type(e).__name__}: {e})", path=path) from None
    seg = out["seg"]
    if seg.ndim != 2 or seg.dtype != np.uint8:
        raise InputError(f"expected a (H, W) uint8 map, got {seg.shape} {seg.dtype}", path=path, field="seg")
    shapes = {"pose_y": (num_objects, 3, 4), "pose_m": (1, 51), "joint_3d": (1, 21, 3)}
    for k, shape in shapes.items():
        a = out[k]
        if a.shape != shape:
            raise InputError(f"expected shape {shape}, got {a.shape}", path=path, field=k)
        if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
            raise InputError("contains NaN or Inf" if np.issubdtype(a.dtype, np.floating) else
                             f"expected floats, got {a.dtype}", path=path, field=k)
        out[k] = a.astype(np.float64)
    return out


def has_hand(label: dict[str, np.ndarray]) -> bool:
    """DexYCB marks a frame without hand annotation with pose_m all zeros."""
    return bool(np.any(label["pose_m"] != 0.0))


def seg_to_labels(seg: np.ndarray, grasp_id: int, side: str) -> np.ndarray:
    """DexYCB ``seg`` -> handcli labels: the grasped object's id -> 3, 255 -> the hand (1 right, 2 left);
    every other object and the background -> 0 (as HandNeRF, Choi)."""
    out = np.zeros(seg.shape, np.uint8)
    out[seg == grasp_id] = 3
    out[seg == HAND_SEG] = 1 if side == "right" else 2
    return out


def read_depth_png(path: str | Path) -> np.ndarray | None:
    """``aligned_depth_to_color_*.png`` (uint16 millimetres) -> (H, W) float32 metres; None if absent."""
    import cv2

    path = Path(path)
    if not path.is_file():
        return None
    d = read_image_file(path, cv2.IMREAD_UNCHANGED, "depth image")
    if d.ndim != 2:
        raise InputError("depth image does not decode as a single-channel PNG", path=path)
    return d.astype(np.float32) / 1000.0


# ------------------------------------------------------------------------------------------------- reader
class DexYCBReader:
    """Sequences, calibration and frame lists of a DexYCB root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError("dataset root not found", path=self.root)
        self.calib = self.root / "calibration"
        if not self.calib.is_dir():
            raise InputError("missing calibration folder", path=self.calib)
        self.models = self.root / "models"
        self._intr: dict[str, np.ndarray] = {}
        self._extr: dict[str, dict[str, np.ndarray]] = {}
        self._betas: dict[str, np.ndarray] = {}
        self.masters: dict[str, str] = {}
        self.files_read: set[str] = set()

    # calibration ----------------------------------------------------------------------------------
    def intrinsics_path(self, serial: str) -> Path:
        return self.calib / "intrinsics" / f"{serial}_{WIDTH}x{HEIGHT}.yml"

    def intrinsics(self, serial: str) -> np.ndarray:
        """(3, 3) colour intrinsics of ``serial`` (the ``color`` block)."""
        if serial not in self._intr:
            p = self.intrinsics_path(serial)
            d = load_yaml(p, "intrinsics file")
            c = _key(d, "color", p)
            vals = [_floats(_key(c, k, p, f"color/{k}"), 1, p, f"color/{k}")[0] for k in ("fx", "fy", "ppx", "ppy")]
            self._intr[serial] = intrinsics(*vals)
            self.files_read.add(str(p))
        return self._intr[serial]

    def extrinsics_path(self, ext_id: str) -> Path:
        return self.calib / f"extrinsics_{ext_id}" / "extrinsics.yml"

    def extrinsics(self, ext_id: str) -> dict[str, np.ndarray]:
        """serial (and ``apriltag``) -> (4, 4) camera->world, plus ``master`` under key ``"master"``."""
        if ext_id not in self._extr:
            p = self.extrinsics_path(ext_id)
            d = load_yaml(p, "extrinsics file")
            T = _key(d, "extrinsics", p)
            if not isinstance(T, dict):
                raise InputError("expected a mapping serial -> 12 numbers", path=p, field="extrinsics")
            out = {str(k): cam_to_world_3x4(v, p, f"extrinsics/{k}") for k, v in T.items()}
            self._extr[ext_id] = out
            self.masters[ext_id] = str(_key(d, "master", p))
            self.files_read.add(str(p))
        return self._extr[ext_id]

    def camera(self, serial: str, ext_id: str, meta_path: Path | None = None) -> DexCamera:
        """Camera ``serial`` under extrinsics ``ext_id``; ``meta_path`` names the meta.yml that listed it."""
        if meta_path is not None and not self.intrinsics_path(serial).is_file():
            raise InputError(f"no intrinsics file {self.intrinsics_path(serial)}", path=meta_path,
                             field=f"serials/{serial}")
        ext = self.extrinsics(ext_id)
        if serial not in ext:
            raise InputError("serial has no extrinsics", path=self.extrinsics_path(ext_id),
                             field=f"extrinsics/{serial}")
        return DexCamera(serial, self.intrinsics(serial), ext[serial])

    def betas(self, calib: str) -> np.ndarray:
        if calib not in self._betas:
            p = self.calib / f"mano_{calib}" / "mano.yml"
            d = load_yaml(p, "MANO calibration file")
            self._betas[calib] = _floats(_key(d, "betas", p), 10, p, "betas")
            self.files_read.add(str(p))
        return self._betas[calib]

    # sequences ------------------------------------------------------------------------------------
    def subjects(self) -> list[str]:
        subs = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _SUBJECT_RE.search(p.name))
        if not subs:
            raise InputError("no subject folders (expected e.g. 20200709-subject-01/)", path=self.root)
        return subs

    def sequence_names(self, subject: str) -> list[str]:
        """A subject's sequence folders sorted by name (the real data has 100; the loader's index i runs over
        this list; fewer are accepted here)."""
        d = self.root / subject
        return sorted(p.name for p in d.iterdir() if p.is_dir() and _SEQ_RE.match(p.name))

    def sequence(self, subject: str, name: str, subject_idx: int, seq_idx: int) -> DexSequence:
        path = self.root / subject / name
        mp = path / "meta.yml"
        meta = load_yaml(mp, "sequence meta file")
        serials = _key(meta, "serials", mp)
        if not isinstance(serials, list) or not serials:
            raise InputError("expected a list of camera serials", path=mp, field="serials")
        serials = [str(s) for s in serials]
        num_frames = _key(meta, "num_frames", mp)
        if not isinstance(num_frames, int) or num_frames < 0:
            raise InputError("expected a non-negative integer", path=mp, field="num_frames")
        ycb_ids = _key(meta, "ycb_ids", mp)
        if not isinstance(ycb_ids, list) or not all(isinstance(i, int) and i in YCB_CLASSES for i in ycb_ids):
            raise InputError("expected a list of YCB class ids 1-21", path=mp, field="ycb_ids")
        grasp = _key(meta, "ycb_grasp_ind", mp)
        if not isinstance(grasp, int) or not 0 <= grasp < len(ycb_ids):
            raise InputError(f"expected an index into ycb_ids (0..{len(ycb_ids) - 1})", path=mp,
                             field="ycb_grasp_ind")
        sides = _key(meta, "mano_sides", mp)
        if not isinstance(sides, list) or len(sides) != 1 or sides[0] not in ("right", "left"):
            raise InputError("expected one of ['right'] or ['left']", path=mp, field="mano_sides")
        calib = _key(meta, "mano_calib", mp)
        if not isinstance(calib, list) or len(calib) != 1:
            raise InputError("expected one MANO calibration id", path=mp, field="mano_calib")
        ext_id = str(_key(meta, "extrinsics", mp))
        for s in serials:  # every serial needs calibration: checked before any work
            self.camera(s, ext_id, mp)
        return DexSequence(subject, name, path, mp, serials, num_frames, ext_id, list(ycb_ids), grasp, sides[0],
                           str(calib[0]), self.betas(str(calib[0])), subject_idx, seq_idx,
                           s0_split(subject_idx, seq_idx))

    def frames(self, split: str | None = None, seqs: set[str] | None = None, cameras: list[str] | None = None,
               frames: set[int] | None = None, every: int = 1, objects: set[int] | None = None) -> list[DexFrame]:
        """Frames matching the selection, sorted by (subject, sequence, frame); views in meta.yml serial order.

        ``split``: s0_train / s0_val / s0_test; ``seqs``: sequence names or ``subject/sequence``;
        ``cameras``: serials; ``every``: keep frames with index % every == 0 (HandNeRF, Choi uses 2);
        ``objects``: grasped YCB ids.
        """
        if split is not None and split not in SPLITS:
            raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", field="split")
        out = []
        for si, subject in enumerate(self.subjects()):
            sidx = subject_index(subject, si)
            for qi, name in enumerate(self.sequence_names(subject)):
                if seqs is not None and name not in seqs and f"{subject}/{name}" not in seqs:
                    continue
                if split is not None and s0_split(sidx, qi) != split:
                    continue
                seq = self.sequence(subject, name, sidx, qi)
                if objects is not None and seq.grasp_id not in objects:
                    continue
                serials = [s for s in seq.serials if cameras is None or s in cameras]
                for f in range(0, seq.num_frames):
                    if f % every or (frames is not None and f not in frames):
                        continue
                    fr = DexFrame(seq, f)
                    for s in serials:
                        d = seq.path / s
                        fr.views.append(DexView(s, d / f"color_{f:06d}.jpg", d / f"labels_{f:06d}.npz",
                                                d / f"aligned_depth_to_color_{f:06d}.png"))
                    if fr.views:
                        out.append(fr)
        return out
