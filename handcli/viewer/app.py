"""The viewer's viser server: one render loop and one GUI per connected browser over a ``MethodView``.

Settings (frame, channel, appearance, skeleton edits, overlays) belong to each browser; the background
image is the browser's render (reduced resolution while its camera moves, full at rest), drawn over the
canvas, with the skeleton and meshes as 3D overlays in the same world coordinates.
"""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from handcli.hand.pose_edit import WRIST_MOTIONS, WRIST_RANGE, fanned
from handcli.hand.skeleton import FINGERS
from handcli.viewer.camera import ViewCamera, vertical_fov, viser_pose
from handcli.viewer.method_view import MethodView, ViewSettings, colourise, skeleton_segments
from handcli.viewer.progressive import ProgressiveRenderer

MESH_COLOURS = {"hand": (230, 160, 120), "right": (230, 160, 120), "left": (120, 200, 230), "object": (80, 140, 230)}
# skeleton lines in colours no render of skin has (green-dominant), so they never pass for hand pixels
SKELETON_COLOURS = {"right": (60, 230, 90), "left": (40, 200, 200)}


class Viewer:
    """A viser server showing a method's renders. ``url`` is where to point a browser.

    resolution: long side (pixels) of the full-resolution image; preview_scale: its fraction while the
    camera moves; rest_s: how long the camera must rest before the full image; mesh_resolution: marching
    cubes grid of the mesh overlay.
    """

    def __init__(self, method, *, host: str = "127.0.0.1", port: int = 8080, resolution: int = 256,
                 preview_scale: float = 0.25, rest_s: float = 0.3, mesh_resolution: int = 64):
        import viser

        self.mv = MethodView(method, resolution)
        self.preview_scale, self.rest_s = float(preview_scale), float(rest_s)
        self.mesh_resolution = int(mesh_resolution)
        # viser prints a banner (and "Server stopped") on stdout; stdout carries only the URL
        with contextlib.redirect_stdout(sys.stderr):
            self.server = viser.ViserServer(host=host, port=port, label=f"handcli view: {method.method}",
                                            verbose=False)
        self.host = host
        s, ob = self.server, self.mv.orbit
        s.scene.set_up_direction(tuple(float(x) for x in ob.up))
        s.scene.world_axes.visible = False
        K, M = ob.cameras[0]
        R_wc = M[:3, :3].T
        s.initial_camera.position = tuple(R_wc @ -M[:3, 3])
        s.initial_camera.look_at = tuple(ob.center)
        s.initial_camera.up = tuple(-R_wc[:, 1])
        s.initial_camera.fov = vertical_fov(K, ob.height)
        self.sessions: dict[int, Session] = {}
        s.on_client_connect(self._connect)
        s.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.get_port()}/"

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
        self.mv = viewer.mv
        self.client = client
        self.st = self._unedited(ViewSettings(self.mv.start_frame))
        self.channel = "rgb"
        self.show_mesh = False
        self.show_skeleton = True
        self.nearest: int | None = None
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
        mv, gui = self.mv, self.client.gui
        self.status = gui.add_markdown(f"**{mv.m.method}** · waiting for the first frame")
        if mv.num_frames > 1:
            sl = gui.add_slider("frame", 0, mv.num_frames - 1, 1, self.st.frame)
            sl.on_update(lambda e: self._set_frame(int(e.target.value)))
        if len(mv.channels) > 1:
            dd = gui.add_dropdown("show", tuple(mv.channels), initial_value="rgb")
            dd.on_update(lambda e: self._set_channel(str(e.target.value)))
        if mv.appearances:
            dd = gui.add_dropdown("appearance", ("run",) + tuple(mv.appearances), initial_value="run")
            dd.on_update(lambda e: self._set_appearance(str(e.target.value)))
        if mv.has_meshes:
            cb = gui.add_checkbox("mesh overlay", False)
            cb.on_update(lambda e: self._set_mesh(bool(e.target.value)))
        btn = gui.add_button("go to nearest cache camera")
        btn.on_click(lambda _e: self._snap_to_nearest())
        self.gt_text = gui.add_markdown("ground truth of the nearest cache camera")
        self.gt_image = gui.add_image(np.zeros((8, 8, 3), np.uint8), format="jpeg")
        self.input_text = self.input_image = None
        if mv.has_input_view:
            self.input_text = gui.add_markdown("input view")
            self.input_image = gui.add_image(np.zeros((8, 8, 3), np.uint8), format="jpeg")
        self.pose_sliders = []
        if mv.edits_skeleton and mv.sides:
            with gui.add_folder("skeleton (degrees: finger flexion per joint, spread, wrist)"):
                cb = gui.add_checkbox("show skeleton", True)
                cb.on_update(lambda e: self._set_skeleton_visible(bool(e.target.value)))
                for side in mv.sides:
                    for k, finger in enumerate(FINGERS):
                        self._pose_slider(f"{side} {finger}", -30.0, 90.0,
                                          lambda v, side=side, k=k: self._set_edit("flex", side, k, v))
                    self._pose_slider(f"{side} spread", -15.0, 30.0,
                                      lambda v, side=side: self._set_edit("spread", side, None, v))
                    for k, motion in enumerate(WRIST_MOTIONS):
                        lo, hi = WRIST_RANGE[motion]
                        self._pose_slider(f"{side} wrist {motion}", lo, hi,
                                          lambda v, side=side, k=k: self._set_edit("wrist", side, k, v))
                reset = gui.add_button("reset pose")
                reset.on_click(lambda _e: self._reset_pose())

    def _pose_slider(self, label: str, lo: float, hi: float, on_value) -> None:
        sl = self.client.gui.add_slider(label, lo, hi, 1.0, 0.0)
        sl.on_update(lambda e: on_value(float(e.target.value)))
        self.pose_sliders.append(sl)

    # ---------------------------------------------------------------------------------------------------
    # settings: each copies the settings (a render in flight keeps the ones it started with)
    def _set_frame(self, frame: int) -> None:
        self.st = replace(self.st, frame=frame)
        self._pose_changed()

    def _set_channel(self, channel: str) -> None:
        self.channel = channel
        self.refresh()

    def _set_appearance(self, name: str) -> None:
        self.st = replace(self.st, appearance=None if name == "run" else name)
        self.refresh()

    def _unedited(self, st: ViewSettings) -> ViewSettings:
        sides = self.mv.sides
        return replace(st, flex={s: [0.0] * 5 for s in sides}, spread={s: [0.0] * 5 for s in sides},
                       wrist={s: [0.0] * 3 for s in sides})

    def _set_edit(self, kind: str, side: str, k: int | None, deg: float) -> None:
        """One slider: ``kind`` flex / spread / wrist, angle ``k`` of that side (spread: None, one slider fans
        every finger but the middle one away from it)."""
        edits = {s: list(v) for s, v in getattr(self.st, kind).items()}
        if k is None:
            edits[side] = fanned(deg)
        else:
            edits[side][k] = deg
        self.st = replace(self.st, **{kind: edits})
        self._pose_changed()

    def _reset_pose(self) -> None:
        for sl in self.pose_sliders:
            sl.value = 0.0
        self.st = self._unedited(self.st)
        self._pose_changed()

    def _pose_changed(self) -> None:
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
        """Re-render for the browser's current camera (on every camera message and setting change)."""
        try:
            cam = self.client.camera
            view = ViewCamera(tuple(cam.wxyz), tuple(cam.position), float(cam.fov), float(cam.aspect))
        except AssertionError:  # no camera message yet
            return
        self.renderer.request((view, self.st, self.channel))

    def close(self) -> None:
        self.renderer.stop(timeout=0.0)
        self._mesh_pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------------
    def _render(self, req, scale: float) -> dict:
        cam, st, _channel = req
        return self.mv.render(st, cam, scale)

    def _publish(self, req, r: dict, full: bool) -> None:
        _cam, st, channel = req
        img = colourise(r, channel)
        self.client.scene.set_background_image(img, format="jpeg", jpeg_quality=92)
        if not full:
            return
        mv = self.mv
        H, W = img.shape[:2]
        near = mv.nearest_view(st.frame, r["world_to_cam"])
        if near is not None:
            j, self.nearest = near
            self.gt_text.content = f"ground truth: frame {st.frame}, camera {mv.cameras[self.nearest]['name']}"
            self.gt_image.image = mv.cache.view(j)["rgb"]
        if self.input_image is not None and r.get("input_view") is not None:
            j = int(r["input_view"])
            self.input_text.content = f"input view: camera {mv.cameras[int(mv.view_table['camera'][j])]['name']}"
            self.input_image.image = mv.cache.view(j)["rgb"]
        self.status.content = (f"**{mv.m.method}** · frame {st.frame} · {channel} {W}x{H} in {r['seconds']:.2f} s"
                               f"  \nfull-resolution frames: {self.renderer.full + 1} · "
                               f"previews: {self.renderer.previews}")

    # ---------------------------------------------------------------------------------------------------
    def _snap_to_nearest(self) -> None:
        if self.nearest is None:
            return
        cam = self.mv.cameras[self.nearest]
        M = np.asarray(cam["world_to_cam"])
        _wxyz, eye = viser_pose(M)
        R_wc = M[:3, :3].T
        dist = float(np.linalg.norm(self.mv.orbit.center - eye))
        with self.client.atomic():
            self.client.camera.position = tuple(eye)
            self.client.camera.look_at = tuple(eye + R_wc[:, 2] * dist)
            self.client.camera.up_direction = tuple(-R_wc[:, 1])
            self.client.camera.fov = vertical_fov(cam["K"], cam["height"])

    def _update_skeleton_overlay(self) -> None:
        sk = self.mv.skeletons(self.st)
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
            self._mesh_pool.submit(self._add_meshes, self.st)

    def _add_meshes(self, st: ViewSettings) -> None:
        try:
            meshes = self.mv.meshes(st, self.v.mesh_resolution)
        except Exception as e:  # e.g. a frame without a hand: say so in the GUI and keep serving
            self.status.content = f"mesh overlay: {e}"
            return
        if not self.show_mesh or st is not self.st:
            return
        for part, mesh in meshes.items():
            if part == "scene" or len(mesh.faces) == 0:
                continue
            self._mesh_handles.append(self.client.scene.add_mesh_simple(
                f"/mesh/{part}", np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32),
                color=MESH_COLOURS.get(part, (200, 200, 200)), opacity=0.5, side="double"))
