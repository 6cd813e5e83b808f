"""``handcli synth``: synthetic datasets in each real dataset's exact layout."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from handcli.commands.options import Force

app = typer.Typer(help="Write synthetic datasets in the real datasets' on-disk layouts.", no_args_is_help=True)

PROFILE_HELP = ("ideal: annotations are exactly what was rendered; realistic: annotation error, hand detail "
                "outside the hand model, camera colour response, specular skin, sensor noise, JPEG 90 "
                "(see docs/datasets.md).")


# Options every synthetic dataset takes (one definition, shared by the commands below).
OUT = typer.Argument(..., help="Dataset root to create (must not exist unless --force).")
SEED = typer.Option(0, help="Random seed; the output is deterministic given the seed.")
PROFILE = typer.Option("ideal", help=PROFILE_HELP)
REALISM = typer.Option([], "--realism", help="Override one parameter of the profile: key=value (JSON value, "
                                             "e.g. mano_frame_mm=2 or gain=[0.9,1.1]); repeatable. Names and "
                                             "defaults: docs/datasets.md#realistic-profile.")


def _write(dataset: str, write, cfg, out: Path, force: bool) -> None:
    """``write(root, cfg)`` into a temporary beside ``out``, swapped in when complete; print ``out``."""
    from handcli.outputs import atomic_path

    with atomic_path(out, force=force, is_dir=True, kind=f"synth-{dataset}") as tmp:
        write(tmp, cfg)
    print(out)


def _realism(profile: str, dataset: str, sets: list[str]):
    """The profile's ``RealismConfig`` for ``dataset`` with the ``--realism key=value`` overrides applied."""
    from handcli.commands.cmdline import parse_sets
    from handcli.errors import InputError
    from handcli.synth.realism import PROFILES, check_overrides, realism_config

    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; use {', '.join(PROFILES)}", field="profile")
    try:
        overrides = check_overrides(parse_sets(sets, "--realism"))
    except ValueError as e:
        raise InputError(f"--realism {e}", field="realism") from None
    return realism_config(profile, dataset, **overrides)


@app.command("interhand")
def interhand(
    out: Path = OUT,
    split: str = typer.Option("train", help="Split folder to write (train, val, test)."),
    captures: int = typer.Option(1, min=1, help="Number of captures (Capture0..)."),
    seqs: str = typer.Option("right,interacting", help="Comma-separated sequence kinds: right, left, interacting."),
    frames: int = typer.Option(6, min=1, help="Frames per sequence."),
    cameras: int = typer.Option(8, min=1, help="Colour cameras: N-1 portrait (512x334) + 1 landscape."),
    mono_cameras: int = typer.Option(1, min=0, help="Monochrome (410xxx) landscape cameras."),
    camera_ids: str = typer.Option("", help="Explicit comma-separated portrait camera ids (overrides --cameras)."),
    black_frame: bool = typer.Option(True, help="Include an all-black (failed capture) frame."),
    null_mano: bool = typer.Option(True, help="Null the left-hand MANO entry of one interacting frame."),
    seed: int = SEED,
    profile: str = PROFILE,
    realism: List[str] = REALISM,
    force: Force = False,
) -> None:
    """Synthetic InterHand2.6M v1.0 (images + the four annotation JSONs), ground truth in handcli_gt/."""
    from handcli.errors import InputError
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    kinds = tuple(s.strip() for s in seqs.split(",") if s.strip())
    bad = [k for k in kinds if k not in ("right", "left", "interacting")]
    if bad or not kinds:
        raise InputError(f"unknown sequence kind(s) {bad}; use right, left, interacting", field="seqs")
    cfg = InterHandSynthConfig(split=split, captures=captures, seqs=kinds, frames=frames, cameras=cameras,
                               mono_cameras=mono_cameras,
                               camera_ids=tuple(c.strip() for c in camera_ids.split(",") if c.strip()),
                               black_frame=black_frame, null_mano=null_mano, seed=seed,
                               realism=_realism(profile, "interhand", realism))
    _write("interhand", write_interhand, cfg, out, force)


@app.command("dexycb")
def dexycb(
    out: Path = OUT,
    subjects: int = typer.Option(2, min=1, max=10, help="Subjects (right- and left-handed alternate)."),
    seqs: int = typer.Option(1, min=1, help="Sequences per subject."),
    frames: int = typer.Option(6, min=2, help="Frames per sequence (frame 0 has no hand)."),
    cameras: int = typer.Option(8, min=1, max=8, help="Camera serials (640x480)."),
    distractors: int = typer.Option(1, min=0, max=3, help="Other objects on the table."),
    seed: int = SEED,
    profile: str = PROFILE,
    realism: List[str] = REALISM,
    force: Force = False,
) -> None:
    """Synthetic DexYCB (hand grasping procedural YCB objects), ground truth in handcli_gt/."""
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    cfg = DexYCBSynthConfig(subjects=subjects, seqs=seqs, frames=frames, cameras=cameras, distractors=distractors,
                            seed=seed, realism=_realism(profile, "dexycb", realism))
    _write("dexycb", write_dexycb, cfg, out, force)


@app.command("ho3d")
def ho3d(
    out: Path = OUT,
    frames: int = typer.Option(5, min=1, help="Frames per sequence (frame 2 of the multi-camera base is "
                                              "unannotated)."),
    cameras: int = typer.Option(5, min=1, max=10, help="Cameras of the multi-camera base (BB10..)."),
    single: bool = typer.Option(True, help="Also write a single-camera sequence (SMu1)."),
    seed: int = SEED,
    profile: str = PROFILE,
    realism: List[str] = REALISM,
    force: Force = False,
) -> None:
    """Synthetic HO-3D v3 (OpenGL annotations, 320x240 seg, encoded depth), ground truth in handcli_gt/."""
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    cfg = HO3DSynthConfig(frames=frames, cameras=cameras, seed=seed,
                          single=HO3DSynthConfig.single if single else None, realism=_realism(profile, "ho3d", realism))
    _write("ho3d", write_ho3d, cfg, out, force)
