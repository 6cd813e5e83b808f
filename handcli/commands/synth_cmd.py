"""``handcli synth``: synthetic datasets in each real dataset's exact layout."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Write synthetic datasets in the real datasets' on-disk layouts.", no_args_is_help=True)


@app.command("interhand")
def interhand(
    out: Path = typer.Argument(..., help="Dataset root to create (must not exist unless --force)."),
    split: str = typer.Option("train", help="Split folder to write (train, val, test)."),
    captures: int = typer.Option(1, min=1, help="Number of captures (Capture0..)."),
    seqs: str = typer.Option("right,interacting", help="Comma-separated sequence kinds: right, left, interacting."),
    frames: int = typer.Option(6, min=1, help="Frames per sequence."),
    cameras: int = typer.Option(8, min=1, help="Colour cameras: N-1 portrait (512x334) + 1 landscape."),
    mono_cameras: int = typer.Option(1, min=0, help="Monochrome (410xxx) landscape cameras."),
    camera_ids: str = typer.Option("", help="Explicit comma-separated portrait camera ids (overrides --cameras)."),
    black_frame: bool = typer.Option(True, help="Include an all-black (failed capture) frame."),
    null_mano: bool = typer.Option(True, help="Null the left-hand MANO entry of one interacting frame."),
    seed: int = typer.Option(0, help="Random seed; the output is deterministic given the seed."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Synthetic InterHand2.6M v1.0 (images + the four annotation JSONs), ground truth in handcli_gt/."""
    from handcli.errors import InputError
    from handcli.outputs import atomic_path
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    kinds = tuple(s.strip() for s in seqs.split(",") if s.strip())
    bad = [k for k in kinds if k not in ("right", "left", "interacting")]
    if bad or not kinds:
        raise InputError(f"unknown sequence kind(s) {bad}; use right, left, interacting", field="seqs")
    cfg = InterHandSynthConfig(split=split, captures=captures, seqs=kinds, frames=frames, cameras=cameras,
                               mono_cameras=mono_cameras,
                               camera_ids=tuple(c.strip() for c in camera_ids.split(",") if c.strip()),
                               black_frame=black_frame, null_mano=null_mano, seed=seed)
    with atomic_path(out, force=force, is_dir=True) as tmp:
        write_interhand(tmp, cfg)
    print(out)
