"""A cache's views as a nerfstudio dataset (``transforms.json`` + images + masks), docs/export.md.

nerfstudio reads ``transforms.json`` with camera-to-world matrices in the OpenGL/Blender convention (x right,
y up, z back) and pixel coordinates whose pixel *centres* lie at ``i + 0.5``. handcli cameras are OpenCV
(x right, y down, z forward) with pixel centres at integers (docs/conventions.md), so

    transform_matrix = inv(world_to_cam) @ diag(1, -1, -1, 1),   cx_ns = cx + 0.5,   cy_ns = cy + 0.5.

Every frame carries its own intrinsics (fl_x, fl_y, cx, cy, w, h): InterHand's cameras all differ. The
selected training / held-out cameras become nerfstudio's ``train_filenames`` / ``val_filenames`` /
``test_filenames`` (written only when cameras are held out; nerfstudio then splits by itself), so nerfstudio trains and evaluates on exactly the views handcli's methods use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from handcli.data.raybatch import select_views
from handcli.data.shards import open_cache
from handcli.errors import InputError
from handcli.outputs import atomic_path
from handcli.render.renders_folder import write_png

GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
PIXEL_CENTRE = 0.5  # nerfstudio's pixel centres are at i + 0.5, handcli's at i


def nerfstudio_camera(K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int) -> dict:
    """nerfstudio frame fields of an OpenCV camera: fl_x, fl_y, cx, cy, w, h and the (4, 4) OpenGL
    camera-to-world ``transform_matrix`` (nested lists). K: (3, 3); world_to_cam: (4, 4)."""
    K = np.asarray(K, dtype=np.float64)
    c2w = np.linalg.inv(np.asarray(world_to_cam, dtype=np.float64)) @ GL_FROM_CV
    return {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]) + PIXEL_CENTRE,
            "cy": float(K[1, 2]) + PIXEL_CENTRE, "w": int(width), "h": int(height),
            "transform_matrix": c2w.tolist()}


def project_nerfstudio(points: np.ndarray, frame: dict) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixel coordinates in handcli's convention (centres at integers)
    through a nerfstudio frame: the inverse of `nerfstudio_camera`, written from nerfstudio's side
    (camera looks down -z, image y up)."""
    c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    w2c_gl = np.linalg.inv(c2w)
    p = np.asarray(points, dtype=np.float64) @ w2c_gl[:3, :3].T + w2c_gl[:3, 3]
    x, y, z = p[:, 0], p[:, 1], -p[:, 2]  # z > 0 in front of the camera
    u = frame["fl_x"] * x / z + frame["cx"] - PIXEL_CENTRE
    v = -frame["fl_y"] * y / z + frame["cy"] - PIXEL_CENTRE
    return np.stack([u, v], axis=1)


def export_nerfstudio(cache_path: Path, out_dir: Path, cameras: list[str] | None = None,
                      eval_cameras: list[str] | None = None, frames: list[int] | None = None,
                      black_background: bool = False, force: bool = False, on_view=None) -> dict:
    """Write ``out_dir/transforms.json``, ``images/NNNNN.png`` and ``masks/NNNNN.png`` for the cache's views.

    cameras: training cameras (default: every camera not in eval_cameras); eval_cameras: held-out cameras
    (val and test filenames; default none); frames: cache frame indices (default all). Masks are 255 on the
    hand (and object) pixels of the cache's labels, 0 elsewhere (nerfstudio leaves 0 out of the loss);
    black_background sets the image background to black, as handcli's methods see their targets.
    on_view(): called after each written view (a progress hook). Returns the transforms.json document.
    Raises InputError for unknown cameras or an empty selection; nothing is written then.
    """
    with open_cache(cache_path) as c:
        cams = c.cameras()
        names = [cam["name"] for cam in cams]
        eval_set = set(eval_cameras or [])
        train_cams = cameras if cameras is not None else [n for n in names if n not in eval_set]
        overlap = sorted(set(train_cams) & eval_set)
        if overlap:
            raise InputError(f"cameras both in training and held out: {overlap}", field="eval_cameras")
        views = select_views(c, sorted(set(train_cams) | eval_set), frames)
        if len(views) == 0:
            raise InputError("no cache view matches the selected cameras and frames", path=cache_path,
                             field="views")
        vt = c.view_table()
        doc: dict = {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
        out_frames, split = [], {"train": [], "eval": []}
        with atomic_path(out_dir, force=force, is_dir=True) as tmp:
            (tmp / "images").mkdir()
            (tmp / "masks").mkdir()
            for i, j in enumerate(views):
                v = c.view(int(j))
                cam = cams[int(vt["camera"][j])]
                fg = v["label"] > 0
                rgb = v["rgb"] * fg[..., None] if black_background else v["rgb"]
                name = f"{i:05d}.png"
                write_png(tmp / "images" / name, np.ascontiguousarray(rgb))
                write_png(tmp / "masks" / name, (fg * 255).astype(np.uint8))
                frame = {"file_path": f"images/{name}", "mask_path": f"masks/{name}",
                         **nerfstudio_camera(cam["K"], cam["world_to_cam"], cam["width"], cam["height"]),
                         "handcli": {"cache_view": int(j), "frame": int(vt["frame"][j]), "camera": cam["name"],
                                     "frame_key": c.frame(int(vt["frame"][j])).key}}
                out_frames.append(frame)
                split["eval" if cam["name"] in eval_set else "train"].append(frame["file_path"])
                if on_view is not None:
                    on_view()
            shared = {k: out_frames[0][k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")
                      if all(f[k] == out_frames[0][k] for f in out_frames)}
            doc.update(shared)  # nerfstudio takes top-level values when a frame has none; ours all do
            doc["frames"] = out_frames
            if split["eval"]:  # nerfstudio wants all three lists or none
                doc["train_filenames"] = split["train"]
                doc["val_filenames"] = split["eval"]
                doc["test_filenames"] = split["eval"]
            doc["handcli"] = {"cache": str(Path(cache_path).resolve()), "convention": "OpenGL camera-to-world; "
                              "pixel centres at i + 0.5", "train_cameras": sorted(train_cams),
                              "eval_cameras": sorted(eval_set)}
            (tmp / "transforms.json").write_text(json.dumps(doc, indent=1))
    return doc
