"""HandNeRF time to the first training step against the number of training frames.

    python bench/bench_first_step.py [--frames 10,100,1000] [--eager-max 100] [--work DIR] [--threads 1]

Data: the tiny synthetic InterHand dataset (2 sequences, 4 cameras at 84x128), its 6 frames duplicated
into one cache of >= max(--frames) frames (``merge_caches`` of copies: every frame index is its own frame
to the method, so nothing is shared between duplicates). Config: the ``fast`` network with the paper's
geometry (voxel 5 mm, norm_th 5 cm), i.e. paper-sized blend-weight grids.

Per frame count N (training frames 0..N-1), in one process:
- ``construct_s``: ``HandNeRFMethod(...)`` (cache open, view loading, model);
- ``first_step_s``: construction + ``train`` to step 1 (builds the one frame step 1 draws);
- ``resume_construct_s`` / ``resume_frame_s``: a fresh method on the same run (as ``--resume`` or
  ``render`` builds it), then the time to get step 1's frame, which the run's store holds;
- ``built``/``resume_built``/``resume_loaded``: geometry builds in the first run, builds and store loads
  in the resumed one;
- ``store_mb_per_frame`` / ``memory_mb_per_frame``: size of a frame's store entry / its arrays in memory;
- ``eager_geometry_s``: what the old ``precompute_geometry`` cost before step 1, building every frame's
  grids (measured up to ``--eager-max`` frames; above, per-frame time x N, marked "extrapolated").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def make_cache(work: Path, frames: int) -> Path:
    from handcli.data.cache import Cache, merge_caches
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    root, base = work / "ih", work / "base.h5"
    if not root.exists():
        write_interhand(root, InterHandSynthConfig(frames=4, cameras=4, mono_cameras=0,
                                                   seqs=("right", "interacting"), seed=3))
    if not base.exists():
        preprocess_interhand(root, base, scale=0.25)
    with Cache(base) as c:
        n0 = c.num_frames
    copies = -(-frames // n0)
    out = work / f"dup{copies * n0}.h5"
    if not out.exists():
        merge_caches([base] * copies, out, command="bench_first_step")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="10,100,1000")
    ap.add_argument("--eager-max", type=int, default=100)
    ap.add_argument("--work", default="/tmp/handcli_bench_first_step")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from handcli.data.cache import Cache
    from handcli.methods.handnerf.geometry_store import FrameGeometry
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf.model import preset
    from handcli.methods.trainer import train

    torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.frames.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = make_cache(work, max(counts))
    cfg = replace(preset("fast"), voxel=0.005, norm_th=0.05, steps=1)
    rows = []
    per_frame_build = None
    for n in counts:
        run = work / f"run{n}"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        run.mkdir()
        t0 = time.perf_counter()
        m = HandNeRFMethod(cfg, cache, train_frames=list(range(n)))
        t1 = time.perf_counter()
        train(m, run, steps=1, lr=cfg.lr, lr_final=cfg.lr_final, seed=0, resume=False)
        t2 = time.perf_counter()
        (frame,) = list(m.geoms._lru)  # the one frame step 1 drew
        r = HandNeRFMethod(cfg, cache, train_frames=list(range(n)))  # a fresh process resuming the run
        r.attach_run(run)
        t3 = time.perf_counter()
        r.geoms[frame]
        t4 = time.perf_counter()
        row = {"frames": n, "construct_s": round(t1 - t0, 2), "first_step_s": round(t2 - t0, 2),
               "built": m.geoms.built, "resume_construct_s": round(t3 - t2, 2),
               "resume_frame_s": round(t4 - t3, 3), "resume_built": r.geoms.built, "resume_loaded": r.geoms.loaded}
        files = list((run / "geometry").rglob("*.npz"))
        row["store_mb_per_frame"] = round(sum(p.stat().st_size for p in files) / max(len(files), 1) / 2**20, 2)
        row["memory_mb_per_frame"] = round(sum(getattr(g, k).numel() * 4 for g in r.geoms[frame]
                                               for k in ("grid", "A_pose", "A_can")) / 2**20, 2)
        if n <= args.eager_max:
            with Cache(cache) as c:
                g = FrameGeometry(c, cfg.voxel, cfg.norm_th + cfg.voxel, "cpu", capacity=1)
                t = time.perf_counter()
                for f in range(n):
                    g.build(c.frame(f))
                row["eager_geometry_s"] = round(time.perf_counter() - t, 2)
                per_frame_build = row["eager_geometry_s"] / n
        elif per_frame_build is not None:
            row["eager_geometry_s"] = round(per_frame_build * n, 1)
            row["eager_extrapolated"] = True
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| frames | construct s | to step 1 s (lazy) | grids built | resumed: construct s, frame s "
          "(built, loaded) | old: grids before step 1 s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        eager = r.get("eager_geometry_s", "-")
        if r.get("eager_extrapolated"):
            eager = f"{eager} (extrapolated)"
        print(f"| {r['frames']} | {r['construct_s']} | {r['first_step_s']} | {r['built']} | "
              f"{r['resume_construct_s']}, {r['resume_frame_s']} ({r['resume_built']}, {r['resume_loaded']}) | "
              f"{eager} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
