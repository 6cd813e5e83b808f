"""``handcli cache``: operations on caches (merge shards)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from handcli.commands.options import Force

app = typer.Typer(help="Operations on HDF5 caches.", no_args_is_help=True)


@app.command("merge")
def merge(
    shards: List[Path] = typer.Argument(..., help="Shard caches, in shard order."),
    out: Path = typer.Option(..., "-o", "--out", help="Merged cache to write."),
    force: Force = False,
) -> None:
    """Join shard caches written with --shard i/N into one cache (same order as an unsharded run)."""
    from handcli.commands.cmdline import command_line
    from handcli.data.cache import merge_caches
    from handcli.outputs import atomic_path
    from handcli.progress import log

    with atomic_path(out, force=force, inputs=shards) as tmp:
        res = merge_caches(list(shards), tmp, command=command_line())
    log(f"merged {len(shards)} caches: {res['frames']} frames")
    print(out)
