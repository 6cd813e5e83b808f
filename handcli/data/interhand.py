"""InterHand2.6M v1.0 reader (docs/formats.md#interhand26m).

Reads the real layout exactly: per-split COCO-style ``data.json`` (per-image records), the
per-capture cameras (campos in mm, camrot world->camera), world joints in mm (42 joints,
tips first, wrist last) and NeuralAnnot MANO parameters (trans in metres, poses relative
to the MANO mean pose). Everything is converted to handcli's conventions here: metres,
OpenCV world->camera 4x4 matrices, 21 joints per hand wrist-first.

The annotation JSONs are streamed (the 5 fps train ``data.json`` is 834 MB, the 30 fps one
3.7 GB): memory holds only the selected images, frames and cameras, never the files. Every
file is still read to its end, so damage anywhere in it is an error naming the file and the
field. Images are never loaded here (the preprocessor streams them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from handcli.camera import intrinsics, world_to_cam_matrix
from handcli.errors import InputError
from handcli.hand.skeleton import IH_TO_21
from handcli.jsonio import (
    expect_object,
    finite_floats,
    get,
    integer,
    object_with_key_near,
    stream_items,
    stream_items_at,
    stream_kvitems,
    string,
)

SIDES = ("right", "left")
HAND_TYPES = ("right", "left", "interacting")
# Plausibility bounds: beyond them a value is corrupt, and it would overflow float32 or turn
# into NaN downstream (posed vertices, projections).
MAX_MM = 1e5  # |campos|, |world_coord|: 100 m
MAX_PIXELS = 100_000  # image width / height and |principal point|
MAX_FOCAL = 1e6  # pixels
MAX_POSE = 4 * math.pi  # axis-angle radians: two full turns
MAX_SHAPE = 100.0  # MANO betas are in standard deviations
MAX_TRANS = 100.0  # metres
ROTATION_TOL = 1e-3  # max |R R^T - I| of a camera rotation
OFFSET_SELECTION = 20_000  # up to this many selected images, annotations are decoded where they lie
_IMAGE_RE = re.compile(r"image(\d{4,})\.jpg")


@dataclass
class IHCamera:
    capture: int
    cam_id: str
    K: np.ndarray  # (3, 3) at the image's native resolution
    world_to_cam: np.ndarray  # (4, 4), metres
    width: int
    height: int

    @property
    def mono(self) -> bool:
        """InterHand camera ids 410xxx are monochrome cameras (grey content)."""
        return self.cam_id.startswith("41")


@dataclass
class IHView:
    image_id: int
    path: Path
    cam_id: str
    width: int
    height: int


@dataclass
class IHFrame:
    split: str
    capture: int
    seq: str
    frame_idx: int
    hand_type: str
    views: list[IHView] = field(default_factory=list)
    joints: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (21, 3) world metres
    joint_valid: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (21,) bool
    mano: dict[str, dict | None] = field(default_factory=dict)  # side -> {pose (48,), shape (10,), trans (3,)}

    @property
    def key(self) -> str:
        return f"{self.split}/Capture{self.capture}/{self.seq}/{self.frame_idx}"

    @property
    def sides(self) -> list[str]:
        """Hands present in the frame (by hand_type, with a valid root joint)."""
        wanted = SIDES if self.hand_type == "interacting" else (self.hand_type,)
        return [s for s in wanted if s in self.joint_valid and self.joint_valid[s][0]]


def read_skeleton(path: Path) -> list[tuple[str, int, int]]:
    """Parse ``skeleton.txt``: ``name idx parent`` lines after ``#`` comments (42 joints)."""
    if not path.is_file():
        raise InputError("missing skeleton file", path=path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InputError(f"line {n}: expected 'name idx parent'", path=path)
        try:
            rows.append((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            raise InputError(f"line {n}: joint id and parent must be integers", path=path) from None
    if len(rows) != 42:
        raise InputError(f"expected 42 joints, found {len(rows)}", path=path)
    return rows


def frame_from_filename(name: str) -> int:
    """``image0563.jpg`` -> 563 (at least 4 digits, possibly more: ``image23330.jpg``); ValueError otherwise."""
    m = _IMAGE_RE.fullmatch(PurePosixPath(name).name)
    if m is None:
        raise ValueError(f"{name!r} is not named imageNNNN.jpg")
    return int(m.group(1))


def check_file_name(name: str, frame_idx: int, path: Path, field: str) -> str:
    """An image path relative to ``images/{split}``: no absolute path, no ``..``, named after its frame."""
    p = PurePosixPath(name)
    if p.is_absolute() or "\\" in name or ".." in p.parts or ":" in name:
        raise InputError(f"{name!r} must be a relative path inside the dataset's images folder", path=path,
                         field=field)
    try:
        fidx = frame_from_filename(name)
    except ValueError as e:
        raise InputError(str(e), path=path, field=field) from None
    if fidx != frame_idx:
        raise InputError(f"file name {name!r} does not match frame_idx {frame_idx}", path=path, field=field)
    return name


@dataclass
class IHSelected:
    """A selected frame as ``data.json`` describes it, before its joints, MANO and cameras are read."""

    capture: int
    seq: str
    frame_idx: int
    hand_type: str
    joint_valid: np.ndarray  # (42,) bool, InterHand joint order
    views: list[IHView]


def _object(value, path: Path, field: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, found {type(value).__name__}", path=path, field=field)
    return value


def parse_camera(cap: dict, capture: int, cam_id: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One camera of a ``camera.json`` capture entry -> K (3, 3) and world->camera (4, 4) in metres.

    Checks: every value finite, focal lengths in (0, MAX_FOCAL], camrot a proper rotation.
    """
    vals = {}
    for name, n, limit in (("campos", 3, MAX_MM), ("camrot", 9, None), ("focal", 2, MAX_FOCAL),
                           ("princpt", 2, MAX_PIXELS)):
        block = _object(get(cap, name, path, f"{capture}/{name}"), path, f"{capture}/{name}")
        fld = f"{capture}/{name}/{cam_id}"
        vals[name] = finite_floats(get(block, cam_id, path, fld), n, path, fld, limit=limit)
    if min(vals["focal"]) <= 0:
        raise InputError(f"focal lengths must be positive, found {vals['focal']}", path=path,
                         field=f"{capture}/focal/{cam_id}")
    R = np.array(vals["camrot"]).reshape(3, 3)
    err = np.abs(R @ R.T - np.eye(3)).max()
    if err > ROTATION_TOL or np.linalg.det(R) <= 0:
        raise InputError(f"not a rotation matrix (|R R^T - I| = {err:.3g}, det = {np.linalg.det(R):.3g})",
                         path=path, field=f"{capture}/camrot/{cam_id}")
    campos_m = np.array(vals["campos"]) / 1000.0
    K = intrinsics(vals["focal"][0], vals["focal"][1], vals["princpt"][0], vals["princpt"][1])
    return K, world_to_cam_matrix(R, -R @ campos_m)


def parse_mano_side(p, path: Path, base: str) -> dict | None:
    """One hand of a ``MANO_NeuralAnnot.json`` frame entry -> {pose (48,), shape (10,), trans (3,)} or None."""
    if p is None:
        return None
    p = _object(p, path, base)
    out = {}
    for name, n, limit in (("pose", 48, MAX_POSE), ("shape", 10, MAX_SHAPE), ("trans", 3, MAX_TRANS)):
        out[name] = np.array(finite_floats(get(p, name, path, f"{base}/{name}"), n, path, f"{base}/{name}",
                                           limit=limit))
    return out


class InterHandReader:
    """Annotations of one split of an InterHand2.6M root, streamed selection by selection.

    ``select`` reads ``data.json`` (two streamed passes: images, then annotations) and keeps the
    selected images only; ``load`` reads ``joint_3d``, ``MANO_NeuralAnnot`` and ``camera`` for the
    selected frames only (one streamed pass per file and capture).
    """

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise InputError("dataset root not found", path=self.root)
        ann = self.root / "annotations" / split
        self.files = {k: ann / f"InterHand2.6M_{split}_{k}.json" for k in ("data", "camera", "joint_3d",
                                                                           "MANO_NeuralAnnot")}
        self.skeleton = read_skeleton(self.root / "annotations" / "skeleton.txt")
        for f in self.files.values():
            expect_object(f)
        self._cameras: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}

    # -- data.json ---------------------------------------------------------------------------------
    def select(self, captures: set[int] | None = None, seqs: set[str] | None = None,
               cameras: set[str] | None = None, frames: set[int] | None = None,
               keep_mono: bool = False) -> list[IHSelected]:
        """Frames of the split matching the selection, sorted by (capture, seq, frame), views by camera."""
        fd = self.files["data"]
        rows: list[tuple] = []  # selected images only: (index, id, capture, seq, cam, fidx, w, h, file_name)
        by_id: dict[int, int] = {}
        by_view: dict[tuple, int] = {}
        intern: dict[str, str] = {}
        seen = 0
        for i, img in enumerate(stream_items(fd, "images.item")):
            seen += 1
            # fast path for the common, well-formed record; anything else goes through the checks that name
            # the field (ijson gives exact int/str/float/list/dict/None types)
            if type(img) is dict:
                capture, seq, cam, fidx = (img.get("capture"), img.get("seq_name"), img.get("camera"),
                                           img.get("frame_idx"))
            if not (type(img) is dict and type(capture) is int and type(fidx) is int and capture >= 0
                    and fidx >= 0 and type(seq) is str and type(cam) is str and seq and cam):
                fld = f"images[{i}]"
                img = _object(img, fd, fld)
                capture = integer(get(img, "capture", fd, f"{fld}/capture"), fd, f"{fld}/capture", 0)
                seq = string(get(img, "seq_name", fd, f"{fld}/seq_name"), fd, f"{fld}/seq_name")
                cam = string(get(img, "camera", fd, f"{fld}/camera"), fd, f"{fld}/camera")
                fidx = integer(get(img, "frame_idx", fd, f"{fld}/frame_idx"), fd, f"{fld}/frame_idx", 0)
            if captures is not None and capture not in captures:
                continue
            if seqs is not None and seq not in seqs:
                continue
            if cameras is not None and cam not in cameras:
                continue
            if frames is not None and fidx not in frames:
                continue
            if not keep_mono and cam.startswith("41"):
                continue
            fld = f"images[{i}]"
            image_id = integer(get(img, "id", fd, f"{fld}/id"), fd, f"{fld}/id")
            file_name = check_file_name(string(get(img, "file_name", fd, f"{fld}/file_name"), fd,
                                               f"{fld}/file_name"), fidx, fd, f"{fld}/file_name")
            w = integer(get(img, "width", fd, f"{fld}/width"), fd, f"{fld}/width", 1, MAX_PIXELS)
            h = integer(get(img, "height", fd, f"{fld}/height"), fd, f"{fld}/height", 1, MAX_PIXELS)
            if image_id in by_id:
                raise InputError(f"duplicate image id {image_id} (also images[{rows[by_id[image_id]][0]}])",
                                 path=fd, field=f"{fld}/id")
            seq, cam = intern.setdefault(seq, seq), intern.setdefault(cam, cam)
            vkey = (capture, seq, fidx, cam)
            if vkey in by_view:
                raise InputError(f"a second image of camera {cam} for the same frame (also "
                                 f"images[{rows[by_view[vkey]][0]}])", path=fd, field=fld)
            by_id[image_id] = by_view[vkey] = len(rows)
            rows.append((i, image_id, capture, seq, cam, fidx, w, h, file_name))
        if seen == 0:
            raise InputError("missing or empty list", path=fd, field="images")
        if not rows:
            return []
        anns = self._annotations_by_offset(by_id) if len(rows) <= OFFSET_SELECTION else None
        if anns is None:
            anns = self._annotations_streamed(by_id)
        grouped: dict[tuple[int, str, int], IHSelected] = {}
        img_dir = self.root / "images" / self.split
        for i, image_id, capture, seq, cam, fidx, w, h, file_name in rows:
            if image_id not in anns:
                raise InputError(f"no annotation for image id {image_id}", path=fd, field="annotations")
            key = (capture, seq, fidx)
            if key not in grouped:
                hand_type, valid = anns[image_id]
                grouped[key] = IHSelected(capture, seq, fidx, hand_type, valid, [])
            grouped[key].views.append(IHView(image_id, img_dir / file_name, cam, w, h))
        out = []
        for key in sorted(grouped):
            sel = grouped[key]
            sel.views.sort(key=lambda v: v.cam_id)
            out.append(sel)
        return out

    def _annotation(self, a, fld: str) -> tuple[str, np.ndarray]:
        fd = self.files["data"]
        a = _object(a, fd, fld)
        hand_type = get(a, "hand_type", fd, f"{fld}/hand_type")
        if hand_type not in HAND_TYPES:
            raise InputError(f"unknown hand_type {hand_type!r}", path=fd, field=f"{fld}/hand_type")
        valid = finite_floats(get(a, "joint_valid", fd, f"{fld}/joint_valid"), 42, fd, f"{fld}/joint_valid")
        return hand_type, np.array(valid) > 0

    def _annotations_streamed(self, by_id: dict[int, int]) -> dict[int, tuple[str, np.ndarray]]:
        """Annotations of the selected image ids: one streamed pass building every annotation record."""
        fd = self.files["data"]
        anns: dict[int, tuple[str, np.ndarray]] = {}
        seen = 0
        for i, a in enumerate(stream_items(fd, "annotations.item")):
            seen += 1
            image_id = a.get("image_id") if type(a) is dict else None
            if type(image_id) is not int:
                fld = f"annotations[{i}]"
                a = _object(a, fd, fld)
                image_id = integer(get(a, "image_id", fd, f"{fld}/image_id"), fd, f"{fld}/image_id")
            if image_id not in by_id:
                continue
            if image_id in anns:
                raise InputError(f"a second annotation for image id {image_id}", path=fd,
                                 field=f"annotations[{i}]/image_id")
            anns[image_id] = self._annotation(a, f"annotations[{i}]")
        if seen == 0:
            raise InputError("missing or empty list", path=fd, field="annotations")
        return anns

    def _annotations_by_offset(self, by_id: dict[int, int]) -> dict[int, tuple[str, np.ndarray]] | None:
        """Annotations of a small selection without building every record (that costs most of the time):
        the pass streams only ``image_id`` values (it still parses, so checks, the whole file) and notes
        where the selected ones are; each selected record is then decoded from a few KB around that spot.
        None when a record cannot be found that way (unusual layout): the caller streams them instead."""
        fd = self.files["data"]
        where: dict[int, tuple[int, int]] = {}
        seen = 0
        for i, (image_id, offset) in enumerate(stream_items_at(fd, "annotations.item.image_id")):
            seen += 1
            if type(image_id) is not int:
                integer(image_id, fd, f"annotations[{i}]/image_id")
            if image_id in by_id:
                if image_id in where:
                    raise InputError(f"a second annotation for image id {image_id}", path=fd,
                                     field=f"annotations[{i}]/image_id")
                where[image_id] = (i, offset)
        if seen == 0:
            raise InputError("missing or empty list", path=fd, field="annotations")
        anns = {}
        for image_id, (i, offset) in where.items():
            a = object_with_key_near(fd, "image_id", image_id, offset)
            if a is None:
                return None
            anns[image_id] = self._annotation(a, f"annotations[{i}]")
        return anns

    # -- joint_3d.json, MANO_NeuralAnnot.json, camera.json ----------------------------------------
    def _per_frame(self, name: str, wanted: dict[int, set[int]]) -> dict[tuple[int, int], object]:
        """Entries ``{capture: {frame: entry}}`` of a per-frame file, for the wanted frames only."""
        f = self.files[name]
        out = {}
        for capture in sorted(wanted):
            keys = {str(fi): fi for fi in wanted[capture]}
            for k, entry in stream_kvitems(f, str(capture)):
                if k in keys:
                    out[(capture, keys[k])] = _object(entry, f, f"{capture}/{k}")
        return out

    def _load_cameras(self, wanted: dict[int, set[str]]) -> None:
        f = self.files["camera"]
        wanted = {c: {cam for cam in cams if (c, cam) not in self._cameras} for c, cams in wanted.items()}
        wanted = {c: cams for c, cams in wanted.items() if cams}
        if not wanted:
            return
        found = set()
        for k, cap in stream_kvitems(f, ""):
            try:
                capture = int(k)
            except ValueError:
                continue
            if capture not in wanted or str(capture) != k:
                continue
            found.add(capture)
            cap = _object(cap, f, k)
            for cam in sorted(wanted[capture]):
                self._cameras[(capture, cam)] = parse_camera(cap, capture, cam, f)
        for capture in sorted(set(wanted) - found):
            raise InputError("missing key", path=f, field=f"{capture}")

    def load(self, selected: list[IHSelected]) -> list[IHFrame]:
        """Joints, MANO parameters and cameras of the selected frames -> frames in handcli conventions."""
        wanted: dict[int, set[int]] = {}
        cams: dict[int, set[str]] = {}
        for s in selected:
            wanted.setdefault(s.capture, set()).add(s.frame_idx)
            cams.setdefault(s.capture, set()).update(v.cam_id for v in s.views)
        joints = self._per_frame("joint_3d", wanted)
        mano = self._per_frame("MANO_NeuralAnnot", wanted)
        self._load_cameras(cams)  # validates every selected camera before any work
        fj, fm = self.files["joint_3d"], self.files["MANO_NeuralAnnot"]
        out = []
        for s in selected:
            base = f"{s.capture}/{s.frame_idx}"
            jentry = joints.get((s.capture, s.frame_idx))
            if jentry is None:
                raise InputError("missing key", path=fj, field=base)
            world = np.array(finite_floats(get(jentry, "world_coord", fj, f"{base}/world_coord"), 126, fj,
                                           f"{base}/world_coord", limit=MAX_MM)).reshape(42, 3) / 1000.0
            mentry = mano.get((s.capture, s.frame_idx))
            fr = IHFrame(self.split, s.capture, s.seq, s.frame_idx, s.hand_type, views=s.views)
            for side, off in (("right", 0), ("left", 21)):
                idx = np.asarray(IH_TO_21) + off
                root_ok = s.joint_valid[20 + off]  # the official loader multiplies by the root's validity
                fr.joints[side] = world[idx]
                fr.joint_valid[side] = s.joint_valid[idx] & root_ok
                fr.mano[side] = None if mentry is None else parse_mano_side(mentry.get(side), fm, f"{base}/{side}")
            out.append(fr)
        return out

    def frames(self, captures: set[int] | None = None, seqs: set[str] | None = None,
               cameras: set[str] | None = None, frames: set[int] | None = None,
               keep_mono: bool = False) -> list[IHFrame]:
        """Frames of the split matching the selection, sorted by (capture, seq, frame)."""
        return self.load(self.select(captures, seqs, cameras, frames, keep_mono))

    def camera(self, capture: int, cam_id: str, width: int, height: int) -> IHCamera:
        """Camera of a capture in handcli conventions (metres, world->camera 4x4)."""
        if (capture, cam_id) not in self._cameras:
            self._load_cameras({capture: {cam_id}})
        K, w2c = self._cameras[(capture, cam_id)]
        return IHCamera(capture, cam_id, K, w2c, width, height)
