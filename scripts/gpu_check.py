"""``make gpu-check``: the CUDA variants of the device-parametrised tests, then training and rendering time of
each method on CUDA, on tiny synthetic data this script builds itself with the CLI (synth -> preprocess ->
targets depth -> train -> render).

Usage::

    python scripts/gpu_check.py                      # CUDA: tests + timings, fast and paper presets
    python scripts/gpu_check.py --device cpu --scale 0.25 --steps 4   # a dry run of the script on a CPU machine

Prints one table (markdown) and writes it, with the raw numbers as JSON, to ``--out`` (default: ``$OUT`` when
that variable is set). Without CUDA and without ``--device cpu`` it prints a "no CUDA" line and exits 0.
Training time is the steady rate between the half-way and the last logged step (the first steps carry
one-off work); render time is the median per-view time ``handcli render`` records (views after the first).
InterHand views are 512x334 (portrait, H x W) at ``--scale 1``; DexYCB views (HandNeRF-HO) are 640x480 times
the scale, so 512x384 at the default 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("handnerf", "handocc", "handnerf-ho")
RENDER_CAMS = "400009"  # a portrait InterHand camera (512x334 at scale 1)


DEADLINE = [float("inf")]  # perf_counter() time after which every command is killed (set by main)


def run(cmd: list, log: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run one command, appending its output to ``log``; raises RuntimeError with the last stderr line, or
    when it runs past ``timeout`` seconds or the script's deadline."""
    t = time.perf_counter()
    limit = max(min(timeout, DEADLINE[0] - t), 10.0)
    try:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=limit, cwd=REPO)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(map(str, cmd[3:5]))}: killed after {limit:.0f} s (time limit)") from None
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}  # rc {r.returncode}, {time.perf_counter() - t:.1f} s\n{r.stdout}"
                f"{r.stderr}\n")
    if r.returncode != 0:
        last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(map(str, cmd[3:5]))}: exit {r.returncode}: {last[0]}")
    return r


def handcli(*args) -> list:
    return [sys.executable, "-m", "handcli.cli", *args]


def build_data(work: Path, scale: float, ho_scale: float, log: Path) -> dict:
    """Tiny synthetic InterHand (+ pseudo-depth) and DexYCB caches (reused when ``work`` already has them)."""
    ih, dex = work / "ih", work / "dex"
    data = {"ih": work / "ih.h5", "depth": work / "ih_depth.h5", "dex": work / "dex.h5"}
    if all(p.is_file() for p in data.values()):
        return data
    run(handcli("synth", "interhand", ih, "--force", "--frames", 2, "--cameras", 4, "--mono-cameras", 0, "--seqs",
                "right,interacting", "--camera-ids", "400002,400009,400004", "--seed", 0), log, 300)
    run(handcli("preprocess", "interhand", ih, "-o", data["ih"], "--scale", scale, "--workers", 2, "--force"), log,
        300)
    run(handcli("targets", "depth", data["ih"], "-o", data["depth"], "--force"), log, 300)
    run(handcli("synth", "dexycb", dex, "--force", "--subjects", 2, "--frames", 3, "--cameras", 3, "--seed", 5), log, 300)
    run(handcli("preprocess", "dexycb", dex, "-o", data["dex"], "--scale", ho_scale, "--force"), log, 300)
    return data


def time_method(method: str, preset: str, data: dict, work: Path, device: str, steps: int, views: int,
                log: Path) -> dict:
    """Train ``steps`` steps and render ``views`` views; seconds per step, rays/s and seconds per view."""
    runs = work / f"{method}-{preset}"
    cache = data["dex"] if method == "handnerf-ho" else data["ih"]
    extra = ["--depth", data["depth"]] if method == "handnerf" else []
    half = max(steps // 2, 1)
    runs.mkdir(parents=True, exist_ok=True)
    run(handcli("train", cache, "-o", runs / "run", "--method", method, "--preset", preset, "--steps", steps,
                "--device", device, "--log-every", half, "--ckpt-every", steps, "--snapshot-every", 0, *extra,
                "--force"), log, 600)
    recs = [json.loads(x) for x in (runs / "run" / "metrics.jsonl").read_text().splitlines()]
    a, b = recs[-2] if len(recs) > 1 else {"step": 0, "elapsed_s": 0.0}, recs[-1]
    step_s = (b["elapsed_s"] - a["elapsed_s"]) / max(b["step"] - a["step"], 1)
    sel = [] if method == "handnerf-ho" else ["--views", RENDER_CAMS]
    run(handcli("render", runs / "run", cache, "-o", runs / "renders", "--max-views", views, "--device", device,
                *sel, "--force"), log, 600)
    doc = json.loads((runs / "renders" / "renders.json").read_text())
    secs = [v["seconds"] for v in doc["views"]]
    size = f"{doc['views'][0]['height']}x{doc['views'][0]['width']}"
    return {"method": method, "preset": preset, "train_s_per_step": step_s, "rays_per_s": b.get("rays_per_s"),
            "samples_per_ray": b.get("samples_per_ray"), "render_s_per_view": statistics.median(secs[1:] or secs),
            "render_views": len(secs), "view_HxW": size}


def table(rows: list, header: str) -> str:
    lines = [header, "", "| method | preset | train s/step | rays/s | samples/ray | render s/view | view HxW |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['preset']} | {r['error']} | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['preset']} | {r['train_s_per_step']:.4f} | {r['rays_per_s'] or 0:,.0f} | "
                     f"{r['samples_per_ray'] or 0:.1f} | {r['render_s_per_view']:.3f} | {r['view_HxW']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--steps", type=int, default=100, help="training steps per method (timed: the second half)")
    ap.add_argument("--views", type=int, default=3, help="views rendered per method (timed: all but the first)")
    ap.add_argument("--scale", type=float, default=1.0, help="InterHand preprocess scale (1: 512x334 views)")
    ap.add_argument("--ho-scale", type=float, default=0.8, help="DexYCB preprocess scale (0.8: 512x384 views)")
    ap.add_argument("--presets", default=None, help="comma-separated (default: fast,paper on CUDA, fast on CPU)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-tests", action="store_true", help="skip the CUDA-parametrised tests")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="folder for gpu_check.txt / gpu_check.json / gpu_check.log (default: $OUT if set)")
    ap.add_argument("--budget", type=float, default=400.0,
                    help="seconds: no new (method, preset) timing starts after this (reported as skipped), and "
                         "any command still running 60 s later is killed (reported as failed)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the synthetic data and runs in this folder")
    a = ap.parse_args(argv)

    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA on this machine; nothing to check (use --device cpu for a dry run of the script)")
        return 0
    t0 = time.perf_counter()
    DEADLINE[0] = t0 + a.budget + 60
    presets = (a.presets or ("fast,paper" if a.device == "cuda" else "fast")).split(",")
    dev_name = torch.cuda.get_device_name(0) if a.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    work = a.keep or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
    log = (a.out or work) / "gpu_check.log"
    log.write_text("")
    status = 0
    result = {"device": a.device, "device_name": dev_name, "torch": torch.__version__, "rows": []}
    try:
        if not a.no_tests:
            t = time.perf_counter()
            sel = "cuda" if a.device == "cuda" else "not cuda"
            files = ["tests/test_render_core.py", "tests/test_encoding.py", "tests/test_lbs.py", "tests/test_losses.py",
                     "tests/test_methods_device.py"]
            try:
                r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m",
                                    sel, *files], capture_output=True, text=True, cwd=REPO,
                                   timeout=max(DEADLINE[0] - time.perf_counter(), 10.0))
            except subprocess.TimeoutExpired as e:
                out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                r = subprocess.CompletedProcess(e.cmd, 1, out + "\nkilled: past the time limit", "")
            summary = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
            with open(log, "a") as f:
                f.write(r.stdout + r.stderr)
            print(f"device tests (-m '{sel}'): {summary} [{time.perf_counter() - t:.0f} s]", flush=True)
            result["tests"] = {"selection": sel, "returncode": r.returncode, "summary": summary}
            status = status or (r.returncode != 0)
        t = time.perf_counter()
        data = build_data(work, a.scale, a.ho_scale, log)
        print(f"synthetic data built [{time.perf_counter() - t:.0f} s]", flush=True)
        for preset in presets:
            for method in a.methods.split(","):
                t = time.perf_counter()
                if t - t0 > a.budget:
                    result["rows"].append({"method": method, "preset": preset,
                                           "error": f"skipped: past the {a.budget:.0f} s budget"})
                    print(f"{method} ({preset}): skipped (past the {a.budget:.0f} s budget)", flush=True)
                    continue
                try:
                    row = time_method(method, preset, data, work, a.device, a.steps, a.views, log)
                except (RuntimeError, KeyError, ValueError) as e:
                    row, status = {"method": method, "preset": preset, "error": f"failed: {str(e)[:200]}"}, 1
                result["rows"].append(row)
                print(f"{method} ({preset}): {'failed' if 'error' in row else 'done'} "
                      f"[{time.perf_counter() - t:.0f} s]", flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    md = table(result["rows"], f"gpu-check on {dev_name}, torch {torch.__version__}, {a.steps} steps, "
                               f"{a.views} views, {result['seconds']} s in all")
    print(md)
    if a.out:
        (a.out / "gpu_check.txt").write_text(md + "\n")
        (a.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
        print(f"written: {a.out / 'gpu_check.txt'}, {a.out / 'gpu_check.json'}, {log}")
    return status


if __name__ == "__main__":
    sys.exit(main())
