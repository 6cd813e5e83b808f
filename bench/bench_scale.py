"""Scale benchmark: peak memory and time against the real InterHand2.6M annotation sizes.

    python bench/bench_scale.py --part preprocess [--sizes 0.01,0.05,0.2,1,30fps] [--out bench_out/scale]

``--part preprocess``: a tiny synthetic InterHand root (one sequence, 3 frames, 3 colour cameras) has its
annotation files inflated (handcli/synth/interhand_inflate.py) to a fraction of the 5 fps train release
(1,361,062 images, an 834 MB ``data.json``; ``1`` = that size) or to the 30 fps size (``30fps``: a 3.7 GB
``data.json``), with filler entries whose images do not exist, outside the selection. Then
``handcli preprocess interhand`` runs in a fresh process on a 6-image selection (2 cameras x 3 frames) and
its peak RSS (``ru_maxrss`` from ``wait4``; this parent imports neither torch nor numpy, so the value Linux
carries over from it at fork is negligible) and wall time are reported. Inflated files are deleted after
each size unless ``--keep``. The full sizes write 0.8 and 3.7 GB: run them once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handcli.synth.interhand_inflate import (  # noqa: E402  (json/os only: no torch in this process)
    FIVE_FPS_DATA_BYTES,
    FIVE_FPS_TRAIN_IMAGES,
    THIRTY_FPS_DATA_BYTES,
    inflate_interhand,
)

SEQ = "0000_rh_wave"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "handcli.cli", *args]


CODE = REPO  # the checkout whose handcli runs the measured command (--code)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(CODE))


def measure(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (stderr to ``log``); its exit code, wall seconds and peak RSS (MiB) from wait4."""
    t = time.perf_counter()
    with open(log, "wb") as err, open(log.with_suffix(".hwm"), "w") as hwm:
        p = subprocess.Popen(cmd, env=_env(), cwd=CODE, stdout=subprocess.DEVNULL, stderr=err)
        polls = 0
        while True:  # sample the high-water mark meanwhile, so a run cut short still tells its peak so far
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
            polls += 1
            if polls % 100:
                continue
            try:
                with open(f"/proc/{p.pid}/status") as st:
                    peak = next(line.split()[1] for line in st if line.startswith("VmHWM:"))
                hwm.write(f"{time.perf_counter() - t:.0f} s: VmHWM {int(peak) / 1024:.0f} MiB\n")
                hwm.flush()
            except (OSError, StopIteration):
                pass
    wall = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    return {"rc": rc, "seconds": round(wall, 1), "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 1),
            "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
            "stderr_tail": log.read_text(errors="replace")[-400:]}


def parse_size(s: str) -> tuple[str, int]:
    """``"0.2"`` -> 20 % of the 5 fps train images; ``"30fps"`` -> the 30 fps data.json size."""
    if s == "30fps":
        return s, round(FIVE_FPS_TRAIN_IMAGES * THIRTY_FPS_DATA_BYTES / FIVE_FPS_DATA_BYTES)
    frac = float(s)
    return f"{frac * 100:g} % of 5 fps", round(FIVE_FPS_TRAIN_IMAGES * frac)


def part_preprocess(args) -> list[dict]:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    src = out / "synth_ih"
    if not src.exists():
        r = subprocess.run(_cli("synth", "interhand", str(src), "--frames", "3", "--cameras", "3", "--mono-cameras",
                                "0", "--seqs", "right", "--no-black-frame", "--no-null-mano"), env=_env(),
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr)
    data = json.loads((src / "annotations" / "train" / "InterHand2.6M_train_data.json").read_text())
    cams = sorted({im["camera"] for im in data["images"]})[:2]
    frames = sorted({im["frame_idx"] for im in data["images"]})[:3]
    selection = ["--capture", "0", "--seq", SEQ, "--cameras", ",".join(cams), "--frames",
                 ",".join(map(str, frames))]
    rows = []
    for s in args.sizes.split(","):
        label, images = parse_size(s)
        root = out / f"ih_{s}"
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        info = inflate_interhand(src, root, images=images)
        t_inflate = time.perf_counter() - t
        cache = out / f"cache_{s}.h5"
        cache.unlink(missing_ok=True)
        load_before = os.getloadavg()[0]
        cmd = _cli("preprocess", "interhand", str(root), "-o", str(cache), *selection)
        m = measure(cmd, out / f"preprocess_{s}.log")
        row = {"size": label, "images": info["images"], "frames": info["frames"],
               "data_json_mb": round(info["bytes"]["data"] / 1e6, 1),
               "other_json_mb": round(sum(v for k, v in info["bytes"].items() if k != "data") / 1e6, 1),
               "inflate_s": round(t_inflate, 1), **m, "load_before": round(load_before, 1),
               "load_after": round(os.getloadavg()[0], 1),
               "command": " ".join(["handcli", "preprocess", "interhand", "ROOT", "-o", "cache.h5", *selection])}
        if m["rc"] != 0:
            print(m["stderr_tail"], file=sys.stderr)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"}), flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            cache.unlink(missing_ok=True)
    print("\n| annotations | images | data.json | other JSONs | peak RSS | wall time | CPU time | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['images']:,} | {r['data_json_mb']:,} MB | {r['other_json_mb']:,} MB | "
              f"{r['peak_rss_mib']:,} MiB | {r['seconds']} s | {r['cpu_seconds']} s | "
              f"{r['load_before']} -> {r['load_after']} |")
    (out / "results_preprocess.json").write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["preprocess"], default="preprocess")
    ap.add_argument("--sizes", default="0.01,0.05,0.2,1,30fps",
                    help="comma-separated fractions of the 5 fps train annotations, or 30fps")
    ap.add_argument("--out", default=str(REPO / "bench_out" / "scale"))
    ap.add_argument("--keep", action="store_true", help="keep the inflated roots and caches")
    ap.add_argument("--code", default=str(REPO),
                    help="checkout whose handcli is measured (e.g. an older commit, for before/after)")
    args = ap.parse_args()
    global CODE
    CODE = Path(args.code).resolve()
    if args.part == "preprocess":
        part_preprocess(args)


if __name__ == "__main__":
    main()
