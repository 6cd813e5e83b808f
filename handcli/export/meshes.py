"""Mesh files of one frame or a pose sequence (``handcli mesh``), as PLY, OBJ or GLB, with a picture.

Layouts (``out`` is the ``-o`` path)::

    out.ply (.obj/.glb) + out.png           one frame, one part
    out/<part>.ply + out/mesh.png           one frame (parts: hand, or right and left; object, scene)
    out/frame0007/<part>.ply + out/mesh.png a pose sequence (one folder per cache frame)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcli.outputs import atomic_path
from handcli.render.mesh_png import mesh_views
from handcli.render.renders_folder import tile_grid, write_png

MESH_FORMATS = ("ply", "obj", "glb")
MAX_SHEET_FRAMES = 12


def mesh_bytes(mesh, fmt: str) -> bytes:
    """A trimesh mesh encoded as ``fmt`` (ply binary, obj text, glb binary glTF)."""
    data = mesh.export(file_type=fmt)
    return data.encode("utf-8") if isinstance(data, str) else data


def frame_folder(frame: int) -> str:
    return f"frame{frame:04d}"


def mesh_sheet(seq: dict[int, dict], size: int = 192) -> np.ndarray:
    """A picture of {frame: {part: mesh}}: one frame -> its three views; several -> a near-square grid of
    labelled frames (at most MAX_SHEET_FRAMES, evenly spaced). (H, W, 3) uint8 RGB."""
    frames = sorted(seq)
    if len(frames) == 1:
        return mesh_views(seq[frames[0]], size=size, label=f"frame {frames[0]}")
    if len(frames) > MAX_SHEET_FRAMES:
        frames = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, MAX_SHEET_FRAMES).round()]
    return tile_grid([mesh_views(seq[f], size=size, label=f"frame {f}") for f in frames], gap=4)


def write_mesh_files(seq: dict[int, dict], out: Path, fmt: str, *, single_file: bool, sequence: bool,
                     picture: np.ndarray | None = None, picture_path: Path | None = None,
                     force: bool = False, inputs=()) -> list[Path]:
    """Write {frame: {part: trimesh}} in the layout above; returns the mesh paths (not the picture's).

    single_file: ``out`` is the file of the one part of the one frame; sequence: one folder per frame.
    Folders are written atomically (nothing is left on an error); ``inputs``: the stage's inputs, which an
    output may never replace (``outputs.check_writable``).
    """
    out = Path(out)
    if single_file:
        (frame, meshes), = seq.items()
        mesh = next(iter(meshes.values()))
        with atomic_path(out, force=force, inputs=inputs) as tmp:
            tmp.write_bytes(mesh_bytes(mesh, fmt))
        if picture is not None and picture_path is not None:
            with atomic_path(picture_path, force=force, inputs=inputs) as tmp:
                write_png(tmp, picture)
        return [out]
    written = []
    with atomic_path(out, force=force, is_dir=True, inputs=inputs, kind="meshes") as tmp:
        for frame, meshes in seq.items():
            sub = Path(frame_folder(frame)) if sequence else Path()
            (tmp / sub).mkdir(exist_ok=True)
            for part, mesh in meshes.items():
                (tmp / sub / f"{part}.{fmt}").write_bytes(mesh_bytes(mesh, fmt))
                written.append(out / sub / f"{part}.{fmt}")
        if picture is not None:
            write_png(tmp / "mesh.png", picture)
    return written
