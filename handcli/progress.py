"""Rich progress bars and logging on stderr (stdout carries only output paths)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress() -> Progress:
    """A progress bar that writes to stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def log(msg: str) -> None:
    console.print(msg, highlight=False)


@contextmanager
def stage_progress(title: str, stages: list[str]) -> Iterator[Callable[[str | None], None]]:
    """A progress bar over the named stages of one long computation, with elapsed time and an ETA.

    Yields ``next_stage(name=None)``: marks the current stage done and shows ``name`` (or the next listed
    stage) as running. Stages left unmarked are completed when the block ends without an error.
    """
    with progress() as bar:
        task = bar.add_task(f"{title}: {stages[0]}", total=len(stages))
        state = {"i": 0}

        def next_stage(name: str | None = None) -> None:
            state["i"] += 1
            if state["i"] < len(stages):
                label = name or stages[state["i"]]
                bar.update(task, completed=state["i"], description=f"{title}: {label}")

        yield next_stage
        bar.update(task, completed=len(stages), description=f"{title}: done")
