"""``handcli mesh``: extract a trained run's surfaces for one cache frame or a pose sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Device, Force, RunArg


def mesh_command(
    run: RunArg,
    cache: Optional[Path] = typer.Argument(None, help="Cache or shard directory whose frame to mesh (default: the training cache)."),
    frame: Optional[int] = typer.Option(None, "--frame", help="Cache frame index."),
    frames: Optional[str] = typer.Option(None, "--frames", help="A pose sequence instead: cache frame indices, "
                                         "e.g. '0-9'; one sub-folder frameNNNN/ per frame."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for one file per part (hand, or right and left; "
                                                      "object and scene for hand-object runs); a file path "
                                                      "ending in the format's suffix for a single hand."),
    fmt: str = typer.Option("ply", "--format", help="Mesh file format: ply, obj or glb."),
    resolution: int = typer.Option(128, help="Grid cells along the longest side of each part's box."),
    png: bool = typer.Option(True, "--png/--no-png", help="Also write a picture of the meshes (mesh.png in the "
                             "folder, or NAME.png beside a single file)."),
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Marching cubes of the run's surfaces; prints each mesh path (the picture's path goes to stderr)."""
    import torch

    from handcli.checks import check_indices, check_option
    from handcli.data.selection import parse_selection
    from handcli.errors import InputError
    from handcli.export.meshes import MESH_FORMATS, mesh_sheet, write_mesh_files
    from handcli.methods.base import read_run_config
    from handcli.outputs import check_writable
    from handcli.progress import log, progress, stage_progress
    from handcli.registry import method_class

    check_option("resolution", resolution, lo=8, hi=1024)
    if (frame is None) == (frames is None):
        raise InputError("give either --frame N or --frames SPEC", field="frame")
    fmt = fmt.lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise InputError(f"--format must be one of {', '.join(MESH_FORMATS)}", field="format")
    single_file = out.suffix.lower() == f".{fmt}"
    if frames is not None and single_file:
        raise InputError("--frames writes a folder; give a folder for -o", path=out)
    check_writable(out, force, inputs=[run, cache])
    png_path = None
    if png:
        png_path = out.with_suffix(".png") if single_file else out / "mesh.png"
        if single_file:
            check_writable(png_path, force, inputs=[run, cache])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = read_run_config(run)["method"]
    m = method_class(name).from_run(run, cache, device)
    if "mesh" not in m.capabilities:
        raise InputError(f"method {name} has no mesh extraction", path=run)
    if frames is not None:
        sel = sorted(parse_selection(frames))
        check_indices("frames", sel, m.cache.num_frames, m.cache.path)
        seq = {}
        with progress() as bar:
            task = bar.add_task(f"mesh {len(sel)} frames", total=len(sel))
            for f in sel:
                seq[f] = m.extract_meshes(f, resolution)
                bar.advance(task)
    else:
        check_indices("frame", [frame], m.cache.num_frames, m.cache.path)
        with stage_progress("mesh", [f"marching cubes of frame {frame}"]):
            seq = {frame: m.extract_meshes(frame, resolution)}
    if all(not meshes or all(len(mesh.faces) == 0 for mesh in meshes.values()) for meshes in seq.values()):
        raise InputError("every surface is empty (nothing above the 0.5 level); nothing to write", path=run,
                         field="frame" if frames is None else "frames")
    for f, meshes in seq.items():
        if single_file and len(meshes) != 1:
            raise InputError(f"frame {f} has {len(meshes)} parts ({', '.join(meshes)}); give a folder for -o",
                             path=out)
        for part, mesh in meshes.items():
            if len(mesh.faces) == 0:
                log(f"warning: frame {f}: {part}: empty surface (nothing above the 0.5 level)")
    sheet = mesh_sheet(seq) if png else None
    written = write_mesh_files(seq, out, fmt, single_file=single_file, sequence=frames is not None,
                               picture=sheet, picture_path=png_path, force=force,
                               inputs=[run, cache])
    for f, meshes in seq.items():
        log(f"{name}: frame {f}: " + ", ".join(f"{p} {len(mm.vertices)} vertices" for p, mm in meshes.items()))
    if png_path is not None:
        log(f"picture: {png_path}")
    for p in written:
        print(p)
