"""``handcli export``: handcli data in other tools' formats (docs/export.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Force

app = typer.Typer(help="Export handcli data for other tools (nerfstudio).", no_args_is_help=True)


@app.command("nerfstudio")
def nerfstudio(
    cache: Path = typer.Argument(..., help="Cache from 'handcli preprocess'."),
    out: Path = typer.Option(..., "-o", "--out", help="Dataset folder to create (transforms.json, images/, "
                                                      "masks/)."),
    cameras: Optional[str] = typer.Option(None, help="Training cameras (comma-separated ids; default: all not "
                                          "held out)."),
    eval_cameras: Optional[str] = typer.Option(None, help="Held-out cameras: nerfstudio's val/test split."),
    frames: Optional[str] = typer.Option(None, help="Cache frame indices, e.g. '0-9' (default all)."),
    black_background: bool = typer.Option(False, "--black-background", help="Set image pixels outside the "
                                          "hand/object masks to black (as handcli's methods are supervised)."),
    force: Force = False,
) -> None:
    """transforms.json in nerfstudio's convention (OpenGL camera-to-world, per-frame intrinsics), images and
    masks, so that nerfstudio's methods train on exactly the views handcli's methods use."""
    from handcli.commands.cmdline import camera_ids
    from handcli.data.cache import Cache
    from handcli.data.raybatch import select_views
    from handcli.data.selection import parse_selection
    from handcli.export.nerfstudio import export_nerfstudio
    from handcli.progress import log, progress

    sel = parse_selection(frames)
    train_cams, eval_cams = camera_ids(cameras), camera_ids(eval_cameras)
    with Cache(cache) as c:  # count the views for the progress bar (the export validates the selection)
        names = [cam["name"] for cam in c.cameras()]
        wanted = None if train_cams is None else sorted(set(train_cams) | set(eval_cams or []))
        n = len(select_views(c, wanted if wanted is not None else names, sorted(sel) if sel else None))
    with progress() as bar:
        task = bar.add_task("export nerfstudio", total=n)
        doc = export_nerfstudio(cache, out, train_cams, eval_cams, sorted(sel) if sel else None, black_background,
                                force, on_view=lambda: bar.advance(task))
    log(f"exported {len(doc['frames'])} views ({len(doc.get('val_filenames', []))} held out); train with "
        f"`ns-train nerfacto --data {out}`")
    print(out / "transforms.json")
