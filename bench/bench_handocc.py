"""HandOcc vs HandNeRF on the synthetic InterHand2.6M benchmark of bench_handnerf.py, side by side in one run.

    python bench/bench_handocc.py [--budget 600] [--frames 10] [--work DIR] [--methods handocc,handnerf]

Data (bench_handnerf.prepare: the same generator and settings; ``--work bench_out/handnerf`` reuses that
benchmark's data, the folders written here are named apart): a right-hand and an interacting sequence, HandNeRF's 10 training cameras and 8 held-out cameras, 256x167 (scale 0.5). Every
5th frame counting from 2 (2, 7, ...) is held out of training (novel poses); each method (fast preset)
trains on the other frames and the training cameras for ``--budget`` seconds per sequence; the number of
steps (over which the learning rate decays from the preset's lr to lr_final) is calibrated from the
time of a few probe steps of each method, and the time budget stops training in any case.

Measured per sequence and method:
- novel views: held-out cameras, every 5th frame (0, 5, ...; seen in training from other cameras): PSNR
  (full image with black background = Guo's convention, and box), SSIM (Gaussian 11x11; skimage 7x7),
  depth error (mm, against the mesh pseudo-depth);
- novel poses: held-out cameras on the held-out frames (never seen): PSNR full / box, SSIM;
- network evaluations per ray at render time (rays that enter a hand's box); HandOcc also renders the
  novel views with 64 uniform samples per ray in each hand's box (the same model, every network at every
  sample) for the sampler comparison: evaluations per ray and PSNR side by side;
- training rays/s (trainer log) and render seconds per 512x334 frame (the held-out cameras' intrinsics
  scaled x2, ``--threads`` 2 by default; mean over 4 views of the sequence, best of 2 each).

Prints a markdown table and writes results_handocc.json into the work folder. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handnerf import SEQS, TEST, TRAIN, prepare  # noqa: E402  (the same data as the HandNeRF bench)


def split_frames(n: int) -> tuple[list[int], list[int], list[int]]:
    """(training frames, novel-view frames, novel-pose frames) of an n-frame sequence."""
    novel_pose = [f for f in range(n) if f % 5 == 2]
    train = [f for f in range(n) if f not in novel_pose]
    return train, [f for f in train if f % 5 == 0], novel_pose


def test_views(cache, frames: list[int]) -> list[int]:
    vt = cache.view_table()
    names = [c["name"] for c in cache.cameras()]
    return [j for j in range(len(vt["frame"])) if names[vt["camera"][j]] in TEST and int(vt["frame"][j]) in frames]


def build(method: str, cache: Path, depth: Path, feats: Path, frames: list[int]):
    torch.manual_seed(0)
    if method == "handocc":
        from handcli.methods.handocc.method import HandOccMethod
        from handcli.methods.handocc.model import PRESETS

        cfg = replace(PRESETS["fast"], steps=100_000)
        return HandOccMethod(cfg, cache, train_cameras=TRAIN, train_frames=frames, eval_cameras=TEST)
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf.model import preset

    cfg = replace(preset("fast", "handnerf"), steps=100_000)
    return HandNeRFMethod(cfg, cache, method="handnerf", train_cameras=TRAIN, train_frames=frames, depth_path=depth,
                          feat_path=feats, eval_cameras=TEST)


def render_and_eval(m, cache: Path, depth: Path, views: list[int], out: Path, name: str) -> dict:
    """Render cache views, evaluate them (handcli eval's metrics); evaluations per ray and seconds."""
    from handcli.eval.renders_eval import evaluate_renders
    from handcli.render.renders_folder import RendersWriter

    vt = m.cache.view_table()
    shutil.rmtree(out, ignore_errors=True)
    w = RendersWriter(out, name, None, cache, "views", {})
    evals = rays = 0
    secs = []
    with torch.no_grad():
        for j in views:
            t = time.perf_counter()
            r = m.render_view(j)
            secs.append(time.perf_counter() - t)
            evals += r["evaluated"]
            rays += r["rays"]
            cam = m.cache.cameras()[int(vt["camera"][j])]
            w.add(r["rgb"], r["depth"], r["opacity"], {"cache_view": j, "frame": int(vt["frame"][j]),
                                                        "camera": cam["name"], "K": cam["K"],
                                                        "world_to_cam": cam["world_to_cam"],
                                                        "frame_key": m.cache.frame(int(vt["frame"][j])).key})
    w.close()
    mean = evaluate_renders(out, cache, depth_path=depth).doc["mean"]
    return {"psnr_full": mean.get("psnr_full"), "psnr_box": mean.get("psnr_box"),
            "ssim_gaussian": mean.get("ssim_gaussian"), "ssim_skimage": mean.get("ssim_skimage_default"),
            "de_mm": mean.get("depth_error_mm"), "evals_per_ray": evals / max(rays, 1),
            "render_s_per_view": float(np.mean(secs)), "views": len(views)}


def render_full_frame(m, j: int) -> dict:
    """Cache view j's frame from its camera with the intrinsics scaled x2 (512x334 for this data)."""
    from handcli.camera import scale_intrinsics

    cam = m.cache.cameras()[int(m.cache.view_table()["camera"][j])]
    return m.render_camera(int(m.cache.view_table()["frame"][j]), scale_intrinsics(cam["K"], 2.0, 2.0),
                           cam["world_to_cam"], 2 * cam["height"], 2 * cam["width"])


def time_full_frames(m, views: list[int], repeats: int = 2) -> float:
    """Mean best-of-``repeats`` seconds to render a 512x334 frame (``render_full_frame``)."""
    out = []
    with torch.no_grad():
        for j in views:
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                render_full_frame(m, j)
                best = min(best, time.perf_counter() - t)
            out.append(best)
    return float(np.mean(out))


def calibrate_steps(m, budget: float, probe: int = 12) -> int:
    """Steps that fit in ``budget`` seconds, from the time of ``probe`` training steps (no update is made),
    so that the learning rate decays over the budget instead of staying near its start. The warm-up draws
    three steps per training frame first (a frame's first steps build its caches, e.g. HandOcc's labelled-point
    pools, and were counted before, so runs stopped at half their budget); half the probes are timed early in the
    schedule and half at its middle (HandOcc refines its skeletons from 30 % of the steps, which costs more)."""
    from handcli.methods.trainer import step_generator

    for i in range(2 + 3 * len(m.frames)):  # warm-up
        m.train_step(i, step_generator(99, i))[0].backward()
    t = time.perf_counter()
    for i in range(probe):
        step = i if i < probe // 2 else m.cfg.steps // 2 + i
        m.train_step(step, step_generator(99, i))[0].backward()
    m.model.zero_grad(set_to_none=True)
    return max(int(budget / ((time.perf_counter() - t) / probe)), 10)


def run_one(method: str, seq: str, data: tuple, budget: float, work: Path, n_frames: int) -> dict:
    from handcli.methods.trainer import train

    cache, depth, feats, _true_depth = data  # bench_handnerf.prepare; the DE column is against the pseudo-depth
    train_frames, nv_frames, np_frames = split_frames(n_frames)
    m = build(method, cache, depth, feats, train_frames)
    m.cfg = replace(m.cfg, steps=calibrate_steps(m, budget))
    run = work / f"hocc_run_{seq}_{method}"  # names apart from bench_handnerf.py's (same work folder is fine)
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    # a handcli run folder: `handcli render/view/eval` and bench_render_chunk.py load it
    from handcli.methods.base import write_run_config

    write_run_config(run, method, "fast", m.cfg, {
        "cache": str(Path(cache).resolve()), "depth": str(Path(depth).resolve()) if method == "handnerf" else None,
        "features": str(Path(feats).resolve()) if method == "handnerf" else None, "cameras": list(TRAIN),
        "eval_cameras": list(TEST), "frames": train_frames}, 0, " ".join(sys.argv))
    t0 = time.perf_counter()
    last = train(m, run, steps=m.cfg.steps, lr=m.cfg.lr, lr_final=m.cfg.lr_final, seed=0, resume=False,
                 log_every=100, ckpt_every=10**9, time_budget=budget)
    train_s = time.perf_counter() - t0
    m.model.eval()
    nv_views, np_views = test_views(m.cache, nv_frames), test_views(m.cache, np_frames)
    nv = render_and_eval(m, cache, depth, nv_views, work / f"hocc_renders_{seq}_{method}_nv", method)
    npose = render_and_eval(m, cache, depth, np_views, work / f"hocc_renders_{seq}_{method}_np", method)
    res = {"sequence": seq, "method": method, "steps": last.get("step"), "train_s": round(train_s, 1),
           "rays_per_s": round(last.get("rays_per_s", 0.0)), "samples_per_ray_train": last.get("samples_per_ray"),
           **{f"nv_{k}": v for k, v in nv.items()}, **{f"np_{k}": v for k, v in npose.items()}}
    pick = (nv_views[::2] + np_views[::2])[:4]
    res["s_per_512x334"] = time_full_frames(m, pick)
    if method == "handocc":  # the same model with 64 uniform samples per ray, every network everywhere
        with m.model.sampling(sampler="uniform", n_uniform=64):
            u = render_and_eval(m, cache, depth, nv_views, work / f"hocc_renders_{seq}_{method}_uniform", method)
        res.update(uniform64_psnr_full=u["psnr_full"], uniform64_psnr_box=u["psnr_box"],
                   uniform64_evals_per_ray=u["evals_per_ray"],
                   evals_ratio_vs_uniform64=u["evals_per_ray"] / max(res["nv_evals_per_ray"], 1e-9),
                   evals_ratio_vs_64=64.0 / max(res["nv_evals_per_ray"], 1e-9))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per method and sequence")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("bench_out/handocc"))
    ap.add_argument("--methods", default="handocc,handnerf")
    ap.add_argument("--seqs", default="right,interacting")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare(args.work, args.frames, feat_dim=32)
    rows = []
    for seq in args.seqs.split(","):
        if seq not in SEQS:
            raise SystemExit(f"unknown sequence {seq!r}; choose from {', '.join(SEQS)}")
        for method in args.methods.split(","):
            r = run_one(method, seq, data[seq], args.budget, args.work, args.frames)
            rows.append(r)
            print(json.dumps(r), flush=True)
    (args.work / "results_handocc.json").write_text(json.dumps(rows, indent=2))
    cols = ["sequence", "method", "steps", "nv_psnr_full", "nv_psnr_box", "nv_ssim_gaussian", "nv_ssim_skimage",
            "nv_de_mm", "np_psnr_full", "np_psnr_box", "nv_evals_per_ray", "rays_per_s", "s_per_512x334"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    for r in rows:
        if r["method"] == "handocc":
            print(f"{r['sequence']}: handocc sampler {r['nv_evals_per_ray']:.2f} evaluations/ray, PSNR "
                  f"{r['nv_psnr_full']:.2f}; uniform 64 {r['uniform64_evals_per_ray']:.2f} evaluations/ray, PSNR "
                  f"{r['uniform64_psnr_full']:.2f} ({r['evals_ratio_vs_uniform64']:.1f}x fewer; "
                  f"{r['evals_ratio_vs_64']:.1f}x fewer than 64)")


if __name__ == "__main__":
    main()
