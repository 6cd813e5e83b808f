"""``handcli view``: serve a trained run in the browser (viser)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Device, RunArg


def view_command(
    run: RunArg,
    cache: Optional[Path] = typer.Argument(None, help="Cache whose poses and cameras to show (default: the "
                                                      "training cache)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, help="Port to listen on (the next free one if it is taken)."),
    resolution: int = typer.Option(256, help="Long side (pixels) of the image rendered when the camera rests."),
    preview_scale: float = typer.Option(0.25, help="Fraction of --resolution rendered while the camera moves."),
    mesh_resolution: int = typer.Option(64, help="Marching-cubes grid of the mesh overlay."),
    device: Device = "auto",
) -> None:
    """Browser viewer: free orbit with live renders, frame slider, ground truth of the nearest cache camera,
    mesh overlay, subject appearance and (HandOcc) skeleton editing. Prints its URL; Ctrl-C stops it."""
    import time

    from handcli.errors import InputError
    from handcli.methods.base import read_run_config
    from handcli.progress import log
    from handcli.registry import method_class

    if resolution < 8:
        raise InputError(f"--resolution must be at least 8, got {resolution}", field="resolution")
    if not 0.0 < preview_scale <= 1.0:
        raise InputError(f"--preview-scale must be in (0, 1], got {preview_scale}", field="preview-scale")
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}", field="port")
    if mesh_resolution < 8:
        raise InputError(f"--mesh-resolution must be at least 8, got {mesh_resolution}", field="mesh-resolution")
    name = read_run_config(run)["method"]
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    m = method_class(name).from_run(run, cache, device)

    from handcli.viewer.app import Viewer

    viewer = Viewer(m, host=host, port=port, resolution=resolution, preview_scale=preview_scale,
                    mesh_resolution=mesh_resolution)
    log(f"{m.method}: serving {run} on {viewer.url} (Ctrl-C to stop)")
    print(viewer.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
