"""``handcli adapt``: HandNeRF pose adaptation (freeze the NeRF, fine-tune the deformation field)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import Device, Force, TrainSeed


def adapt_command(
    run: Path = typer.Argument(..., help="Trained run folder."),
    cache: Path = typer.Argument(..., help="Cache (or directory of shard caches) with the novel poses (no RGB needed: depth only)."),
    out: Path = typer.Option(..., "-o", "--out", help="New run folder to write."),
    steps: int = typer.Option(200, help="Fine-tuning steps."),
    depth: Optional[Path] = typer.Option(None, help="Pseudo-depth targets of the novel cache (default: "
                                                    "rendered from its meshes now)."),
    frames: Optional[str] = typer.Option(None, help="Frames of the novel cache to adapt on."),
    lr: float = typer.Option(1e-4, help="Learning rate of the deformation field."),
    seed: TrainSeed = 0,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Pose adaptation as in the paper: only the depth and deformation losses; prints the new run folder.

    The new run is written beside ``--out`` and swapped in when complete, or on SIGINT/SIGTERM (with a
    checkpoint of the current step; exit 130).
    """
    import json
    import shutil
    import tempfile

    import torch

    from handcli.checks import check_indices, check_option
    from handcli.commands.cmdline import command_line
    from handcli.data.selection import parse_selection
    from handcli.data.shards import open_cache
    from handcli.errors import InputError, Interrupted
    from handcli.methods.adapt import check_adaptable, prepare_adaptation
    from handcli.methods.base import read_run_config, write_run_config
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.trainer import plot_curves, read_metrics, seed_everything, train
    from handcli.outputs import check_writable, clean_stale, swap_into_place, temp_beside
    from handcli.progress import log
    from handcli.registry import method_class

    check_option("steps", steps, lo=1)
    check_option("lr", lr, lo=0, lo_open=True)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    doc = read_run_config(run)
    if "adapt" not in method_class(doc["method"]).capabilities:
        raise InputError(f"method {doc['method']} has no pose adaptation", path=Path(run) / "config.json",
                         field="method")
    check_adaptable(doc["config"], Path(run) / "config.json")
    check_writable(out, force, inputs=[run, cache, depth], kind="run", is_dir=True)
    seed_everything(seed)
    trained = HandNeRFMethod.from_run(run, device=device)
    sel = parse_selection(frames)
    with open_cache(cache) as c:  # validated before any work
        if sel:
            check_indices("frames", sel, c.num_frames, cache)
    with tempfile.TemporaryDirectory() as td:
        depth_path = depth
        if depth_path is None:
            from handcli.targets.depth import compute_depth

            depth_path = Path(td) / "depth.h5"
            compute_depth(cache, depth_path)
        m, _ = prepare_adaptation(trained, cache, depth_path=depth_path, frames=sorted(sel) if sel else None,
                                  steps=steps, lr=lr, seed=seed, device=device, method=doc["method"])
        clean_stale(out)
        tmp = temp_beside(out, is_dir=True)
        try:
            data = {"cache": str(Path(cache).resolve()), "depth": None, "features": None, "cameras": None,
                    "eval_cameras": None, "frames": sorted(sel) if sel else None, **m.run_data(),
                    "adapted_from": str(Path(run).resolve())}
            log_every = max(min(steps // 10, 50), 1)  # ten rows for short runs, every 50 steps for long ones
            write_run_config(tmp, doc["method"], doc["preset"], m.cfg, data, seed,
                             command_line(),
                             train={"log_every": log_every, "ckpt_every": steps, "snapshot_every": 0})
            last = train(m, tmp, steps=steps, lr=lr, lr_final=lr, seed=seed, resume=False, log_every=log_every,
                         ckpt_every=steps)
            plot_curves(read_metrics(tmp), tmp / "curves.png", keys=("loss", "depth", "dfm"))
            (tmp / "complete.json").write_text(json.dumps(last, indent=2))
        except Interrupted:
            swap_into_place(tmp, out)  # keeps the checkpoint of the work done
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        swap_into_place(tmp, out)
    log(f"adapted {doc['method']} to {len(m.frames)} frames: depth loss {last.get('depth', float('nan')):.5f}")
    print(out)
