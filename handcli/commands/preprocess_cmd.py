"""``handcli preprocess``: dataset roots -> HDF5 caches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from handcli.commands.options import Force

app = typer.Typer(help="Read a dataset in its real layout and write an HDF5 cache.", no_args_is_help=True)

# Options every dataset's preprocess takes, as (annotation, default): one definition, added to each command by
# @_dataset_command.
COMMON = {
    "out": (Path, typer.Option(..., "-o", "--out", help="Cache file to write (.h5).")),
    "workers": (int, typer.Option(1, min=1, help="Parallel worker processes.")),
    "shard": (Optional[str], typer.Option(None, help="Process shard i of N ('i/N'); join with 'cache merge'.")),
    "mano_dir": (Optional[Path], typer.Option(None, help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: "
                                                         "the open hand model).")),
    "mesh_from": (str, typer.Option("auto", help="Posed meshes from MANO 'params', from fitting to 3D 'joints', "
                                                 "or 'auto'.")),
    "force": (Force, False),
    "skip_bad_images": (bool, typer.Option(False, "--skip-bad-images", help="Skip truncated or undecodable "
                                           "images (counted and reported as 'bad image') instead of failing.")),
}
# Options of the hand-object datasets (DexYCB, HO-3D)
HandEstimates = Annotated[Optional[Path], typer.Option(
    "--hand-estimates", help="Folder of per-view estimated hand meshes (e.g. HandOccNet's; ROOT/handcli_est for "
    "synth --profile realistic), stored as the test-time input hand of handnerf-ho/pixelnerf; the ground-truth "
    "hand stays for training and metrics (docs/datasets-ho.md#hand-estimates).")]
Every = Annotated[int, typer.Option(min=1, help="Keep every N-th frame (HandNeRF, Choi uses 2).")]


def _dataset_command(name: str):
    """Register ``command(own options..., **common)`` as ``preprocess NAME``; typer sees its own parameters
    followed by ``COMMON``."""
    import functools
    import inspect

    def register(command):
        sig = inspect.signature(command, eval_str=True)  # real annotations: typer reads Annotated options there
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for name, (annotation, default) in COMMON.items()]

        @functools.wraps(command)
        def with_common(**kwargs):
            return command(**kwargs)

        with_common.__signature__ = sig.replace(parameters=own + extra)
        return app.command(name)(with_common)

    return register


@_dataset_command("interhand")
def interhand(
    root: Path = typer.Argument(..., help="InterHand2.6M root (holds images/ and annotations/)."),
    split: str = typer.Option("train", help="Split: train, val or test."),
    capture: Optional[str] = typer.Option(None, help="Capture ids, e.g. '0' or '0-3,7'."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated sequence names."),
    cameras: Optional[str] = typer.Option(None, help="Comma-separated camera ids (e.g. 400002,400004)."),
    frames: Optional[str] = typer.Option(None, help="Frame indices, e.g. '0-100,250'."),
    scale: float = typer.Option(1.0, help="Downscale factor (0.5 gives 256x167 like HandNeRF)."),
    keep_mono: bool = typer.Option(False, "--keep-mono", help="Keep monochrome (410xxx) cameras."),
    refine_masks: int = typer.Option(0, min=0, help="Refine the hand masks rendered from the MANO fits against "
                                                    "the image (GrabCut) within this many pixels of their edge "
                                                    "(of the scaled image); 0: as rendered "
                                                    "(docs/datasets.md#mask-refinement)."),
    **common,
) -> None:
    """InterHand2.6M v1.0 -> cache: cameras in metres, MANO, joints, images, masks, near/far bounds."""
    _preprocess("interhand", root, split=split, captures=capture, seqs=seq, cameras=cameras, frames=frames,
                scale=scale, keep_mono=keep_mono, refine_masks=refine_masks, **common)


@_dataset_command("dexycb")
def dexycb(
    root: Path = typer.Argument(..., help="DexYCB root (holds the subject folders, calibration/ and models/)."),
    split: Optional[str] = typer.Option(None, help="s0 split: s0_train, s0_val or s0_test (default: all)."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated sequences ('20200709_141754' or "
                                                 "'20200709-subject-01/20200709_141754')."),
    cameras: Optional[str] = typer.Option(None, "--cameras", "--camera",
                                          help="Comma-separated camera serials (e.g. 836212060125)."),
    frames: Optional[str] = typer.Option(None, help="Frame indices, e.g. '0-40,50'."),
    every: Every = 1,
    objects: Optional[str] = typer.Option(None, help="Grasped objects: YCB ids (e.g. 1,2,10,15) or names."),
    scale: float = typer.Option(1.0, help="Downscale factor for images and labels."),
    depth: bool = typer.Option(False, "--depth", help="Also store the aligned depth maps (float16 metres)."),
    hand_estimates: HandEstimates = None,
    **common,
) -> None:
    """DexYCB -> cache: world = calibration world; hand, grasped object, seg labels, near/far bounds."""
    _preprocess("dexycb", root, split=split, seqs=seq, cameras=cameras, frames=frames, every=every,
                objects=objects, scale=scale, depth=depth, hand_estimates=hand_estimates, **common)


@_dataset_command("ho3d")
def ho3d(
    root: Path = typer.Argument(..., help="HO-3D v3 root (holds train/, calibration/, train.txt)."),
    split: str = typer.Option("train", help="Split folder: train or evaluation."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated groups or sequences (e.g. ABF1 or ABF10,SM2)."),
    cameras: Optional[str] = typer.Option(None, "--cameras", "--camera",
                                          help="Comma-separated camera sequences (e.g. ABF10,ABF12)."),
    frames: Optional[str] = typer.Option(None, help="Frame ids, e.g. '200-800,1000'."),
    every: Every = 1,
    objects: Optional[str] = typer.Option(None, help="Objects: YCB ids (DexYCB numbering) or names."),
    listed_only: bool = typer.Option(False, "--listed-only", help="Only frames listed in train.txt / "
                                                                  "evaluation.txt."),
    models: Optional[Path] = typer.Option(None, help="YCB models folder (default ROOT/models; e.g. "
                                                     "$DEX_YCB_DIR/models)."),
    scale: float = typer.Option(1.0, help="Downscale factor for images and labels."),
    depth: bool = typer.Option(False, "--depth", help="Also store the decoded depth maps (float16 metres)."),
    hand_estimates: HandEstimates = None,
    **common,
) -> None:
    """HO-3D v3 -> cache: OpenGL converted to OpenCV, multi-camera reference world, seg labels, bounds."""
    _preprocess("ho3d", root, split=split, seqs=seq, cameras=cameras, frames=frames, every=every,
                objects=objects, listed_only=listed_only, models=str(models) if models else None, scale=scale,
                depth=depth, hand_estimates=hand_estimates, **common)


def _preprocess(dataset: str, root: Path, out: Path, mano_dir: Optional[Path], **options) -> None:
    """Run the preprocess registered for ``dataset`` (``registry.DATASETS``), log its counts, print ``out``."""
    from handcli.commands.cmdline import command_line
    from handcli.progress import log
    from handcli.registry import dataset_preprocess

    stats = dataset_preprocess(dataset)(root, out, mano_dir=str(mano_dir) if mano_dir else None,
                                        command=command_line(), **options)
    counts = ", ".join(f"{v} {k}" for k, v in stats["dropped_frames"].items()) or "none"
    dropped = f"dropped frames: {counts}"
    if "dropped_views" in stats:
        dropped += "; dropped views: " + (", ".join(f"{v} {k}" for k, v in stats["dropped_views"].items()) or "none")
    log(f"{stats['frames']} frames, {stats['views']} views written; {dropped}; {stats['images_per_s']:.1f} images/s")
    print(out)
