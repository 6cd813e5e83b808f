"""``handcli inspect``: summarise any handcli artifact."""

from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    path: Path = typer.Argument(..., help="A cache (.h5) or another handcli artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    all_frames: bool = typer.Option(False, "--all", help="List every frame (default: the first 100)."),
) -> None:
    """Summarise a handcli artifact (cache: cameras, frames, hands, MANO parameters)."""
    import json

    from handcli.errors import InputError

    if not path.exists():
        raise InputError("not found", path=path)
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        from handcli.data.cache import Cache

        with Cache(path) as c:
            summary = c.summary(all_frames=all_frames)
    else:
        raise InputError("not a handcli artifact this version can inspect (expected a cache .h5)", path=path)
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{summary['path']}[/bold]  schema {summary['schema']}  dataset {summary['dataset']}  "
              f"scale {summary['scale']}")
    con.print(f"{summary['num_frames']} frames, {summary['num_views']} views, {summary['num_cameras']} cameras")
    t = Table("camera", "capture", "size", "fx", "fy", "cx", "cy")
    for cam in summary["cameras"]:
        K = cam["K"]
        t.add_row(cam["name"], str(cam["capture"]), f"{cam['width']}x{cam['height']}", f"{K[0][0]:.1f}",
                  f"{K[1][1]:.1f}", f"{K[0][2]:.1f}", f"{K[1][2]:.1f}")
    con.print(t)
    t = Table("frame", "hands", "mano", "views")
    for fr in summary["frames"][:20]:
        hands = ",".join(fr["hands"])
        mano = ",".join(s for s, h in fr["hands"].items() if h["mano"] is not None)
        t.add_row(fr["id"], hands, mano or "-", str(fr["views"]))
    con.print(t)
