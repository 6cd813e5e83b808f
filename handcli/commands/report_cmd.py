"""``handcli report``: one HTML page for a folder of trained, rendered and evaluated methods."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Force


def report_command(
    folder: Path = typer.Argument(..., help="Folder with one sub-folder per method (run/, renders/, "
                                            "metrics.json), as `make demo` writes demo_out/."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="HTML page to write (default: "
                                       "FOLDER/index.html)."),
    title: str = typer.Option("handcli report", help="Page title."),
    seconds: Optional[float] = typer.Option(None, help="Wall time of the whole run, stated on the page."),
    force: Force = False,
) -> None:
    """Metrics side by side, contact sheets, orbit animations, training curves and the hand model picture in
    one self-contained page (pictures embedded) that opens in any browser without a server."""
    from handcli.progress import log
    from handcli.report import write_report

    path = write_report(folder, out or folder / "index.html", title=title, seconds=seconds, force=force)
    log(f"open {path} in a browser")
    print(path)
