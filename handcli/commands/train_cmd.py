"""``handcli train``: fit a method to a cache; writes a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from handcli.commands.options import Device, TrainSeed


def train_command(
    cache: Path = typer.Argument(..., help="Training cache (.h5) from 'handcli preprocess', or a directory of shard caches."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder to create."),
    method: str = typer.Option("handnerf", help="Method: handnerf, posenerf, handocc, handnerf-ho, pixelnerf."),
    preset: str = typer.Option("fast", help="Hyperparameter preset: paper (published sizes) or fast (CPU)."),
    steps: Optional[int] = typer.Option(None, help="Training steps (default: the preset's)."),
    device: Device = "auto",
    set_: List[str] = typer.Option([], "--set", help="Override a config value: key=value (JSON values)."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Training stage of methods that have stages "
                                        "(handocc: occupancy = the occupancy network alone, full; default full). "
                                        "With --resume it may switch an occupancy run to full."),
    depth: Optional[Path] = typer.Option(None, help="Pseudo-depth targets from 'handcli targets depth'."),
    features: Optional[Path] = typer.Option(None, help="Teacher features from 'handcli targets features'."),
    cameras: Optional[str] = typer.Option(None, help="Training cameras (comma-separated ids; default all)."),
    eval_cameras: Optional[str] = typer.Option(None, help="Held-out cameras for snapshots."),
    frames: Optional[str] = typer.Option(None, help="Training frames as cache frame indices, e.g. '0-9'."),
    seed: TrainSeed = 0,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint (keeps the "
                                "run's seed and logging settings)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder (only once the new run is "
                               "complete; never an input, nor a folder that is not a handcli run)."),
    time_budget: Optional[float] = typer.Option(None, help="Stop after this many seconds of training."),
    fit_budget: bool = typer.Option(False, "--fit-budget", help="With --time-budget: set the step count (over "
                                    "which the learning rate decays) to what fits in the budget, measured on the "
                                    "first 5 % of it and again at 30 %, instead of stopping a longer schedule "
                                    "early."),
    log_every: Optional[int] = typer.Option(None, help="Log every N steps (default 50; a resume keeps "
                                            "the run's)."),
    ckpt_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps (default 500; a resume "
                                             "keeps the run's)."),
    snapshot_every: Optional[int] = typer.Option(None, help="Render a held-out view every N steps (0: only "
                                                 "at the end; a resume keeps the run's)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Train a method on a cache; prints the run folder.

    SIGINT/SIGTERM write a checkpoint at the current step and exit 130 (continue with --resume).
    """
    import json
    import os
    import shutil
    from dataclasses import replace

    import torch

    from handcli.checks import check_indices, check_option
    from handcli.commands.cmdline import camera_ids, command_line, parse_sets
    from handcli.data.selection import parse_selection
    from handcli.errors import InputError, Interrupted
    from handcli.methods.base import configure, read_run_config, write_run_config
    from handcli.methods.trainer import (
        checkpoint_state,
        distributed,
        plot_curves,
        read_metrics,
        save_atomic,
        seed_everything,
        train,
    )
    from handcli.outputs import check_writable, clean_stale, owned_temp, swap_into_place
    from handcli.progress import log
    from handcli.registry import method_class

    for name, value, lo in (("steps", steps, 1), ("log_every", log_every, 1), ("ckpt_every", ckpt_every, 1),
                            ("snapshot_every", snapshot_every, 0), ("threads", threads, 1)):
        check_option(name, value, lo=lo)
    check_option("time_budget", time_budget, lo=0, lo_open=True)
    cls = method_class(method)
    if fit_budget and (time_budget is None or resume or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        # under torchrun each rank would fit its own step count and the ranks would fall out of step
        raise InputError("--fit-budget needs --time-budget, a new run and one process", field="fit_budget")
    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", field="device")
    command = command_line()
    settings = {"log_every": 50, "ckpt_every": 500, "snapshot_every": 0}
    if resume:
        doc = read_run_config(out)
        if doc["method"] != method:
            raise InputError(f"run was trained with --method {doc['method']}", path=out / "config.json",
                             field="method")
        if not (out / "checkpoint.pt").is_file():
            raise InputError("run has no checkpoint to resume from; pass --force without --resume to start it "
                             "over", path=out / "checkpoint.pt")
        cfg = cls.config_from_dict(doc["config"], path=out / "config.json")
        if steps is not None:
            cfg = replace(cfg, steps=steps)
        from handcli.methods.base import read_checkpoint

        read_checkpoint(out, "cpu")  # a damaged or unsafe checkpoint fails before anything in the run is rewritten
        data = doc["data"]
        preset, seed = doc["preset"], doc["seed"]
        settings.update({k: v for k, v in (doc.get("train") or {}).items() if k in settings})
    else:
        overrides = parse_sets(set_)
        try:
            cfg = configure(cls.presets(method), preset, steps, overrides)
        except InputError as e:  # name the option the value came from
            option = f"--set {e.field}" if e.field in overrides else "--steps" if e.field == "steps" else e.field
            raise InputError(e.message, path=e.path, field=option) from None
        sel = parse_selection(frames)
        if sel:
            from handcli.data.shards import open_cache

            with open_cache(cache) as c:
                check_indices("frames", sel, c.num_frames, cache)
        data = {"cache": str(cache.resolve()), "depth": str(depth.resolve()) if depth else None,
                "features": str(features.resolve()) if features else None, "cameras": camera_ids(cameras),
                "eval_cameras": camera_ids(eval_cameras), "frames": sorted(sel) if sel else None}
        if out.exists() and not force:
            raise InputError("run folder exists; pass --force to replace it or --resume to continue", path=out)
        # refuse before anything is built or removed: an input as output, a folder that is not a run
        check_writable(out, force, inputs=[cache, depth, features], kind="run", is_dir=True)
    for k, v in (("log_every", log_every), ("ckpt_every", ckpt_every), ("snapshot_every", snapshot_every)):
        if v is not None:
            settings[k] = v
    if stage is not None:
        from dataclasses import fields

        if "stage" not in {f.name for f in fields(cfg)}:
            raise InputError(f"method {method} has no training stages", field="stage")
        cfg = replace(cfg, stage=stage)
    rank, world = distributed()
    rank0 = rank == 0  # under torchrun only rank 0 writes files and prints
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    seed_everything(seed)  # model initialisation; batches come from per-step generators
    # reads and validates every input before any output is touched; the seed also drives the view pool
    m = cls.from_data(cfg, {**data, "seed": seed}, method, device)
    data.update(m.run_data())
    run_dir, staged = out, False
    if not resume:
        existed = out.exists()
        if world > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank has looked at out before rank 0 creates it
            if existed:
                raise InputError("under torchrun a run is not replaced in place; remove it or write a new folder",
                                 path=out)
        if rank0:
            clean_stale(out)
            # the run folder appears complete (config + step-0 checkpoint) or not at all; --force trains beside
            # the old run and swaps at the end, so a failure or a kill keeps the old one
            with owned_temp(out, is_dir=True) as tmp:  # a failure or a signal here leaves nothing behind
                write_run_config(tmp, method, preset, m.cfg, data, seed, command, train=settings)
                save_atomic(checkpoint_state(m.model, None, 0), tmp / "checkpoint.pt")
            if existed:
                run_dir, staged = tmp, True
            else:
                swap_into_place(tmp, out)
        if world > 1:
            dist.barrier()
    elif rank0:
        write_run_config(out, method, preset, m.cfg, data, seed, command, train=settings)
    try:
        last = train(m, run_dir, steps=m.cfg.steps, lr=m.cfg.lr, lr_final=m.cfg.lr_final, seed=seed,
                     resume=resume, log_every=settings["log_every"], ckpt_every=settings["ckpt_every"],
                     snapshot_every=settings["snapshot_every"] or m.cfg.steps, time_budget=time_budget,
                     fit_budget=fit_budget)
    except Interrupted:
        if staged:  # the new run holds a checkpoint of the work done: it replaces the old one
            swap_into_place(run_dir, out)
        raise
    except InputError:
        # bad input found mid-training (a damaged chunk): no new run folder is left behind
        if rank0 and (staged or not resume):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException:
        if staged:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if not rank0:
        return
    if fit_budget:  # the run's config records the fitted schedule
        write_run_config(run_dir, method, preset, m.cfg, data, seed, command, train=settings)
        log(f"{method}: schedule fitted to the {time_budget:g} s budget: {m.cfg.steps} steps")
    plot_curves(read_metrics(run_dir), run_dir / "curves.png")
    (run_dir / "complete.json").write_text(json.dumps(last, indent=2))
    if staged:
        swap_into_place(run_dir, out)
    log(f"{method}: step {last.get('step')}, train psnr {last.get('psnr', float('nan')):.2f} dB, "
        f"{last.get('rays_per_s', 0):.0f} rays/s, {last.get('samples_per_ray', 0):.1f} samples/ray")
    print(out)
