"""Training memory and speed against the cache size: peak RSS, time to first step and rays/s of ``handcli train``.

Caches of growing size are shard directories (docs/scale.md) made of hard links to one base shard
(synthetic InterHand at 256x167 for handnerf / handocc, synthetic DexYCB at 320x240 for handnerf-ho), so a
20k-view dataset costs the disk of one shard. Every link is read as its own shard (its own frames and
views, global indices), which is what training sees on a real directory; the pixels come from the page
cache, so the numbers are about memory and start-up work, not disk bandwidth.

Each run is ``handcli train DIR --preset fast --steps S --log-every 1`` in a fresh process:
peak RSS = the child's ``ru_maxrss`` (os.wait4); time to first step = process start until the first line
of metrics.jsonl appears; rays/s = the median of the logged rays_per_s after the first two steps.

``--baseline-src DIR`` also times another checkout (e.g. the main branch) on the small demo cache
(synthetic InterHand, 6 frames x 2 sequences x 9 cameras at 256x167, as scripts/demo.sh) for the
"rays/s within 10 % of today" check; both checkouts run alternately, ``--repeats`` times each.

    python bench/bench_scale_train.py --work /tmp/bst --sizes 1000,5000,20000 --steps 20
    python bench/bench_scale_train.py --work /tmp/bst --demo-only --baseline-src ../handcli-baseline --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("handnerf", "handocc", "handnerf-ho")


def base_shards(work: Path, ih_views: int, ho_views: int) -> dict[str, Path]:
    """One base shard per dataset kind (built once): interhand (handnerf, handocc) and dexycb (handnerf-ho)."""
    from handcli.data.cache import Cache
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    out = {}
    ih = work / "base_interhand.h5"
    if not ih.exists():
        cams = 10
        frames = max(1, ih_views // (2 * cams))
        write_interhand(work / "ih", InterHandSynthConfig(frames=frames, cameras=cams + 1, mono_cameras=0, seed=0))
        preprocess_interhand(work / "ih", ih, scale=0.5, workers=2)
    out["interhand"] = ih
    ho = work / "base_dexycb.h5"
    if not ho.exists():
        frames = max(2, ho_views // (4 * 2 * 8))
        write_dexycb(work / "dex", DexYCBSynthConfig(subjects=4, seqs=2, frames=frames, cameras=8, seed=0))
        preprocess_dexycb(work / "dex", ho, scale=0.5, workers=2)
    out["dexycb"] = ho
    for k, p in out.items():
        with Cache(p) as c:
            v = c.view(0)
            print(f"base {k}: {p} {c.num_frames} frames, {c.num_views} views, {v['rgb'].shape[1]}x"
                  f"{v['rgb'].shape[0]}", flush=True)
    return out


def shard_dir(work: Path, base: Path, views: int) -> tuple[Path, int]:
    """A directory of hard links to ``base`` with at least ``views`` views; returns (dir, views)."""
    from handcli.data.cache import Cache

    with Cache(base) as c:
        per = c.num_views
    k = max(1, -(-views // per))
    d = work / f"{base.stem}_x{k}"
    if not d.exists():
        tmp = work / f".{d.name}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for i in range(k):
            p = tmp / f"part-{i:05d}.h5"
            if not p.exists():
                os.link(base, p)
        tmp.rename(d)
    return d, k * per


def run_train(src: Path, cache: Path, method: str, steps: int, out: Path, threads: int,
              extra: list[str] | None = None) -> dict:
    """One ``handcli train`` process: peak RSS (MB), time to first step (s), rays/s, wall time."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "handcli.cli", "train", str(cache), "-o", str(out), "--method", method,
           "--preset", "fast", "--steps", str(steps), "--log-every", "1", "--ckpt-every", str(steps),
           "--threads", str(threads), "--device", "cpu", *(extra or [])]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    import threading

    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.parent / f"{out.name}.stderr.txt"
    metrics = out / "metrics.jsonl"
    first: list[float | None] = [None]
    done = threading.Event()

    def watch() -> None:  # the first metrics line marks the end of step 1 (--log-every 1)
        while not done.is_set() and first[0] is None:
            if metrics.exists() and metrics.stat().st_size > 0:
                first[0] = time.perf_counter() - t0
            time.sleep(0.05)

    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)  # the child's own rusage (ru_maxrss: its peak RSS in KiB)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log_path.read_text()[-3000:]}")
    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    rays = [r["rays_per_s"] for r in recs[2:]] or [r["rays_per_s"] for r in recs]
    return {"peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "first_step_s": first[0],
            "rays_per_s": statistics.median(rays), "wall_s": round(wall, 2), "steps": recs[-1]["step"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sizes", default="1000,5000,20000", help="Cache sizes in views.")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base-views", type=int, default=500, help="Views of each base shard.")
    ap.add_argument("--baseline-src", type=Path, help="Another checkout to time on the demo cache.")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--demo-only", action="store_true")
    ap.add_argument("--out", type=Path, help="JSON results (default: WORK/results.json).")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    results = json.loads((a.out or a.work / "results.json").read_text()) if (a.out or a.work / "results.json").exists() \
        else {"scale": [], "demo": []}
    if not a.demo_only:
        bases = base_shards(a.work, a.base_views, a.base_views)
        for method in a.methods.split(","):
            base = bases["dexycb" if method == "handnerf-ho" else "interhand"]
            for size in (int(s) for s in a.sizes.split(",")):
                d, views = shard_dir(a.work, base, size)
                r = run_train(REPO, d, method, a.steps, a.work / "runs" / f"{method}_{views}", a.threads)
                rec = {"method": method, "views": views, "cache": str(d), **r}
                results["scale"] = [x for x in results["scale"] if (x["method"], x["views"]) != (method, views)]
                results["scale"].append(rec)
                print(json.dumps(rec), flush=True)
                (a.out or a.work / "results.json").write_text(json.dumps(results, indent=2))
    if a.baseline_src:
        demo = a.work / "demo_cache.h5"
        if not demo.exists():
            from handcli.data.interhand_preprocess import preprocess_interhand
            from handcli.synth.interhand import InterHandSynthConfig, write_interhand

            write_interhand(a.work / "demo_ih", InterHandSynthConfig(
                frames=6, cameras=9, seqs=("right", "interacting"), seed=0,
                camera_ids=("400002", "400009", "400004", "400017", "400010", "400012", "400013", "400016")))
            preprocess_interhand(a.work / "demo_ih", demo, scale=0.5, workers=2)
        rows = {"baseline": [], "this": []}
        for rep in range(a.repeats):
            for tag, src in (("baseline", a.baseline_src), ("this", REPO)):
                r = run_train(src, demo, "handnerf", a.steps, a.work / "runs" / f"demo_{tag}", a.threads)
                rows[tag].append(r)
                print(json.dumps({"demo": tag, "rep": rep, **r}), flush=True)
        summary = {tag: {"rays_per_s": statistics.median(x["rays_per_s"] for x in rs),
                         "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs),
                         "first_step_s": statistics.median(x["first_step_s"] for x in rs), "runs": rs}
                   for tag, rs in rows.items()}
        summary["baseline_src"] = str(a.baseline_src)
        results["demo"] = summary
        (a.out or a.work / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({k: (v["rays_per_s"] if isinstance(v, dict) else v) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
