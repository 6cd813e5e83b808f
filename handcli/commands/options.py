"""Options and arguments that several commands share, defined once (``device: Device = "auto"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Device = Annotated[str, typer.Option(help="cpu, cuda or auto.")]
# every output is written to a temporary beside it and swapped in when complete (handcli.outputs)
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
RunArg = Annotated[Path, typer.Argument(help="Run folder from 'handcli train' or 'handcli adapt'.")]
CacheArg = Annotated[Path, typer.Argument(help="Cache file (.h5) written by 'handcli preprocess', or a directory "
                                               "of shard caches.")]
TrainSeed = Annotated[int, typer.Option(help="Random seed of everything: initialisation, batches, data order.")]
