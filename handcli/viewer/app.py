"""The viewer's viser server: one render loop and one GUI per connected browser, over any method.

Everything goes through the method contract (``handcli.methods.base``): ``render_camera`` for the live
image, and the optional capabilities a method may have: ``extract_meshes`` (mesh overlay),
``appearance_crops`` / ``set_appearance_crop`` (switching subjects), ``skeletons`` / ``set_skeletons``
(pose editing, HandOcc), ``input_views`` (the input view of a hand-object run) and a ``semantic`` render.
The method object is shared by every browser; a lock serialises its use, and each browser's settings
(frame, appearance, skeleton edits) are applied under that lock before each of its renders.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from handcli.data.cache import LABELS
from handcli.hand.skeleton import FINGERS, PARENTS_21
from handcli.viewer.camera import (
    ViewCamera,
    nearest_camera,
    opencv_camera,
    render_size,
    vertical_fov,
    viser_pose,
)
from handcli.viewer.pose_edit import flex_fingers
from handcli.viewer.progressive import ProgressiveRenderer

CHANNELS = ("rgb", "depth", "opacity", "semantic")
# semantic render colours by cache label (background, right hand, left hand, object)
PALETTE = np.zeros((256, 3), np.uint8)
PALETTE[LABELS["right"]] = (230, 160, 120)
PALETTE[LABELS["left"]] = (120, 200, 230)
PALETTE[LABELS["object"]] = (80, 140, 230)
MESH_COLOURS = {"hand": (230, 160, 120), "right": (230, 160, 120), "left": (120, 200, 230), "object": (80, 140, 230)}
# skeleton lines in colours no render of skin has (green-dominant), so they never pass for hand pixels
SKELETON_COLOURS = {"right": (60, 230, 90), "left": (40, 200, 200)}


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


class Viewer:
    """A viser server showing a method's renders. ``url`` is where to point a browser.

    resolution: long side (pixels) of the full-resolution image; preview_scale: its fraction while the
    camera moves; rest_s: how long the camera must rest before the full image; mesh_resolution: marching
    cubes grid of the mesh overlay.
    """

    def __init__(self, method, *, host: str = "127.0.0.1", port: int = 8080, resolution: int = 256,
                 preview_scale: float = 0.25, rest_s: float = 0.3, mesh_resolution: int = 64):
        import viser

        from handcli.render.orbit import orbit_from_cache

        self.m = method
        self.cache = method.cache
        self.lock = threading.Lock()
        self.resolution, self.preview_scale, self.rest_s = int(resolution), float(preview_scale), float(rest_s)
        self.mesh_resolution = int(mesh_resolution)
        self.cameras = self.cache.cameras()
        self.view_table = self.cache.view_table()
        self.num_frames = int(self.cache.num_frames)
        self.start_frame = self._first_frame_with_views()
        self.orbit = orbit_from_cache(self.cache, self.start_frame, 1)
        self.channels = self._channels()
        self.sides = [s for s in ("right", "left") if bool(np.any(self.cache.f["frames"][s]["present"][()]))]
        self.appearances = method.appearance_crops() if hasattr(method, "appearance_crops") else {}
        # viser prints a banner (and "Server stopped") on stdout; stdout carries only the URL
        with contextlib.redirect_stdout(sys.stderr):
            self.server = viser.ViserServer(host=host, port=port, label=f"handcli view: {method.method}",
                                            verbose=False)
        self.host = host
        s = self.server
        s.scene.set_up_direction(tuple(float(x) for x in self.orbit.up))
        s.scene.world_axes.visible = False
        K, M = self.orbit.cameras[0]
        R_wc = M[:3, :3].T
        eye = M[:3, :3].T @ -M[:3, 3]
        s.initial_camera.position = tuple(eye)
        s.initial_camera.look_at = tuple(self.orbit.center)
        s.initial_camera.up = tuple(-R_wc[:, 1])
        s.initial_camera.fov = vertical_fov(K, self.orbit.height)
        self.sessions: dict[int, Session] = {}
        s.on_client_connect(self._connect)
        s.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.get_port()}/"

    def _first_frame_with_views(self) -> int:
        frames = self.view_table["frame"]
        for f in range(self.num_frames):
            rec = self.cache.frame(f)
            if np.any(frames == f) and any(h.box is not None for h in rec.hands.values()):
                return f
        return 0

    def _channels(self) -> list[str]:
        """The channels the method renders (probed on a tiny image)."""
        K, M = self.orbit.cameras[0]
        from handcli.data.camera import scale_intrinsics

        s = 8.0 / max(self.orbit.width, self.orbit.height)
        with self.lock:
            r = self.m.render_camera(self.start_frame, scale_intrinsics(K, s, s), M, 8, 8)
        return [c for c in CHANNELS if c in r]

    def _connect(self, client) -> None:
        self.sessions[client.client_id] = Session(self, client)

    def _disconnect(self, client) -> None:
        sess = self.sessions.pop(client.client_id, None)
        if sess is not None:
            sess.close()

    def stop(self) -> None:
        for sess in list(self.sessions.values()):
            sess.close()
        with contextlib.redirect_stdout(sys.stderr):
            self.server.stop()


class Session:
    """One browser: its settings, GUI, render loop and scene overlays."""

    def __init__(self, viewer: Viewer, client):
        self.v = viewer
        self.client = client
        self.frame = viewer.start_frame
        self.channel = "rgb"
        self.appearance: str | None = None
        self.flex = {s: [0.0] * 5 for s in viewer.sides}
        self.show_mesh = False
        self.show_skeleton = True
        self.last = {}
        self._mesh_pool = ThreadPoolExecutor(max_workers=1)
        self._mesh_handles = []
        self._skeleton_handles = {}
        self._build_gui()
        self.renderer = ProgressiveRenderer(self._render, self._publish, viewer.preview_scale, viewer.rest_s,
                                            name=f"viewer-render-{client.client_id}")
        client.camera.on_update(lambda _cam: self.refresh())
        self._update_skeleton_overlay()
        self.refresh()

    # ---------------------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        v, gui = self.v, self.client.gui
        m = v.m
        self.status = gui.add_markdown(f"**{m.method}** · waiting for the first frame")
        if v.num_frames > 1:
            sl = gui.add_slider("frame", 0, v.num_frames - 1, 1, self.frame)
            sl.on_update(lambda e: self._set(frame=int(e.target.value)))
        if len(v.channels) > 1:
            dd = gui.add_dropdown("show", tuple(v.channels), initial_value="rgb")
            dd.on_update(lambda e: self._set(channel=str(e.target.value)))
        if v.appearances:
            opts = ("run",) + tuple(v.appearances)
            dd = gui.add_dropdown("appearance", opts, initial_value="run")
            dd.on_update(lambda e: self._set(appearance=None if e.target.value == "run" else str(e.target.value)))
        if hasattr(m, "extract_meshes"):
            cb = gui.add_checkbox("mesh overlay", False)
            cb.on_update(lambda e: self._set_mesh(bool(e.target.value)))
        btn = gui.add_button("go to nearest cache camera")
        btn.on_click(lambda _e: self._snap_to_nearest())
        self.gt_text = gui.add_markdown("ground truth of the nearest cache camera")
        self.gt_image = gui.add_image(np.zeros((8, 8, 3), np.uint8), format="jpeg")
        self.input_text = self.input_image = None
        if hasattr(m, "input_views"):
            self.input_text = gui.add_markdown("input view")
            self.input_image = gui.add_image(np.zeros((8, 8, 3), np.uint8), format="jpeg")
        self.flex_sliders = {}
        if hasattr(m, "set_skeletons") and v.sides:
            with gui.add_folder("skeleton (finger flexion, degrees per joint)"):
                cb = gui.add_checkbox("show skeleton", True)
                cb.on_update(lambda e: self._set_skeleton_visible(bool(e.target.value)))
                for side in v.sides:
                    for k, finger in enumerate(FINGERS):
                        sl = gui.add_slider(f"{side} {finger}", -30.0, 90.0, 1.0, 0.0)
                        sl.on_update(lambda e, side=side, k=k: self._set_flex(side, k, float(e.target.value)))
                        self.flex_sliders[(side, k)] = sl
                reset = gui.add_button("reset pose")
                reset.on_click(lambda _e: self._reset_pose())

    # ---------------------------------------------------------------------------------------------------
    def _set(self, **kw) -> None:
        for k, val in kw.items():
            setattr(self, k, val)
        if "frame" in kw:
            self._update_skeleton_overlay()
            self._refresh_meshes()
        self.refresh()

    def _set_flex(self, side: str, k: int, deg: float) -> None:
        self.flex[side][k] = deg
        self._update_skeleton_overlay()
        self._refresh_meshes()
        self.refresh()

    def _reset_pose(self) -> None:
        for (side, k), sl in self.flex_sliders.items():
            self.flex[side][k] = 0.0
            sl.value = 0.0
        self._update_skeleton_overlay()
        self._refresh_meshes()
        self.refresh()

    def _set_mesh(self, on: bool) -> None:
        self.show_mesh = on
        self._refresh_meshes()

    def _set_skeleton_visible(self, on: bool) -> None:
        self.show_skeleton = on
        self._update_skeleton_overlay()

    def refresh(self) -> None:
        """Re-render for the browser's current camera (called on every camera message and setting)."""
        try:
            cam = self.client.camera
            req = (ViewCamera(tuple(cam.wxyz), tuple(cam.position), float(cam.fov), float(cam.aspect)),
                   self.frame, self.channel)
        except AssertionError:  # no camera message yet
            return
        self.renderer.request(req)

    def close(self) -> None:
        self.renderer.stop(timeout=0.0)
        self._mesh_pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------------
    def edited_skeletons(self, frame: int) -> list[tuple[str, np.ndarray]] | None:
        """This browser's skeletons of ``frame`` (None when the method has no skeleton input)."""
        m = self.v.m
        if not hasattr(m, "set_skeletons"):
            return None
        from handcli.methods.handocc_method import frame_joints

        return [(s, flex_fingers(j, self.flex.get(s, [0.0] * 5), s) if any(self.flex.get(s, [])) else j)
                for s, j in frame_joints(self.v.cache, frame)]

    def _apply_state(self, frame: int) -> None:
        """Put this browser's appearance and skeletons into the shared method (caller holds the lock)."""
        m = self.v.m
        if hasattr(m, "set_appearance_crop"):
            m.set_appearance_crop(self.v.appearances.get(self.appearance) if self.appearance else None)
        sk = self.edited_skeletons(frame)
        if sk is not None:
            m.set_skeletons(frame, sk)

    def _render(self, req, scale: float) -> dict:
        cam, frame, _channel = req
        w, h = render_size(cam.aspect, max(8, round(self.v.resolution * scale)))
        K, M = opencv_camera(cam, w, h)
        t = time.perf_counter()
        with self.v.lock:
            self._apply_state(frame)
            r = self.v.m.render_camera(frame, K, M, h, w)
            j = getattr(self.v.m, "input_views", {}).get(frame)
        r["seconds"] = time.perf_counter() - t
        r["world_to_cam"] = M
        r["input_view"] = j
        return r

    def _publish(self, req, r: dict, full: bool) -> None:
        cam, frame, channel = req
        img = colourise(r, channel)
        self.client.scene.set_background_image(img, format="jpeg", jpeg_quality=92)
        if not full:
            return
        v = self.v
        H, W = img.shape[:2]
        views = v.cache.views_of_frame(frame)
        if views:
            cam_ids = [int(v.view_table["camera"][j]) for j in views]
            k = nearest_camera([v.cameras[c]["world_to_cam"] for c in cam_ids], r["world_to_cam"])
            gt = v.cache.view(int(views[k]))
            self.nearest = cam_ids[k]
            self.gt_text.content = f"ground truth: frame {frame}, camera {v.cameras[cam_ids[k]]['name']}"
            self.gt_image.image = gt["rgb"]
        if self.input_image is not None and r.get("input_view") is not None:
            j = int(r["input_view"])
            self.input_text.content = (f"input view: camera "
                                       f"{v.cameras[int(v.view_table['camera'][j])]['name']}")
            self.input_image.image = v.cache.view(j)["rgb"]
        self.status.content = (f"**{v.m.method}** · frame {frame} · {channel} {W}x{H} in {r['seconds']:.2f} s  \n"
                               f"full-resolution frames: {self.renderer.full + 1} · "
                               f"previews: {self.renderer.previews}")

    # ---------------------------------------------------------------------------------------------------
    def _snap_to_nearest(self) -> None:
        c = getattr(self, "nearest", None)
        if c is None:
            return
        cam = self.v.cameras[c]
        M = np.asarray(cam["world_to_cam"])
        _wxyz, eye = viser_pose(M)
        R_wc = M[:3, :3].T
        dist = float(np.linalg.norm(self.v.orbit.center - eye))
        with self.client.atomic():
            self.client.camera.position = tuple(eye)
            self.client.camera.look_at = tuple(eye + R_wc[:, 2] * dist)
            self.client.camera.up_direction = tuple(-R_wc[:, 1])
            self.client.camera.fov = vertical_fov(cam["K"], cam["height"])

    def _update_skeleton_overlay(self) -> None:
        sk = self.edited_skeletons(self.frame)
        if sk is None:
            return
        sk = dict(sk)
        for side in ("right", "left"):
            old = self._skeleton_handles.pop(side, None)
            if old is not None:
                old.remove()
            if side in sk and self.show_skeleton:
                self._skeleton_handles[side] = self.client.scene.add_line_segments(
                    f"/skeleton/{side}", skeleton_segments(sk[side]), colors=SKELETON_COLOURS[side], thickness=3.0,
                    thickness_units="screen")

    def _refresh_meshes(self) -> None:
        for hnd in self._mesh_handles:
            hnd.remove()
        self._mesh_handles = []
        if self.show_mesh:
            self._mesh_pool.submit(self._extract_meshes, self.frame)

    def _extract_meshes(self, frame: int) -> None:
        try:
            with self.v.lock:
                self._apply_state(frame)
                meshes = self.v.m.extract_meshes(frame, self.v.mesh_resolution)
        except Exception as e:  # e.g. a frame without a hand: report in the GUI, keep serving
            self.status.content = f"mesh overlay: {e}"
            return
        if not self.show_mesh or frame != self.frame:
            return
        for part, mesh in meshes.items():
            if part == "scene" or len(mesh.faces) == 0:
                continue
            self._mesh_handles.append(self.client.scene.add_mesh_simple(
                f"/mesh/{part}", np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32),
                color=MESH_COLOURS.get(part, (200, 200, 200)), opacity=0.5, side="double"))
