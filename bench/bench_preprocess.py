"""Preprocess throughput (images/s) for synthetic InterHand2.6M at 512x334 with 1 and 2 workers.

    python bench/bench_preprocess.py [--frames 12] [--cameras 12] [--root DIR]

Each image costs: JPEG decode + (optional resize) + hand-mask rasterization + cache write. Reports
end-to-end images/s (including worker start-up) and steady-state images/s (from the first frame
written to the last), side by side for 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from handcli.data.interhand_preprocess import preprocess_interhand
from handcli.synth.interhand import InterHandSynthConfig, write_interhand


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--cameras", type=int, default=12)
    ap.add_argument("--root", type=Path, default=None, help="reuse an existing synthetic root")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = args.root
        if root is None:
            root = tmp / "ih"
            t = time.perf_counter()
            write_interhand(root, InterHandSynthConfig(frames=args.frames, cameras=args.cameras, mono_cameras=0,
                                                       seqs=("right", "interacting"), black_frame=False,
                                                       null_mano=False))
            print(f"synthesized {root} in {time.perf_counter() - t:.1f}s")
        rows = []
        for workers in (1, 2):
            s = preprocess_interhand(root, tmp / f"c{workers}.h5", workers=workers, scale=args.scale)
            rows.append({"workers": workers, "images": s["images"], "seconds": round(s["seconds"], 2),
                         "images_per_s": round(s["images_per_s"], 1),
                         "steady_images_per_s": round(s.get("steady_images_per_s", float("nan")), 1)})
        print(f"{'workers':>8} {'images':>7} {'seconds':>8} {'img/s (end-to-end)':>19} {'img/s (steady)':>15}")
        for r in rows:
            print(f"{r['workers']:>8} {r['images']:>7} {r['seconds']:>8} {r['images_per_s']:>19} "
                  f"{r['steady_images_per_s']:>15}")
        print(f"speed-up 2 vs 1 worker (steady): {rows[1]['steady_images_per_s'] / rows[0]['steady_images_per_s']:.2f}x")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
