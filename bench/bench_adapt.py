"""Novel poses before and after ``handcli adapt``, on the ideal and the realistic profile (HandNeRF, HandOcc).

    python bench/bench_adapt.py [--methods handnerf,handocc] [--profiles ideal,realistic] [--seed 0]
        [--frames 8] [--novel 2] [--steps handnerf=1000,handocc=600] [--adapt-steps handnerf=200,handocc=100]
        [--adapt-lr handocc=5e-3] [--work DIR] [--threads 1] [--handocc-set KEY=VALUE ...] [--tag NAME]

Per profile: ``handcli synth interhand --seqs right --frames F`` (the 10 training and 4 held-out cameras of
bench_handnerf.py), ``preprocess --scale 0.5``, the pseudo-depth and feature targets (HandNeRF's inputs). Per
method: ``handcli train --preset fast --steps N`` on the first F - ``--novel`` frames and the training cameras;
the last ``--novel`` frames are novel poses. They are rendered on the held-out cameras and scored with
``handcli eval`` (PSNR, SSIM; HandNeRF also depth error against the pseudo-depth) straight from the trained
run ("before"), and from ``handcli adapt RUN CACHE --frames NOVEL`` ("after"): HandNeRF fine-tunes its
error-correction and pose networks with the novel frames' depth (the pseudo-depth of the annotated meshes);
HandOcc refines the novel skeletons against the novel frames' training-camera images. Adaptation uses the
training cameras only, never the held-out ones. Fixed step counts, not time budgets (the machine is shared).
``--handocc-set`` passes ``--set KEY=VALUE`` to HandOcc's training (repeatable); ``--tag`` names the runs, renders
and results apart (``run_handocc_TAG``), so that variants share one work folder's data.
Prints a markdown table and writes results_adapt.json into the work folder. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handnerf import TEST, TRAIN  # noqa: E402  (the cameras of the HandNeRF / HandOcc benches)
from bench_realism_handocc import cli  # noqa: E402  (a handcli subprocess; its failure ends the bench)

HELD_OUT = TEST[:4]


def per_method(text: str, cast=float) -> dict:
    """``"handnerf=1000,handocc=600"`` -> {"handnerf": 1000, "handocc": 600}."""
    return {k: cast(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def prepare(work: Path, profile: str, seed: int, frames: int, threads: int) -> dict[str, Path]:
    d = work / f"{profile}_s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    root, cache, depth, feats = d / "ih", d / "cache.h5", d / "depth.h5", d / "feats.h5"
    if not root.exists():
        cli("synth", "interhand", str(root), "--seqs", "right", "--frames", str(frames), "--camera-ids",
            ",".join(TRAIN + HELD_OUT), "--mono-cameras", "0", "--no-black-frame", "--no-null-mano",
            "--seed", str(seed), "--profile", profile, threads=threads)
    if not cache.exists():
        cli("preprocess", "interhand", str(root), "-o", str(cache), "--scale", "0.5", threads=threads)
    if not depth.exists():
        cli("targets", "depth", str(cache), "-o", str(depth), threads=threads)
    if not feats.exists():
        cli("targets", "features", str(cache), "-o", str(feats), "--teacher", "efficientnet-lite0", "--dim", "32",
            threads=threads)
    return {"dir": d, "cache": cache, "depth": depth, "feats": feats}


def score(run: Path, data: dict, novel: str, name: str, threads: int) -> dict:
    renders, metrics = data["dir"] / f"renders_{name}", data["dir"] / f"metrics_{name}.json"
    if not metrics.exists():
        cli("render", str(run), str(data["cache"]), "-o", str(renders), "--views", ",".join(HELD_OUT), "--frames",
            novel, "--force", threads=threads)
        cli("eval", str(renders), str(data["cache"]), "-o", str(metrics), "--depth", str(data["depth"]), "--force",
            threads=threads)
    mean = json.loads(metrics.read_text())["mean"]
    return {k: mean.get(k) for k in ("psnr_full", "psnr_box", "ssim_gaussian", "depth_error_mm")}


def run_method(method: str, data: dict, frames: int, n_novel: int, steps: int, adapt_steps: int,
               adapt_lr: float | None, threads: int, sets: list[str] = (), tag: str = "") -> dict:
    train_frames, novel = f"0-{frames - n_novel - 1}", f"{frames - n_novel}-{frames - 1}"
    name = f"{method}_{tag}" if tag else method
    run, adapted = data["dir"] / f"run_{name}", data["dir"] / f"run_{name}_adapted"
    extra = ["--depth", str(data["depth"]), "--features", str(data["feats"])] if method == "handnerf" else []
    extra += [a for kv in sets for a in ("--set", kv)]
    t0 = time.perf_counter()
    if not (run / "checkpoint.pt").exists():
        cli("train", str(data["cache"]), "--method", method, "--preset", "fast", "--steps", str(steps), "-o",
            str(run), "--cameras", ",".join(TRAIN), "--eval-cameras", ",".join(HELD_OUT), "--frames", train_frames,
            "--seed", "0", "--threads", str(threads), "--force", *extra, threads=threads)
    t_train = time.perf_counter() - t0
    before = score(run, data, novel, name, threads)
    t0 = time.perf_counter()
    if not (adapted / "checkpoint.pt").exists():
        lr = ["--lr", str(adapt_lr)] if adapt_lr is not None else []
        depth = ["--depth", str(data["depth"])] if method == "handnerf" else []
        cli("adapt", str(run), str(data["cache"]), "-o", str(adapted), "--frames", novel, "--steps", str(adapt_steps),
            "--cameras", ",".join(TRAIN), "--seed", "0", "--force", *lr, *depth, threads=threads)
    t_adapt = time.perf_counter() - t0
    after = score(adapted, data, novel, f"{name}_adapted", threads)
    return {"method": method, "tag": tag, "sets": list(sets), "steps": steps, "adapt_steps": adapt_steps, "adapt_lr": adapt_lr,
            "train_s": round(t_train, 1), "adapt_s": round(t_adapt, 1), "before": before, "after": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="handnerf,handocc")
    ap.add_argument("--profiles", default="ideal,realistic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--novel", type=int, default=2)
    ap.add_argument("--steps", default="handnerf=1000,handocc=600")
    ap.add_argument("--adapt-steps", default="handnerf=200,handocc=100")
    ap.add_argument("--adapt-lr", default="handocc=5e-3", help="per method; a method not named uses adapt's default")
    ap.add_argument("--work", type=Path, default=Path("bench_out/adapt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--handocc-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a --set override of HandOcc's training (repeatable)")
    ap.add_argument("--tag", default="", help="a name for this variant's runs and results (default: none)")
    a = ap.parse_args()
    steps, adapt_steps = per_method(a.steps, int), per_method(a.adapt_steps, int)
    adapt_lr = per_method(a.adapt_lr)
    rows = []
    for profile in a.profiles.split(","):
        data = prepare(a.work, profile, a.seed, a.frames, a.threads)
        for method in a.methods.split(","):
            r = run_method(method, data, a.frames, a.novel, steps[method], adapt_steps[method], adapt_lr.get(method),
                           a.threads, a.handocc_set if method == "handocc" else [], a.tag)
            rows.append({"profile": profile, "seed": a.seed, **r})
            print(json.dumps(rows[-1]), flush=True)
    (a.work / (f"results_adapt_{a.tag}.json" if a.tag else "results_adapt.json")).write_text(json.dumps(rows, indent=2))
    print(f"\nNovel poses (last {a.novel} of {a.frames} frames), {len(HELD_OUT)} held-out cameras, seed {a.seed}")
    print("| profile | method | steps | adapt steps | PSNR full before / after | SSIM before / after | "
          "depth err mm before / after | adapt s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, f = r["before"], r["after"]
        de = (f"{b['depth_error_mm']:.1f} / {f['depth_error_mm']:.1f}" if b.get("depth_error_mm") is not None
              and f.get("depth_error_mm") is not None else "-")
        print(f"| {r['profile']} | {r['method']} | {r['steps']} | {r['adapt_steps']} | {b['psnr_full']:.2f} / "
              f"{f['psnr_full']:.2f} | {b['ssim_gaussian']:.3f} / {f['ssim_gaussian']:.3f} | {de} | {r['adapt_s']:.0f} |")


if __name__ == "__main__":
    main()
