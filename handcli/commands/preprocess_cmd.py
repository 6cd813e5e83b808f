"""``handcli preprocess``: dataset roots -> HDF5 caches."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Read a dataset in its real layout and write an HDF5 cache.", no_args_is_help=True)

# Options every dataset's preprocess command takes (one definition, shared by the commands below).
WORKERS = typer.Option(1, min=1, help="Parallel worker processes.")
SHARD = typer.Option(None, help="Process shard i of N ('i/N'); join with 'cache merge'.")
MANO_DIR = typer.Option(None, help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: the open hand model).")
MESH_FROM = typer.Option("auto", help="Posed meshes from MANO 'params', from fitting to 3D 'joints', or 'auto'.")
FORCE = typer.Option(False, "--force", help="Overwrite an existing cache.")
SKIP_BAD = typer.Option(False, "--skip-bad-images", help="Skip truncated or undecodable images (counted and "
                        "reported as 'bad image') instead of failing.")
HAND_ESTIMATES = typer.Option(None, "--hand-estimates", help="Folder of per-view estimated hand meshes (e.g. "
                              "HandOccNet's; ROOT/handcli_est for synth --profile realistic), stored as the "
                              "test-time input hand of handnerf-ho/pixelnerf; the ground-truth hand stays for "
                              "training and metrics (docs/datasets-ho.md#hand-estimates).")



@app.command("interhand")
def interhand(
    root: Path = typer.Argument(..., help="InterHand2.6M root (holds images/ and annotations/)."),
    out: Path = typer.Option(..., "-o", "--out", help="Cache file to write (.h5)."),
    split: str = typer.Option("train", help="Split: train, val or test."),
    capture: Optional[str] = typer.Option(None, help="Capture ids, e.g. '0' or '0-3,7'."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated sequence names."),
    cameras: Optional[str] = typer.Option(None, help="Comma-separated camera ids (e.g. 400002,400004)."),
    frames: Optional[str] = typer.Option(None, help="Frame indices, e.g. '0-100,250'."),
    scale: float = typer.Option(1.0, help="Downscale factor (0.5 gives 256x167 like HandNeRF)."),
    keep_mono: bool = typer.Option(False, "--keep-mono", help="Keep monochrome (410xxx) cameras."),
    workers: int = WORKERS,
    shard: Optional[str] = SHARD,
    mano_dir: Optional[Path] = MANO_DIR,
    mesh_from: str = MESH_FROM,
    force: bool = FORCE,
    skip_bad_images: bool = SKIP_BAD,
) -> None:
    """InterHand2.6M v1.0 -> cache: cameras in metres, MANO, joints, images, masks, near/far bounds."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.progress import log

    stats = preprocess_interhand(root, out, split=split, captures=capture, seqs=seq, cameras=cameras,
                                 frames=frames, scale=scale, keep_mono=keep_mono, workers=workers, shard=shard,
                                 mano_dir=str(mano_dir) if mano_dir else None, mesh_from=mesh_from, force=force,
                                 skip_bad_images=skip_bad_images)
    dropped = ", ".join(f"{v} {k}" for k, v in {**stats["dropped_frames"]}.items()) or "none"
    dviews = ", ".join(f"{v} {k}" for k, v in stats["dropped_views"].items()) or "none"
    log(f"{stats['frames']} frames, {stats['views']} views written; dropped frames: {dropped}; dropped views: "
        f"{dviews}; {stats['images_per_s']:.1f} images/s")
    print(out)


@app.command("dexycb")
def dexycb(
    root: Path = typer.Argument(..., help="DexYCB root (holds the subject folders, calibration/ and models/)."),
    out: Path = typer.Option(..., "-o", "--out", help="Cache file to write (.h5)."),
    split: Optional[str] = typer.Option(None, help="s0 split: s0_train, s0_val or s0_test (default: all)."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated sequences ('20200709_141754' or "
                                                 "'20200709-subject-01/20200709_141754')."),
    cameras: Optional[str] = typer.Option(None, "--cameras", "--camera",
                                          help="Comma-separated camera serials (e.g. 836212060125)."),
    frames: Optional[str] = typer.Option(None, help="Frame indices, e.g. '0-40,50'."),
    every: int = typer.Option(1, min=1, help="Keep every N-th frame (HandNeRF, Choi uses 2)."),
    objects: Optional[str] = typer.Option(None, help="Grasped objects: YCB ids (e.g. 1,2,10,15) or names."),
    scale: float = typer.Option(1.0, help="Downscale factor for images and labels."),
    depth: bool = typer.Option(False, "--depth", help="Also store the aligned depth maps (float16 metres)."),
    workers: int = WORKERS,
    shard: Optional[str] = SHARD,
    mano_dir: Optional[Path] = MANO_DIR,
    mesh_from: str = MESH_FROM,
    force: bool = FORCE,
    skip_bad_images: bool = SKIP_BAD,
    hand_estimates: Optional[Path] = HAND_ESTIMATES,
) -> None:
    """DexYCB -> cache: world = calibration world; hand, grasped object, seg labels, near/far bounds."""
    from handcli.data.ho_preprocess import preprocess_dexycb

    stats = preprocess_dexycb(root, out, split=split, seqs=seq, cameras=cameras, frames=frames, every=every,
                              objects=objects, scale=scale, depth=depth, workers=workers, shard=shard,
                              mano_dir=str(mano_dir) if mano_dir else None, mesh_from=mesh_from, force=force,
                              skip_bad_images=skip_bad_images, hand_estimates=hand_estimates)
    _report(stats)
    print(out)


@app.command("ho3d")
def ho3d(
    root: Path = typer.Argument(..., help="HO-3D v3 root (holds train/, calibration/, train.txt)."),
    out: Path = typer.Option(..., "-o", "--out", help="Cache file to write (.h5)."),
    split: str = typer.Option("train", help="Split folder: train or evaluation."),
    seq: Optional[str] = typer.Option(None, help="Comma-separated groups or sequences (e.g. ABF1 or ABF10,SM2)."),
    cameras: Optional[str] = typer.Option(None, "--cameras", "--camera",
                                          help="Comma-separated camera sequences (e.g. ABF10,ABF12)."),
    frames: Optional[str] = typer.Option(None, help="Frame ids, e.g. '200-800,1000'."),
    every: int = typer.Option(1, min=1, help="Keep every N-th frame (HandNeRF, Choi uses 2)."),
    objects: Optional[str] = typer.Option(None, help="Objects: YCB ids (DexYCB numbering) or names."),
    listed_only: bool = typer.Option(False, "--listed-only", help="Only frames listed in train.txt / "
                                                                  "evaluation.txt."),
    models: Optional[Path] = typer.Option(None, help="YCB models folder (default ROOT/models; e.g. "
                                                     "$DEX_YCB_DIR/models)."),
    scale: float = typer.Option(1.0, help="Downscale factor for images and labels."),
    depth: bool = typer.Option(False, "--depth", help="Also store the decoded depth maps (float16 metres)."),
    workers: int = WORKERS,
    shard: Optional[str] = SHARD,
    mano_dir: Optional[Path] = MANO_DIR,
    mesh_from: str = MESH_FROM,
    force: bool = FORCE,
    skip_bad_images: bool = SKIP_BAD,
    hand_estimates: Optional[Path] = HAND_ESTIMATES,
) -> None:
    """HO-3D v3 -> cache: OpenGL converted to OpenCV, multi-camera reference world, seg labels, bounds."""
    from handcli.data.ho_preprocess import preprocess_ho3d

    stats = preprocess_ho3d(root, out, split=split, seqs=seq, cameras=cameras, frames=frames, every=every,
                            objects=objects, listed_only=listed_only, models=str(models) if models else None,
                            scale=scale, depth=depth, workers=workers, shard=shard,
                            mano_dir=str(mano_dir) if mano_dir else None, mesh_from=mesh_from, force=force,
                            skip_bad_images=skip_bad_images, hand_estimates=hand_estimates)
    _report(stats)
    print(out)


def _report(stats: dict) -> None:
    from handcli.progress import log

    dropped = ", ".join(f"{v} {k}" for k, v in stats["dropped_frames"].items()) or "none"
    log(f"{stats['frames']} frames, {stats['views']} views written; dropped frames: {dropped}; "
        f"{stats['images_per_s']:.1f} images/s")
