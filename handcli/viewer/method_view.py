"""What the viewer shows of a trained run, without any server: renders for a browser camera under one
browser's settings, the nearest cache view, meshes, skeletons and the subjects' appearances.

Everything goes through the method contract (``handcli.methods.base``): ``render_camera`` for the images,
and the capabilities a method declares (``Method.capabilities``): ``mesh`` (mesh overlay), ``appearance``
(switching subjects), ``skeleton`` (pose editing, HandOcc), ``input_view`` (the input view of a hand-object
run), and a ``semantic`` channel when it renders one.
One method object serves every browser: a lock serialises its use, and a browser's settings are put into
it (under the lock) before each of that browser's renders.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from handcli.hand.pose_edit import edit_skeleton
from handcli.hand.skeleton import PARENTS_21
from handcli.labels import LABELS
from handcli.viewer.camera import ViewCamera, nearest_camera, opencv_camera, render_size

CHANNELS = ("rgb", "depth", "opacity", "semantic")
# semantic render colours by cache label (background, right hand, left hand, object)
PALETTE = np.zeros((256, 3), np.uint8)
PALETTE[LABELS["right"]] = (230, 160, 120)
PALETTE[LABELS["left"]] = (120, 200, 230)
PALETTE[LABELS["object"]] = (80, 140, 230)


def colourise(r: dict, channel: str) -> np.ndarray:
    """(H, W, 3) uint8 image of one channel of a render dict (rgb, depth, opacity or semantic)."""
    if channel == "rgb" or channel not in r:
        img = r["rgb"]
    elif channel == "semantic":
        return PALETTE[np.asarray(r["semantic"], np.uint8)]
    elif channel == "opacity":
        img = np.repeat(np.asarray(r["opacity"])[..., None], 3, -1)
    else:  # depth: near = bright, no surface = black
        d = np.asarray(r["depth"], np.float64)
        fg = d > 0
        g = np.zeros_like(d)
        if fg.any():
            lo, hi = float(d[fg].min()), float(d[fg].max())
            g[fg] = 1.0 - 0.8 * (d[fg] - lo) / max(hi - lo, 1e-9)
        img = np.repeat(g[..., None], 3, -1)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def skeleton_segments(joints: np.ndarray) -> np.ndarray:
    """(20, 2, 3) bone segments (parent joint, joint) of a (21, 3) skeleton."""
    j = np.asarray(joints, dtype=np.float32)
    return np.stack([j[[PARENTS_21[k] for k in range(1, 21)]], j[1:]], axis=1)


@dataclass
class ViewSettings:
    """One browser's choices: frame, appearance (a key of ``MethodView.appearances`` or None for the
    run's own) and skeleton edits per side (``pose_edit.edit_skeleton``): finger flexion and spread
    ({side: 5 angles in degrees, thumb..pinky}) and the wrist ({side: flexion, deviation, twist in degrees})."""

    frame: int
    appearance: str | None = None
    flex: dict[str, list[float]] = field(default_factory=dict)
    spread: dict[str, list[float]] = field(default_factory=dict)
    wrist: dict[str, list[float]] = field(default_factory=dict)


class MethodView:
    """A trained method (``from_run``) seen through the viewer. ``resolution``: long side (pixels) of a
    full-resolution image."""

    def __init__(self, method, resolution: int = 256):
        from handcli.render.orbit import orbit_from_cache

        self.m = method
        self.cache = method.cache
        self.lock = threading.RLock()  # re-entered by run_skeletons inside _apply
        self._run_poses: dict[int, list[tuple[str, np.ndarray]]] = {}
        self.resolution = int(resolution)
        self.cameras = self.cache.cameras()
        self.view_table = self.cache.view_table()
        self.num_frames = int(self.cache.num_frames)
        self.start_frame = self._first_frame_with_views()
        self.orbit = orbit_from_cache(self.cache, self.start_frame, 1)
        self.channels = self._channels()
        self.sides = [s for s in ("right", "left") if bool(np.any(self.cache.frame_column(f"{s}/present")))]
        self.appearances = method.appearance_crops() if "appearance" in method.capabilities else {}
        self.edits_skeleton = "skeleton" in method.capabilities
        self.has_meshes = "mesh" in method.capabilities
        self.has_input_view = "input_view" in method.capabilities

    def _first_frame_with_views(self) -> int:
        frames = self.view_table["frame"]
        for f in range(self.num_frames):
            rec = self.cache.frame(f)
            if np.any(frames == f) and any(h.box is not None for h in rec.hands.values()):
                return f
        return 0

    def _channels(self) -> list[str]:
        """The channels the method renders (probed on an 8-pixel image)."""
        from handcli.camera import scale_intrinsics

        K, M = self.orbit.cameras[0]
        s = 8.0 / max(self.orbit.width, self.orbit.height)
        with self.lock, torch.no_grad():
            r = self.m.render_camera(self.start_frame, scale_intrinsics(K, s, s), M, 8, 8)
        return [c for c in CHANNELS if c in r]

    # ---------------------------------------------------------------------------------------------------
    def skeletons(self, st: ViewSettings) -> list[tuple[str, np.ndarray]] | None:
        """[(side, joints (21, 3))] of the frame with the browser's skeleton edits; None when the method
        takes no skeleton."""
        if not self.edits_skeleton:
            return None
        return [(s, edit_skeleton(j, s, st.flex.get(s), st.spread.get(s), st.wrist.get(s)))
                for s, j in self.run_skeletons(st.frame)]

    def run_skeletons(self, frame: int) -> list[tuple[str, np.ndarray]]:
        """[(side, joints (21, 3))] the run itself renders at ``frame`` (a training frame's refined annotation,
        as ``handcli render`` and ``render --edit`` start from); the base of the browser's edits."""
        if frame not in self._run_poses:
            with self.lock:
                self.m.set_skeletons(frame, None)
                self._run_poses[frame] = self.m.skeletons(frame)
        return self._run_poses[frame]

    def _apply(self, st: ViewSettings) -> None:
        """Put a browser's appearance and skeletons into the shared method (caller holds the lock)."""
        if "appearance" in self.m.capabilities:
            self.m.set_appearance_crop(self.appearances.get(st.appearance) if st.appearance else None)
        sk = self.skeletons(st)
        if sk is not None:
            self.m.set_skeletons(st.frame, sk)

    def render(self, st: ViewSettings, cam: ViewCamera, scale: float = 1.0) -> dict:
        """The method's render dict for a browser camera at ``scale`` x full resolution, plus
        ``world_to_cam``, ``seconds`` and ``input_view`` (cache view index or None)."""
        w, h = render_size(cam.aspect, max(8, round(self.resolution * scale)))
        K, M = opencv_camera(cam, w, h)
        t = time.perf_counter()
        with self.lock, torch.no_grad():  # grad mode is per thread: renders run on the viewer's threads
            self._apply(st)
            r = dict(self.m.render_camera(st.frame, K, M, h, w))
            r["input_view"] = self.m.input_views.get(st.frame) if self.has_input_view else None
        r["seconds"] = time.perf_counter() - t
        r["world_to_cam"] = M
        return r

    def nearest_view(self, frame: int, world_to_cam: np.ndarray) -> tuple[int, int] | None:
        """(cache view index, camera index) of the frame's view whose camera is nearest; None without views."""
        views = self.cache.views_of_frame(frame)
        if not views:
            return None
        cams = [int(self.view_table["camera"][j]) for j in views]
        k = nearest_camera([self.cameras[c]["world_to_cam"] for c in cams], world_to_cam)
        return int(views[k]), cams[k]

    def meshes(self, st: ViewSettings, resolution: int) -> dict:
        """{part: trimesh} of the frame under the browser's settings (the method's ``extract_meshes``)."""
        with self.lock, torch.no_grad():
            self._apply(st)
            return self.m.extract_meshes(st.frame, resolution)
