"""HandNeRF vs Pose-NeRF on synthetic InterHand2.6M, same wall-clock budget, side by side.

    python bench/bench_handnerf.py [--budget 600 | --steps N] [--frames 10] [--work DIR] [--methods handnerf,posenerf]
                                   [--profile ideal|realistic]

Data: one right-hand sequence and one interacting sequence, 10 training cameras and 8 held-out cameras
(HandNeRF's view ids), 256x167 (scale 0.5). Each method trains (fast preset) for ``--budget`` seconds
on each sequence and is evaluated on the held-out cameras of every 5th frame (novel views):
PSNR (full image, black background = Guo's convention; and box), SSIM (Gaussian 11x11; skimage 7x7),
depth error (mm), training rays/s and field evaluations (samples) per ray. ``handnerf-nodepth`` is the
depth-supervision ablation (everything else as ``handnerf``); ``handnerf-noec`` is ``handnerf`` without the
pose-conditioned error-correction MLP (Guo's ablation); Pose-NeRF trains on RGB only. ``--steps N`` trains
every method for exactly N steps (learning rate decayed over them) instead of a wall-clock budget, which
compares methods fairly on a shared machine. Prints a markdown table and writes results.json into the work
folder.

``--profile realistic`` generates the data with the synthetic InterHand realistic profile
(docs/datasets.md#realistic-profile: annotation error, a rendered hand outside the model, capture effects).
Training then sees only what a real user has (the annotated meshes and the pseudo-depth rendered from them);
the depth error is measured against both the pseudo-depth (``de_mm``) and the true rendered depth of the
generator's ground truth (``de_true_mm``, ``handcli_gt/.../depth*.npy`` at the cache's resolution). With the
ideal profile the two agree up to rasterization.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

TRAIN = ["400002", "400004", "400010", "400012", "400013", "400016", "400018", "400042", "400053", "400059"]
TEST = ["400009", "400017", "400019", "400023", "400026", "400027", "400028", "400029"]
SEQS = {"right": "0000_rh_wave", "interacting": "0001_dh_touch"}


def prepare(work: Path, frames: int, feat_dim: int, profile: str = "ideal", seqs: tuple = tuple(SEQS)) -> dict:
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import realism_config
    from handcli.targets.depth import compute_depth
    from handcli.targets.features import compute_features

    root = work / "ih"
    if not root.exists():
        write_interhand(root, InterHandSynthConfig(frames=frames, camera_ids=tuple(TRAIN + TEST), mono_cameras=0,
                                                   seqs=("right", "interacting"), black_frame=False,
                                                   null_mano=False, seed=0,
                                                   realism=realism_config(profile, "interhand")))
    out = {}
    for name, seq in ((n, SEQS[n]) for n in seqs):
        cache, depth, feats = work / f"{name}.h5", work / f"{name}_depth.h5", work / f"{name}_feats.h5"
        if not cache.exists():
            preprocess_interhand(root, cache, seqs=seq, scale=0.5, workers=2)
        if not depth.exists():
            compute_depth(cache, depth, command="bench")
        if not feats.exists():
            compute_features(cache, feats, teacher="efficientnet-lite0", dim=feat_dim, command="bench")
        true_depth = work / f"{name}_depth_true.h5"
        if not true_depth.exists():
            write_true_depth(root, cache, depth, true_depth)
        out[name] = (cache, depth, feats, true_depth)
    return out


def write_true_depth(root: Path, cache_path: Path, pseudo: Path, out: Path) -> None:
    """A depth-targets file (the pseudo-depth's layout) holding the generator's true rendered z-depth
    (``handcli_gt/{split}/Capture{c}/{seq}/cam{cam}/depth{frame:04d}.npy``, nearest-resized to each view)."""
    import shutil

    import cv2
    import h5py

    from handcli.data.cache import Cache

    tmp = out.with_suffix(".tmp.h5")
    shutil.copyfile(pseudo, tmp)
    with Cache(cache_path) as c, h5py.File(tmp, "r+") as f:
        vt, cams = c.view_table(), c.cameras()
        keys = c.read("frames/key")
        for j in range(c.num_views):
            key = keys[int(vt["frame"][j])]
            split, capture, seq, fidx = (key.decode() if isinstance(key, bytes) else str(key)).split("/")
            cam = cams[int(vt["camera"][j])]["name"]
            d = np.load(root / "handcli_gt" / split / capture / seq / f"cam{cam}" / f"depth{int(fidx):04d}.npy")
            H, W = int(vt["height"][j]), int(vt["width"][j])
            d = cv2.resize(d, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
            off = int(vt["offset"][j])
            f["depth"][off:off + H * W] = d.reshape(-1).astype(np.float32)
        f.attrs["config"] = json.dumps({"source": "generator ground truth (handcli_gt depth*.npy)"})
    tmp.replace(out)


def run_one(method: str, cache: Path, depth: Path, feats: Path, budget: float | None, work: Path,
            steps: int | None = None, true_depth: Path | None = None, test_cameras: int = len(TEST)) -> dict:
    from handcli.eval.renders_eval import evaluate_renders
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf.model import preset
    from handcli.methods.trainer import train
    from handcli.render.renders_folder import RendersWriter

    base = "posenerf" if method == "posenerf" else "handnerf"
    cfg = replace(preset("fast", base), steps=steps or 100_000)
    if method == "handnerf-noec":
        cfg = replace(cfg, error_correction=False)
    use_depth = method in ("handnerf", "handnerf-noec")
    use_feats = method in ("handnerf", "handnerf-nodepth", "handnerf-noec")  # each ablation removes one thing
    torch.manual_seed(0)
    m = HandNeRFMethod(cfg, cache, method=base, train_cameras=TRAIN, depth_path=depth if use_depth else None,
                       feat_path=feats if use_feats else None, eval_cameras=TEST)
    run = work / f"run_{cache.stem}_{method}"
    run.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    last = train(m, run, steps=cfg.steps, lr=cfg.lr, lr_final=cfg.lr_final, seed=0, resume=False, log_every=100,
                 ckpt_every=10**9, time_budget=None if steps else budget)
    train_s = time.perf_counter() - t0
    # held-out cameras, every 5th frame (HandNeRF's test sampler)
    vt = m.cache.view_table()
    names = [c["name"] for c in m.cache.cameras()]
    views = [j for j in range(len(vt["frame"])) if names[vt["camera"][j]] in TEST[:test_cameras]
             and vt["frame"][j] % 5 == 0]
    rd = work / f"renders_{cache.stem}_{method}"
    import shutil

    shutil.rmtree(rd, ignore_errors=True)
    w = RendersWriter(rd, method, run, cache, "views", {})
    m.model.eval()
    secs, evals, rays = [], 0, 0
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
    res = evaluate_renders(rd, cache, depth_path=depth)
    mean = res.doc["mean"]
    de_true = None
    if true_depth is not None:
        de_true = evaluate_renders(rd, cache, depth_path=true_depth).doc["mean"].get("depth_error_mm")
    return {"method": method, "steps": last.get("step"), "train_s": round(train_s, 1),
            "rays_per_s": round(last.get("rays_per_s", 0.0)), "samples_per_ray_train": round(
                last.get("samples_per_ray", 0.0), 2),
            "samples_per_ray_render": round(evals / max(rays, 1), 2), "render_s_per_view": round(float(np.mean(secs)), 3),
            "psnr_full": mean.get("psnr_full"), "psnr_box": mean.get("psnr_box"),
            "ssim_gaussian": mean.get("ssim_gaussian"), "ssim_skimage": mean.get("ssim_skimage_default"),
            "de_mm": mean.get("depth_error_mm"), "de_true_mm": de_true, "views": len(views)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per method and sequence")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps (overrides --budget)")
    ap.add_argument("--profile", choices=("ideal", "realistic"), default="ideal", help="synthetic data profile")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("bench_out/handnerf"))
    ap.add_argument("--methods", default="handnerf,posenerf,handnerf-nodepth")
    ap.add_argument("--seqs", default="right,interacting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test-cameras", type=int, default=len(TEST), help="evaluate the first N held-out cameras")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare(args.work, args.frames, feat_dim=32, profile=args.profile, seqs=tuple(args.seqs.split(",")))
    rows = []
    for seq in args.seqs.split(","):
        for method in args.methods.split(","):
            if method in ("handnerf-nodepth", "handnerf-noec") and seq != "right":
                continue
            cache, depth, feats, true_depth = data[seq]
            r = {"sequence": seq, "profile": args.profile,
                 **run_one(method, cache, depth, feats, args.budget, args.work, args.steps, true_depth,
                             args.test_cameras)}
            rows.append(r)
            print(json.dumps(r), flush=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    cols = ["sequence", "method", "steps", "psnr_full", "psnr_box", "ssim_gaussian", "ssim_skimage", "de_mm", "de_true_mm",
            "rays_per_s", "samples_per_ray_train", "render_s_per_view"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
