"""``handcli mesh``: extract a trained run's surfaces for one cache frame as PLY files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def mesh_command(
    run: Path = typer.Argument(..., help="Run folder from 'handcli train'."),
    cache: Optional[Path] = typer.Argument(None, help="Cache whose frame to mesh (default: the training cache)."),
    frame: int = typer.Option(..., "--frame", help="Cache frame index."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for one PLY per part (hand.ply, or right.ply and "
                                                      "left.ply); a path ending in .ply for a single hand."),
    resolution: int = typer.Option(128, help="Grid cells along the longest side of each part's box."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    """Marching cubes of the run's surfaces for one frame; prints each PLY path."""
    import torch

    from handcli.checks import check_indices, check_option
    from handcli.errors import InputError
    from handcli.methods.base import read_run_config
    from handcli.outputs import atomic_path, check_writable
    from handcli.progress import log
    from handcli.registry import method_class

    check_option("resolution", resolution, lo=8, hi=1024)
    check_writable(out, force, inputs=[run, cache])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = read_run_config(run)["method"]
    m = method_class(name).from_run(run, cache, device)
    if not hasattr(m, "extract_meshes"):
        raise InputError(f"method {name} has no mesh extraction", path=run)
    check_indices("frame", [frame], m.cache.num_frames, m.cache.path)
    meshes = m.extract_meshes(frame, resolution)
    single_file = out.suffix.lower() == ".ply"
    if single_file and len(meshes) != 1:
        raise InputError(f"frame {frame} has {len(meshes)} parts ({', '.join(meshes)}); give a folder for -o",
                         path=out)
    if not meshes or all(len(mesh.faces) == 0 for mesh in meshes.values()):
        raise InputError(f"frame {frame}: every surface is empty (nothing above the 0.5 level); nothing to "
                         "write", path=run, field="frame")
    for part, mesh in meshes.items():
        if len(mesh.faces) == 0:
            log(f"warning: {part}: empty surface (nothing above the 0.5 level)")
    written = []
    if single_file:
        with atomic_path(out, force=force, inputs=[run, cache]) as tmp:
            tmp.write_bytes(next(iter(meshes.values())).export(file_type="ply"))
        written.append(out)
    else:
        with atomic_path(out, force=force, is_dir=True, inputs=[run, cache], kind="meshes") as tmp:
            for part, mesh in meshes.items():
                (tmp / f"{part}.ply").write_bytes(mesh.export(file_type="ply"))
        written += [out / f"{part}.ply" for part in meshes]
    log(f"{name}: frame {frame}: " + ", ".join(f"{p} {len(mm.vertices)} vertices" for p, mm in meshes.items()))
    for p in written:
        print(p)
