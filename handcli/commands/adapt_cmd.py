"""``handcli adapt``: pose adaptation of a trained run to novel poses (the method's ``adaptation``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Device, Force, TrainSeed


def adapt_command(
    run: Path = typer.Argument(..., help="Trained run folder."),
    cache: Path = typer.Argument(..., help="Cache (or directory of shard caches) with the novel poses "
                                         "(HandNeRF: depth only, no RGB needed; HandOcc: their images)."),
    out: Path = typer.Option(..., "-o", "--out", help="New run folder to write."),
    steps: int = typer.Option(200, help="Fine-tuning steps."),
    depth: Optional[Path] = typer.Option(None, help="HandNeRF: pseudo-depth targets of the novel cache (default: "
                                                    "rendered from its meshes now)."),
    frames: Optional[str] = typer.Option(None, help="Frames of the novel cache to adapt on."),
    cameras: Optional[str] = typer.Option(None, help="Cameras of the novel cache to adapt on (comma-separated ids; "
                                                     "default all). Leave out the cameras you evaluate on."),
    check_cameras: Optional[str] = typer.Option(
        None, "--check-cameras", help="HandOcc: cameras held back from the fit to check it; a frame keeps its "
                                      "adapted skeletons only if they fit these cameras' images better (default: "
                                      "every fifth camera; 'none': fit all)."),
    lr: float = typer.Option(1e-4, help="Learning rate of the adapted parameters (HandNeRF: the deformation "
                                        "field; HandOcc: the joint offsets, an Adam step moves a joint by about "
                                        "lr x 0.1 m)."),
    seed: TrainSeed = 0,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Pose adaptation: HandNeRF as in the paper (only the depth and deformation losses, the deformation
    field adapts); HandOcc refines the novel frames' skeletons against their images (networks frozen).
    Prints the new run folder.

    The new run is written beside ``--out`` and swapped in when complete, or on SIGINT/SIGTERM (with a
    checkpoint of the current step; exit 130).
    """
    import json
    import tempfile

    import torch

    from handcli.checks import check_indices, check_option
    from handcli.commands.cmdline import camera_ids, command_line
    from handcli.data.selection import parse_selection
    from handcli.data.shards import open_cache
    from handcli.errors import InputError, Interrupted
    from handcli.methods.base import read_run_config, write_run_config
    from handcli.methods.trainer import plot_curves, read_metrics, seed_everything, train
    from handcli.outputs import check_writable, clean_stale, owned_temp, swap_into_place
    from handcli.progress import log
    from handcli.registry import method_class

    check_option("steps", steps, lo=1)
    check_option("lr", lr, lo=0, lo_open=True)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    doc = read_run_config(run)
    cls = method_class(doc["method"])
    if "adapt" not in cls.capabilities:
        raise InputError(f"method {doc['method']} has no pose adaptation", path=Path(run) / "config.json",
                         field="method")
    check_writable(out, force, inputs=[run, cache, depth], kind="run", is_dir=True)
    seed_everything(seed)
    sel = parse_selection(frames)
    with open_cache(cache) as c:  # validated before any work
        if sel:
            check_indices("frames", sel, c.num_frames, cache)
    with tempfile.TemporaryDirectory() as td:
        check = None if check_cameras is None else [] if check_cameras.strip().lower() == "none" else \
            camera_ids(check_cameras)
        m, _ = cls.adaptation(run, cache, frames=sorted(sel) if sel else None, steps=steps, lr=lr, seed=seed,
                              device=device, depth=depth, workdir=Path(td), cameras=camera_ids(cameras),
                              check_cameras=check)
        clean_stale(out)
        with owned_temp(out, is_dir=True) as tmp:  # removed on any failure, kept (swapped in) when interrupted
            try:
                data = {"cache": str(Path(cache).resolve()), "depth": None, "features": None,
                        "cameras": camera_ids(cameras), "eval_cameras": None, "frames": sorted(sel) if sel else None,
                        **m.run_data(), "adapted_from": str(Path(run).resolve())}
                log_every = max(min(steps // 10, 50), 1)  # ten rows for short runs, every 50 steps for long ones
                write_run_config(tmp, doc["method"], doc["preset"], m.cfg, data, seed, command_line(),
                                 train={"log_every": log_every, "ckpt_every": steps, "snapshot_every": 0})
                last = train(m, tmp, steps=steps, lr=lr, lr_final=lr, seed=seed, resume=False,
                             log_every=log_every, ckpt_every=steps)
                plot_curves(read_metrics(tmp), tmp / "curves.png", keys=cls.adapt_curves)
                (tmp / "complete.json").write_text(json.dumps(last, indent=2))
            except Interrupted:
                swap_into_place(tmp, out)  # keeps the checkpoint of the work done
                raise
        swap_into_place(tmp, out)
    losses = ", ".join(f"{k} {last[k]:.5f}" for k in cls.adapt_curves if isinstance(last.get(k), float))
    log(f"adapted {doc['method']} to {len(m.frames)} frames: {losses}")
    print(out)
