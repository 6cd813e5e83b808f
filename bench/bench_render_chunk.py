"""Render time of a trained HandOcc run's full 512x334 frames against the render chunk (rays per chunk), side by
side in one process, and the peak memory of each chunk size alone.

    python bench/bench_render_chunk.py --run W/hocc_run_interacting_handocc [--chunks 8192,16384,32768]
        [--repeats 3] [--threads 2]

``--run``: a HandOcc run folder written by bench_handocc.py (``--work W``; its cache and held-out cameras are read
from the run's config.json). The frames are bench_handocc.py's render-time picks (the held-out cameras' intrinsics
scaled x2, four views), so the numbers compare with its "s per 512x334 frame" column. For each view the chunk sizes
take turns ``--repeats`` times (load from other processes hits all alike) and each keeps its best time; the report
gives the mean over the views. Peak RSS: each chunk size renders the four views once in a fresh process
(``VmHWM`` of that child; Linux). Also checks that the images do not depend on the chunk (max abs difference).
Nothing is asserted; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_handocc import render_full_frame, split_frames, test_views  # noqa: E402


def load(run: Path, threads: int):
    """(method, picked views): the run and bench_handocc.py's render-time views of its cache."""
    from handcli.methods.handocc.method import HandOccMethod

    torch.set_num_threads(threads)
    m = HandOccMethod.from_run(run, device="cpu")
    _, nv_frames, np_frames = split_frames(m.cache.num_frames)
    nv, npose = test_views(m.cache, nv_frames), test_views(m.cache, np_frames)
    return m, (nv[::2] + npose[::2])[:4]


def render_full(m, j: int, chunk: int) -> dict:
    """bench_handocc.py's full frame of cache view j, rendered with ``chunk`` rays per chunk."""
    m.cfg = replace(m.cfg, chunk=chunk)
    return render_full_frame(m, j)


def child(run: Path, chunk: int, threads: int) -> None:
    m, views = load(run, threads)
    with torch.no_grad():
        for j in views:
            render_full(m, j, chunk)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"maxrss_mb": int(hwm.split()[1]) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--chunks", default="8192,16384,32768")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.run, a.child, a.threads)
    chunks = [int(c) for c in a.chunks.split(",")]
    m, views = load(a.run, a.threads)
    best = {c: [] for c in chunks}
    diff = {c: 0.0 for c in chunks}
    with torch.no_grad():
        render_full(m, views[0], chunks[0])  # warm-up
        for j in views:
            t_best = {c: float("inf") for c in chunks}
            ref = None
            for _ in range(a.repeats):
                for c in chunks:
                    t = time.perf_counter()
                    r = render_full(m, j, c)
                    t_best[c] = min(t_best[c], time.perf_counter() - t)
                    ref = r if ref is None else ref
                    diff[c] = max(diff[c], *(float(np.abs(r[k] - ref[k]).max()) for k in ("rgb", "depth", "opacity")))
            for c in chunks:
                best[c].append(t_best[c])
    rss = {}
    for c in chunks:
        out = subprocess.run([sys.executable, __file__, "--run", str(a.run), "--child", str(c), "--threads",
                              str(a.threads)], capture_output=True, text=True, check=True).stdout
        rss[c] = json.loads(out.strip().splitlines()[-1])["maxrss_mb"]
    print(f"run {a.run}, {len(views)} views of 512x334, {a.threads} threads, best of {a.repeats} alternations\n")
    print("| chunk (rays) | s per frame (per view) | mean | vs first | peak RSS MB | max abs diff to the first |")
    print("|---|---|---|---|---|---|")
    for c in chunks:
        per = " / ".join(f"{t:.3f}" for t in best[c])
        print(f"| {c} | {per} | {np.mean(best[c]):.3f} | {np.mean(best[c]) / np.mean(best[chunks[0]]):.3f}x | "
              f"{rss[c]:.0f} | {diff[c]:.1e} |")


if __name__ == "__main__":
    main()
