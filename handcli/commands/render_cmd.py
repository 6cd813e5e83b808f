"""``handcli render``: render a trained run's views, orbits and pose videos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Device, Force, RunArg


def render_command(
    run: RunArg,
    cache: Path = typer.Argument(..., help="Cache or shard directory whose poses and cameras to render (training or novel)."),
    out: Path = typer.Option(..., "-o", "--out", help="Renders folder to create."),
    views: Optional[str] = typer.Option(None, "--views", help="Cameras to render (comma-separated ids)."),
    frames: Optional[str] = typer.Option(None, help="Cache frame indices, e.g. '0-4'."),
    orbit: int = typer.Option(0, help="Also render N novel views on an orbit around each selected frame."),
    video: bool = typer.Option(False, "--video", help="Write a pose-sequence video (mp4, gif fallback)."),
    max_views: Optional[int] = typer.Option(None, help="Render at most this many cache views."),
    device: Device = "auto",
    appearance: Optional[Path] = typer.Option(None, "--appearance", help="Render with the hand appearance of "
                                              "this reference (methods with an appearance model: handocc): an "
                                              "image (a hand on black, with an alpha mask, or with "
                                              "--appearance-mask) or a cache .h5 with --appearance-view."),
    appearance_mask: Optional[Path] = typer.Option(None, "--appearance-mask", help="Hand mask of the "
                                                   "--appearance image (same size; non-zero = hand)."),
    appearance_view: Optional[int] = typer.Option(None, "--appearance-view", help="View index of the "
                                                  "--appearance cache whose hand (masked by the cache's labels) "
                                                  "gives the appearance."),
    edit: Optional[list[str]] = typer.Option(None, "--edit", help="Edit the skeletons before rendering (methods "
                                             "driven by a skeleton: handocc), repeatable: SIDE:KIND=ANGLES in "
                                             "degrees, KIND flex (5 angles thumb..pinky, or one for all), spread (5, "
                                             "or one: every finger but the middle away from it) or wrist (flexion, "
                                             "deviation, twist), e.g. right:flex=0,60,60,60,60 right:wrist=30,0,0."),
    force: Force = False,
) -> None:
    """Render RGB, depth and opacity (PNG + float depth), a contact sheet and optional orbit/pose videos."""
    import time

    import numpy as np
    import torch

    from handcli.checks import check_indices, check_option
    from handcli.data.raybatch import select_views
    from handcli.data.selection import parse_selection
    from handcli.errors import InputError
    from handcli.hand.pose_edit import edit_skeleton, parse_edits
    from handcli.methods.base import read_run_config
    from handcli.outputs import atomic_path
    from handcli.progress import log, progress
    from handcli.registry import method_class
    from handcli.render.orbit import orbit_from_cache
    from handcli.render.renders_folder import RendersWriter, contact_sheet
    from handcli.render.video import write_video

    check_option("orbit", orbit, lo=0)
    check_option("max_views", max_views, lo=1)
    if appearance is None and (appearance_mask is not None or appearance_view is not None):
        raise InputError("--appearance-mask and --appearance-view need --appearance", field="appearance")
    if appearance is not None:
        is_cache = appearance.suffix.lower() in (".h5", ".hdf5")
        if is_cache != (appearance_view is not None):
            raise InputError("a cache (.h5) as --appearance needs --appearance-view N, and only a cache takes it",
                             path=appearance, field="appearance_view")
        if is_cache and appearance_mask is not None:
            raise InputError("--appearance-mask is for images; a cache view is masked by the cache's labels",
                             field="appearance_mask")
    edits = parse_edits(edit or [])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    m = method_class(read_run_config(run)["method"]).from_run(run, cache, device)
    if edits and "skeleton" not in m.capabilities:
        raise InputError(f"method {m.method} is not driven by a skeleton; --edit is for handocc runs", field="--edit")
    if appearance is not None:
        if "appearance" not in m.capabilities:
            raise InputError(f"method {m.method} has no appearance model", field="appearance")
        m.set_appearance(appearance, mask=appearance_mask, view=appearance_view)
    c = m.cache
    sel_frames = parse_selection(frames)
    if sel_frames:
        check_indices("frames", sel_frames, c.num_frames, c.path)
    cams = [x.strip().removeprefix("cam") for x in views.split(",")] if views else None
    view_ids = select_views(c, cams, sorted(sel_frames) if sel_frames is not None else None)
    if max_views is not None:
        view_ids = view_ids[:max_views]
    if not len(view_ids) and not orbit and not video:
        raise InputError("no cache view matches the selection (nothing to render)", path=c.path,
                         field="--views" if cams else "--frames")
    vt = c.view_table()
    cam_list = c.cameras()
    orbit_frames = (sorted(sel_frames) if sel_frames else [int(vt["frame"][view_ids[0]]) if len(view_ids) else 0]
                    ) if orbit else []
    vid_frames = (sorted(sel_frames) if sel_frames else list(range(c.num_frames))) if video else []
    if edits:  # each frame to render gets its edited skeletons once, starting from the pose the run renders
        present = set()
        for f in sorted(set(vt["frame"][view_ids].tolist()) | set(orbit_frames) | set(vid_frames)):
            skeletons = m.skeletons(int(f))
            present.update(s for s, _ in skeletons)
            m.set_skeletons(int(f), [(s, edit_skeleton(j, s, **edits.get(s, {}))) for s, j in skeletons])
        for side in sorted(set(edits) - present):
            raise InputError(f"no frame to render has a {side} hand", path=c.path, field="--edit")

    written = []
    config = {"views": cams, "frames": sorted(sel_frames) if sel_frames else None, "orbit": orbit, "video": video,
              "edits": edits or None,
              "appearance": str(appearance.resolve()) if appearance else None,
              "appearance_mask": str(appearance_mask.resolve()) if appearance_mask else None,
              "appearance_view": appearance_view}
    with atomic_path(out, force=force, is_dir=True, inputs=[run, cache, appearance, appearance_mask],
                     kind="renders") as tmp:
        w = RendersWriter(tmp, m.method, run, c.path, "views", config)
        sheet = []

        with torch.no_grad(), progress() as bar:
            task = bar.add_task("render views", total=len(view_ids))
            for j in view_ids:
                cam = cam_list[int(vt["camera"][j])]
                frame = int(vt["frame"][j])
                t = time.perf_counter()
                r = m.render_camera(frame, cam["K"], cam["world_to_cam"], cam["height"], cam["width"])
                rec = c.frame(frame)
                w.add(r["rgb"], r["depth"], r["opacity"], {
                    "name": f"f{frame:04d}_cam{cam['name']}", "cache_view": int(j), "frame": frame,
                    "frame_key": rec.key, "camera": cam["name"], "K": cam["K"], "world_to_cam": cam["world_to_cam"],
                    "seconds": time.perf_counter() - t}, semantic=r.get("semantic"))
                if len(sheet) < 8:
                    v = c.view(int(j))
                    gt = v["rgb"].astype(np.float32) / 255.0 * (v["label"] > 0)[..., None]
                    sheet.append(((r["rgb"], gt), f"frame {frame} cam {cam['name']}"))
                bar.advance(task)
            if sheet:
                contact_sheet([s for s, _ in sheet], [lbl for _, lbl in sheet], tmp / "contact_sheet.png")
            w.close()
            if orbit > 0:
                task = bar.add_task("render orbit", total=orbit * len(orbit_frames))
                ow = RendersWriter(tmp / "orbit", m.method, run, c.path, "orbit", config)
                images = []
                for frame in orbit_frames:
                    ob = orbit_from_cache(c, frame, orbit)
                    for k, (K, M) in enumerate(ob.cameras):
                        t = time.perf_counter()
                        r = m.render_camera(frame, K, M, ob.height, ob.width)
                        ow.add(r["rgb"], r["depth"], r["opacity"], {"name": f"f{frame:04d}_orbit{k:03d}", "frame": frame,
                                                                    "K": K, "world_to_cam": M,
                                                                    "seconds": time.perf_counter() - t})
                        images.append((r["rgb"] * 255).astype(np.uint8))
                        bar.advance(task)
                ow.close()
                written.append(write_video(images, tmp / "orbit.mp4", fps=12))
            if video:
                cam_idx = int(vt["camera"][view_ids[0]]) if len(view_ids) else 0
                cam = cam_list[cam_idx]
                task = bar.add_task("render pose video", total=len(vid_frames))
                pw = RendersWriter(tmp / "poses", m.method, run, c.path, "poses", config)
                images = []
                for frame in vid_frames:
                    t = time.perf_counter()
                    r = m.render_camera(frame, cam["K"], cam["world_to_cam"], cam["height"], cam["width"])
                    pw.add(r["rgb"], r["depth"], r["opacity"], {"name": f"f{frame:04d}_cam{cam['name']}",
                                                                "frame": frame, "camera": cam["name"], "K": cam["K"],
                                                                "world_to_cam": cam["world_to_cam"],
                                                                "seconds": time.perf_counter() - t})
                    images.append((r["rgb"] * 255).astype(np.uint8))
                    bar.advance(task)
                pw.close()
                written.append(write_video(images, tmp / "poses.mp4", fps=8))
    log(f"rendered {len(view_ids)} views" + (f", an orbit of {orbit}" if orbit else "") +
        (", a pose video" if video else ""))
    print(out)
    for p in written:
        print(out / Path(p).name)
