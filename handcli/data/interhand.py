"""InterHand2.6M v1.0 reader (docs/formats.md#interhand26m).

Reads the real layout exactly: per-split COCO-style ``data.json`` (per-image records), the
per-capture cameras (campos in mm, camrot world->camera), world joints in mm (42 joints,
tips first, wrist last) and NeuralAnnot MANO parameters (trans in metres, poses relative
to the MANO mean pose). Everything is converted to handcli's conventions here: metres,
OpenCV world->camera 4x4 matrices, 21 joints per hand wrist-first.

The annotation JSONs are parsed whole, like the official loader does; images are never
loaded here (the preprocessor streams them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handcli.data.camera import intrinsics, world_to_cam_matrix
from handcli.data.jsonio import finite_floats, get, load_json
from handcli.errors import InputError
from handcli.hand.skeleton import IH_TO_21

SIDES = ("right", "left")


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
    """``image0563.jpg`` -> 563 (at least 4 digits, possibly more: ``image23330.jpg``)."""
    return int(Path(name).name[5:-4])


def parse_selection(spec: str | None) -> set[int] | None:
    """``"0-10,15,20-22"`` -> {0..10, 15, 20, 21, 22}; None or "" -> no selection."""
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                if int(b) < int(a):
                    raise ValueError
                out.update(range(int(a), int(b) + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise InputError(f"bad selection {part!r} in {spec!r} (expected e.g. '0-10,15')",
                             field="selection") from None
    return out


class InterHandReader:
    """Annotations of one split of an InterHand2.6M root."""

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
            if not f.is_file():
                raise InputError("missing annotation file", path=f)
        self.data = load_json(self.files["data"])
        self.camera_json = load_json(self.files["camera"])
        self.joint_json = load_json(self.files["joint_3d"])
        self.mano_json = load_json(self.files["MANO_NeuralAnnot"])
        for key in ("images", "annotations"):
            if not isinstance(self.data, dict) or not isinstance(self.data.get(key), list):
                raise InputError("missing list", path=self.files["data"], field=key)
        self._cameras: dict[tuple[int, str], IHCamera] = {}

    def camera(self, capture: int, cam_id: str, width: int, height: int) -> IHCamera:
        """Camera of a capture in handcli conventions (metres, world->camera 4x4)."""
        key = (capture, cam_id)
        if key not in self._cameras:
            f = self.files["camera"]
            cap = get(self.camera_json, str(capture), f, f"{capture}")
            vals = {}
            for name, n in (("campos", 3), ("camrot", 9), ("focal", 2), ("princpt", 2)):
                block = get(cap, name, f, f"{capture}/{name}")
                vals[name] = finite_floats(get(block, cam_id, f, f"{capture}/{name}/{cam_id}"), n, f,
                                           f"{capture}/{name}/{cam_id}")
            R = np.array(vals["camrot"]).reshape(3, 3)
            campos_m = np.array(vals["campos"]) / 1000.0
            K = intrinsics(vals["focal"][0], vals["focal"][1], vals["princpt"][0], vals["princpt"][1])
            self._cameras[key] = IHCamera(capture, cam_id, K, world_to_cam_matrix(R, -R @ campos_m), width,
                                          height)
        return self._cameras[key]

    def _mano(self, capture: int, frame_idx: int, side: str) -> dict | None:
        f = self.files["MANO_NeuralAnnot"]
        entry = self.mano_json.get(str(capture), {}).get(str(frame_idx))
        if entry is None:
            return None
        p = entry.get(side)
        if p is None:
            return None
        base = f"{capture}/{frame_idx}/{side}"
        return {
            "pose": np.array(finite_floats(get(p, "pose", f, f"{base}/pose"), 48, f, f"{base}/pose")),
            "shape": np.array(finite_floats(get(p, "shape", f, f"{base}/shape"), 10, f, f"{base}/shape")),
            "trans": np.array(finite_floats(get(p, "trans", f, f"{base}/trans"), 3, f, f"{base}/trans")),
        }

    def frames(self, captures: set[int] | None = None, seqs: set[str] | None = None,
               cameras: set[str] | None = None, frames: set[int] | None = None,
               keep_mono: bool = False) -> list[IHFrame]:
        """Frames of the split matching the selection, sorted by (capture, seq, frame)."""
        fd = self.files["data"]
        anns = {}
        for i, a in enumerate(self.data["annotations"]):
            anns[get(a, "image_id", fd, f"annotations[{i}]/image_id")] = a
        grouped: dict[tuple[int, str, int], IHFrame] = {}
        views_by_frame: dict[tuple[int, str, int], list[IHView]] = defaultdict(list)
        for i, img in enumerate(self.data["images"]):
            fld = f"images[{i}]"
            capture = int(get(img, "capture", fd, f"{fld}/capture"))
            seq = str(get(img, "seq_name", fd, f"{fld}/seq_name"))
            cam = str(get(img, "camera", fd, f"{fld}/camera"))
            fidx = int(get(img, "frame_idx", fd, f"{fld}/frame_idx"))
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
            file_name = str(get(img, "file_name", fd, f"{fld}/file_name"))
            if frame_from_filename(file_name) != fidx:
                raise InputError(f"file name {file_name!r} does not match frame_idx {fidx}", path=fd,
                                 field=f"{fld}/file_name")
            w, h = int(get(img, "width", fd, f"{fld}/width")), int(get(img, "height", fd, f"{fld}/height"))
            self.camera(capture, cam, w, h)  # validates the camera now, before any work
            image_id = get(img, "id", fd, f"{fld}/id")
            ann = anns.get(image_id)
            if ann is None:
                raise InputError(f"no annotation for image id {image_id}", path=fd, field="annotations")
            key = (capture, seq, fidx)
            if key not in grouped:
                grouped[key] = self._frame(capture, seq, fidx, ann, image_id)
            views_by_frame[key].append(IHView(image_id, self.root / "images" / self.split / file_name, cam, w,
                                              h))
        out = []
        for key in sorted(grouped):
            fr = grouped[key]
            fr.views = sorted(views_by_frame[key], key=lambda v: v.cam_id)
            out.append(fr)
        return out

    def _frame(self, capture: int, seq: str, fidx: int, ann: dict, image_id: int) -> IHFrame:
        fd, fj = self.files["data"], self.files["joint_3d"]
        hand_type = str(get(ann, "hand_type", fd, f"annotations[image_id={image_id}]/hand_type"))
        if hand_type not in ("right", "left", "interacting"):
            raise InputError(f"unknown hand_type {hand_type!r}", path=fd,
                             field=f"annotations[image_id={image_id}]/hand_type")
        valid = np.array(finite_floats(get(ann, "joint_valid", fd, f"annotations[image_id={image_id}]/joint_valid"),
                                       42, fd, f"annotations[image_id={image_id}]/joint_valid")) > 0
        jentry = get(get(self.joint_json, str(capture), fj, f"{capture}"), str(fidx), fj, f"{capture}/{fidx}")
        world = np.array(finite_floats(get(jentry, "world_coord", fj, f"{capture}/{fidx}/world_coord"), 126, fj,
                                       f"{capture}/{fidx}/world_coord")).reshape(42, 3) / 1000.0
        fr = IHFrame(self.split, capture, seq, fidx, hand_type)
        for side, off in (("right", 0), ("left", 21)):
            idx = np.asarray(IH_TO_21) + off
            root_ok = valid[20 + off]  # the official loader multiplies by the root's validity
            fr.joints[side] = world[idx]
            fr.joint_valid[side] = valid[idx] & root_ok
            fr.mano[side] = self._mano(capture, fidx, side)
        return fr
