"""A small trainer shared by the methods: steps, checkpoints, ``--resume``, logging, snapshots, DDP.

The run folder::

    run/config.json        schema handcli.run/1: method, preset, method config, data, seed, command
    run/checkpoint.pt      model + optimizer + step: tensors and plain data only (loaded with weights_only=True);
                           written atomically every ``ckpt_every`` steps, at the end, and on SIGINT/SIGTERM
    run/metrics.jsonl      one JSON object per logged step (losses, psnr, rays/s, samples/ray, lr); a resume
                           drops the rows logged after its checkpoint, so no step appears twice
    run/snapshots/*.png    evaluation snapshots: prediction | ground truth | error on a held-out view
    run/curves.png         training curves
    run/complete.json      written when training finishes (final metrics)
    run/geometry/          per-frame data a method stores for reuse (HandNeRF's grids; ``attach_run``)

Every step draws its batch from a generator seeded by (seed, step, rank), so a resumed run sees exactly
the batches an uninterrupted one would and ends with the same weights. :func:`seed_everything` seeds the
global generators (model initialisation) before a method is built.

The first SIGINT or SIGTERM during training ends the current step, writes a checkpoint and raises
:class:`handcli.errors.Interrupted` (the CLI exits 130); a second one aborts at once.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from handcli.errors import InputError, Interrupted
from handcli.interrupts import graceful_signals, pending
from handcli.outputs import clean_stale, replace_file
from handcli.progress import console, progress

RUN_SCHEMA = "handcli.run/1"


class TrainableMethod(Protocol):
    model: torch.nn.Module
    cfg: Any  # a frozen dataclass with ``steps`` (replaced when ``fit_budget`` fits the step count)

    def attach_run(self, run_dir: Path) -> None:
        """Called once with the run folder before training (``Method``'s default does nothing)."""

    def train_step(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Loss for one batch and a dict of floats to log (must include 'rays' and 'samples')."""

    def snapshot(self, step: int, out_png: Path) -> dict:
        """Render a held-out view to ``out_png``; return metrics to log."""

    def finish_training(self) -> dict | None:
        """Called once when training ends (rank 0); a summary to log as ``finish``, or None."""


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The batch generator of one step (independent of how the run got there)."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2 ** 63))
    return g


def lr_at(step: int, steps: int, lr: float, lr_final: float) -> float:
    """Log-linear decay from ``lr`` to ``lr_final`` over ``steps``."""
    t = min(max(step / max(steps, 1), 0.0), 1.0)
    return lr * (lr_final / lr) ** t


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch global generators (model initialisation and anything else global)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary beside ``path``, then rename (a kill never leaves half a checkpoint)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: torch names the archive inside "archive", not after tmp,
            torch.save(obj, f)      # so identical states give identical bytes whatever the temporary's name

    replace_file(path, write)


def checkpoint_state(model: torch.nn.Module, opt: torch.optim.Optimizer | None, step: int) -> dict:
    """What checkpoint.pt holds: tensors and plain data only (``weights_only=True`` loads it)."""
    return {"model": model.state_dict(), "optimizer": opt.state_dict() if opt is not None else None,
            "step": int(step)}


def clean_stale_temps(run_dir: Path) -> list[Path]:
    """Remove temporary files a killed trainer left in ``run_dir`` (``.checkpoint.pt.tmp``...); returns them."""
    gone = []
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl"):
        gone += clean_stale(run_dir / name)  # ``.NAME.PID.XXXX.tmp`` of a writer that is gone (replace_file)
        p = run_dir / f".{name}.tmp"  # the fixed name earlier versions wrote
        if p.exists():
            p.unlink()
            gone.append(p)
    if gone:
        console.print(f"removed stale temporary files of an interrupted run: {', '.join(p.name for p in gone)}")
    return gone


def truncate_metrics(metrics_path: Path, step: int) -> None:
    """Keep the rows of ``metrics.jsonl`` up to ``step`` (the checkpoint a resume starts from)."""
    if not metrics_path.is_file():
        return
    keep = []
    for line in metrics_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a row cut by a kill
            continue
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            keep.append(line)
    replace_file(metrics_path, lambda tmp: tmp.write_text("".join(f"{ln}\n" for ln in keep)))


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise; initialises the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def average_gradients(params, world: int) -> None:
    """All-reduce gradients across ranks (plain DDP semantics without wrapping the model). Parameters whose
    ``requires_grad`` a method switched off for the step are left without a gradient, as in a single process, so the
    optimiser skips them (the switch depends on the step alone, so every rank skips the same ones)."""
    if world <= 1:
        return
    import torch.distributed as dist

    for p in params:
        if not p.requires_grad:  # frozen for this step, on every rank alike (a module learned from a later step on)
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def sum_across_ranks(t: torch.Tensor) -> None:
    """Sum ``t`` in place over the ranks of a torchrun job (nothing in a single process). Every rank must call it
    at the same point, as the training steps do."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)


FIT_FRACTION = 0.05  # share of the time budget spent measuring the step rate (at the initial learning rate)
FIT_MARGIN = 0.95  # share of the budget the fitted schedule is planned to fill (logs, checkpoints, snapshot)
REFIT_FRACTION = 0.3  # the step count is fitted once more here, from the rate since the first fit: early steps
# carry one-off work (e.g. HandNeRF's lazily built per-frame geometry) that made the first fit too short


def train(method: TrainableMethod, run_dir: Path, *, steps: int, lr: float, lr_final: float, seed: int,
          resume: bool, log_every: int = 50, ckpt_every: int = 500, snapshot_every: int = 0,
          time_budget: float | None = None, on_log: Callable[[dict], None] | None = None,
          stop_at: int | None = None, fit_budget: bool = False) -> dict:
    """Run (or continue) training; returns the last logged record.

    ``stop_at`` ends this call after that step (with a checkpoint), as an interruption would; the
    learning-rate schedule still follows ``steps``. ``fit_budget`` (with ``time_budget``, new runs): the
    first FIT_FRACTION of the budget runs at the initial learning rate and measures the step rate of these
    real steps; then ``steps`` (and ``method.cfg.steps``, which some methods' loss schedules read) becomes
    the number of steps that fill FIT_MARGIN of the budget, so that the learning rate decays over the
    budget instead of being cut off near its start; at REFIT_FRACTION of the budget the count is fitted
    again from the rate measured since. The records logged then have ``fitted_steps``.
    """
    from handcli.methods.base import load_checkpoint

    rank, world = distributed()
    method.attach_run(run_dir)  # per-frame data the method stores in the run (reused on --resume)
    params = [p for p in method.model.parameters() if p.requires_grad]
    # the fused kernel is ~10x faster than the per-parameter loop for these small networks (CPU and CUDA)
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    ckpt = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    start = 0
    if rank == 0:
        clean_stale_temps(run_dir)
    if resume:
        state = load_checkpoint(ckpt, "cpu")
        try:
            method.model.load_state_dict(state["model"])
            if state.get("optimizer") is not None:
                opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise InputError(f"checkpoint does not match the run's config ({str(e).splitlines()[0]})", path=ckpt,
                             field="model") from None
        start = int(state["step"])
        if rank == 0:
            truncate_metrics(metrics_path, start)
    elif rank == 0 and metrics_path.exists():
        metrics_path.unlink()
    (run_dir / "snapshots").mkdir(exist_ok=True)
    stop_flag = torch.zeros(1, device=params[0].device) if world > 1 else None
    last: dict = {}
    t_start = time.perf_counter()
    window = {"rays": 0, "samples": 0, "t": time.perf_counter()}
    acc: dict[str, float] = {}
    n_acc = 0
    with graceful_signals() as sig, progress() as bar:
        task = bar.add_task("train", total=steps, completed=start)
        step = start
        fitting = fit_budget and time_budget is not None and start == 0
        fitted, refit_from = None, None
        while step < steps:
            for g in opt.param_groups:
                g["lr"] = lr if fitting else lr_at(step, steps, lr, lr_final)
            loss, logs = method.train_step(step, step_generator(seed, step, rank))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params, world)
            opt.step()
            step += 1
            window["rays"] += logs.pop("rays", 0)
            window["samples"] += logs.pop("samples", 0)
            for k, v in logs.items():
                acc[k] = acc.get(k, 0.0) + float(v)
            n_acc += 1
            bar.advance(task)
            if fitting and step == 3:
                t_warm = time.perf_counter()  # the rate leaves out the first steps' one-off costs
            now, new_steps = time.perf_counter(), None
            if fitting and step >= 13 and now - t_start >= FIT_FRACTION * time_budget:
                fitting, refit_from = False, (step, now)
                new_steps = int(FIT_MARGIN * time_budget * (step - 3) / (now - t_warm))
            elif refit_from is not None and now - t_start >= REFIT_FRACTION * time_budget:
                rate = (step - refit_from[0]) / (now - refit_from[1])
                refit_from = None
                new_steps = step + int((FIT_MARGIN * time_budget - (now - t_start)) * rate)
            if new_steps is not None:
                steps = fitted = max(step + 1, new_steps)
                bar.update(task, total=steps)
                from dataclasses import replace

                method.cfg = replace(method.cfg, steps=steps)
            interrupted = sig["signal"] is not None or pending() is not None
            if stop_flag is not None:  # every rank stops at the same step
                import torch.distributed as dist

                stop_flag.fill_(float(interrupted))
                dist.all_reduce(stop_flag)
                interrupted = bool(stop_flag.item() > 0)
            out_of_time = (time_budget is not None and time.perf_counter() - t_start >= time_budget) or \
                (stop_at is not None and step >= stop_at) or interrupted
            if step % log_every == 0 or step == steps or out_of_time:
                now = time.perf_counter()
                rec = {"step": step, **{k: v / max(n_acc, 1) for k, v in acc.items()},
                       "lr": opt.param_groups[0]["lr"], "elapsed_s": round(now - t_start, 3),
                       "rays_per_s": window["rays"] / max(now - window["t"], 1e-9) * world,
                       "samples_per_ray": window["samples"] / max(window["rays"], 1)}
                if fitted is not None:
                    rec["fitted_steps"], fitted = fitted, None
                if "mse" in rec:
                    rec["psnr"] = -10.0 * math.log10(max(rec["mse"], 1e-12))
                acc, n_acc = {}, 0
                window = {"rays": 0, "samples": 0, "t": time.perf_counter()}
                if snapshot_every and rank == 0 and (step % snapshot_every == 0 or step == steps or
                                                     (out_of_time and not interrupted)):
                    with torch.no_grad():
                        rec.update(method.snapshot(step, run_dir / "snapshots" / f"step_{step:07d}.png"))
                if rank == 0:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                last = rec
                if on_log:
                    on_log(rec)
            if rank == 0 and (step % ckpt_every == 0 or step == steps or out_of_time):
                save_atomic(checkpoint_state(method.model, opt, step), ckpt)
            if interrupted:
                msg = f"interrupted at step {step}: checkpoint written; continue with --resume"
                console.print(msg)
                raise Interrupted(msg)
            if out_of_time:
                console.print(f"stopping at step {step} (time budget or stop_at)")
                break
    if rank == 0 and step > start:
        finished = method.finish_training()
        if finished is not None:
            save_atomic(checkpoint_state(method.model, opt, step), ckpt)
            last["finish"] = finished
    return last


def read_metrics(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def plot_curves(records: list[dict], out_png: Path, keys=("loss", "psnr", "rgb", "depth")) -> Path | None:
    """Training curves drawn with OpenCV (one panel per key present)."""
    import cv2
    import numpy as np

    keys = [k for k in keys if any(k in r for r in records)]
    if not records or not keys:
        return None
    W, H, pad = 420, 240, 40
    img = np.full((H, W * len(keys), 3), 255, np.uint8)
    for i, k in enumerate(keys):
        xs = np.array([r["step"] for r in records if k in r], float)
        ys = np.array([r[k] for r in records if k in r], float)
        ok = np.isfinite(ys)
        xs, ys = xs[ok], ys[ok]
        x0 = i * W
        cv2.putText(img, k, (x0 + pad, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (x0 + pad, pad), (x0 + W - 10, H - pad), (180, 180, 180), 1)
        if len(xs) < 2:
            continue
        lo, hi = ys.min(), ys.max()
        hi = hi if hi > lo else lo + 1e-9
        px = x0 + pad + (xs - xs.min()) / max(xs.max() - xs.min(), 1e-9) * (W - pad - 10)
        py = H - pad - (ys - lo) / (hi - lo) * (H - 2 * pad)
        pts = np.stack([px, py], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, (200, 80, 30), 2, cv2.LINE_AA)
        for val, y in ((hi, pad), (lo, H - pad)):
            cv2.putText(img, f"{val:.4g}", (x0 + 2, int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(img, f"step {int(xs.max())}", (x0 + W - 110, H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1)
    cv2.imwrite(str(out_png), img)
    return out_png
