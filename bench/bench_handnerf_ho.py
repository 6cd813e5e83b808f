"""HandNeRF (Choi, ``handnerf-ho``) vs PixelNeRF (``pixelnerf``, the paper's M2) on synthetic DexYCB, same
wall-clock training budget, side by side, with the GT-mesh upper bound of the grasp success ratio.

    python bench/bench_handnerf_ho.py [--budget 480 | --steps N] [--work DIR] [--methods handnerf-ho,pixelnerf]
                                      [--eval-frames 2] [--threads 2] [--profile ideal|realistic] [--frames 5]

Data (``handcli.synth.dexycb``, 8 cameras, 640x480 preprocessed at scale 0.5, 5 frames per sequence of which
frame 0 has no hand): 6 subjects (hands alternate right / left) x 2 sequences; the grasped objects by
sequence are box, can, mug (x3: 9 sequences, one grasp each), then the banana (x3). Splits:

- train: the first two grasps of each of box, can and mug (6 sequences);
- unseen grasp: the third grasp of box, can and mug (3 sequences; other subjects, other grasps);
- unseen object: the banana (3 sequences), never seen in training.

Each method trains the ``fast`` preset (frozen ImageNet EfficientNet-Lite0 encoder, 1 cm voxels, 96x96
render crops, 32 samples per ray in the hand-object box) on the train frames for ``--budget`` seconds, from
Choi's input view (serial 836212060125). Evaluation on ``--eval-frames`` frames of each test sequence, from
the same input view:

- novel views (the 7 other cameras, 96x96 crops around the hand-object mask, background black): PSNR over
  the pixels whose rays hit the 3D box (Choi / Neural Body ``mask_at_box``) and semantic IoU (mean over
  background / object / hand, x100);
- meshes (marching cubes at 4 mm, level 10, restricted to all views' masks as Choi): F-score at 5/10 mm and
  Chamfer distance (paper: m² x1000; and mean mm) for object, hand and whole scene;
- grasps: antipodal proposals on the reconstructed object, filtered by the input (GT) hand mesh, top 20
  evaluated against the GT object and hand (docs/grasp-eval.md); the same on the GT object mesh is the
  upper bound.

``--steps N`` trains each method for exactly N steps instead of ``--budget`` seconds (fair on a shared
machine). ``--profile realistic`` generates the data with the realistic profile (docs/datasets.md#realistic-profile:
annotation error, a hand outside the model, capture effects, and a per-view estimated input hand of about
13 mm error) and preprocesses it with ``--hand-estimates``: the methods train with the (annotated) GT hand and
are evaluated with the input view's estimated hand, as Choi et al. test with HandOccNet's. Geometry and grasps
are always scored against the generator's exact meshes (the ground-truth sidecar), and grasps are filtered by
the input hand mesh the method was given (the GT one in the ideal profile). ``--frames`` sets the frames per
sequence (frame 0 has no hand).

Prints markdown tables and writes results.json into the work folder; the predicted meshes and evaluated
grasps of every test frame go to ``meshes_<method>/frame<F>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

# OpenMP threads that spin while waiting make a shared, loaded CPU 5-8x slower (measured: 0.55 s -> 3-4 s per
# step with 2 threads); passive waiting keeps 2 threads as fast as 1 under load. Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BOX, CAN, BANANA, MUG = "003_cracker_box", "005_tomato_soup_can", "011_banana", "025_mug"
SEQ_OBJECTS = (BOX, CAN, MUG, BOX, CAN, MUG, BOX, CAN, MUG, BANANA, BANANA, BANANA)
SPLITS = {"train": range(0, 6), "unseen_grasp": range(6, 9), "unseen_object": range(9, 12)}


def prepare(work: Path, seed: int, profile: str = "ideal", frames: int = 5) -> Path:
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb
    from handcli.synth.realism import realism_config

    root, cache = work / "dexycb", work / "cache.h5"
    if not root.exists():
        write_dexycb(root, DexYCBSynthConfig(subjects=6, seqs=2, frames=frames, cameras=8, objects=SEQ_OBJECTS,
                                             distractors=1, seed=seed, realism=realism_config(profile, "dexycb")))
    if not cache.exists():
        preprocess_dexycb(root, cache, scale=0.5, workers=2,
                          hand_estimates=root / "handcli_est" if profile == "realistic" else None)
    return cache


def exact_gt(root: Path, cache_path: Path, frame: int) -> dict:
    """The generator's exact hand (rendered surface) and object of a cache frame (world): {"hand", "object"}
    trimesh meshes, and the hand's exact points, from ``handcli_gt`` (equal to the cache's in the ideal
    profile up to the rendered surface)."""
    import trimesh

    from handcli.data.cache import Cache
    from handcli.data.objects import apply_pose

    with Cache(cache_path) as c:
        rec = c.frame(frame)
        side = next(iter(rec.hands))
        faces = c.hand_model(side)["faces"]
        om = c.object_mesh(rec.object.name)
    subject, seq, f = rec.key.split("/")
    g = np.load(root / "handcli_gt" / subject / seq / f"{int(f):06d}.npz")
    hand = trimesh.Trimesh(g["hand_vertices"], faces, process=False)
    obj = trimesh.Trimesh(apply_pose(rec.object.pose, om["vertices"]), om["faces"], process=False)
    return {"hand": hand, "object": obj, "object_points": apply_pose(rec.object.pose, om["points"])}


def split_frames(cache_path: Path) -> dict[str, list[list[int]]]:
    """split -> per sequence (generation order = sorted names) the cache frames with a hand and the object."""
    from handcli.data.cache import Cache

    with Cache(cache_path) as c:
        recs = [c.frame(i) for i in range(c.num_frames)]
    seqs = sorted({r.seq for r in recs})
    if len(seqs) != len(SEQ_OBJECTS):
        raise SystemExit(f"expected {len(SEQ_OBJECTS)} sequences in {cache_path}, found {len(seqs)}")
    by_seq = [[i for i, r in enumerate(recs) if r.seq == s and r.hands and r.object is not None] for s in seqs]
    for k, s in enumerate(seqs):
        names = {recs[i].object.name for i in by_seq[k]}
        if names and names != {SEQ_OBJECTS[k]}:
            raise SystemExit(f"sequence {s} holds {names}, expected {SEQ_OBJECTS[k]}")
    return {name: [by_seq[k] for k in ks] for name, ks in SPLITS.items()}


def eval_frame(m, frame: int, gt_grasp_cache: dict, seed: int, keep: Path | None = None,
               root: Path | None = None) -> dict:
    """Novel-view, geometry and grasp metrics of one test frame (seen by its input view).

    ``keep``: a folder that receives the predicted meshes (``hand.ply``, ``object.ply``, ``scene.ply``) and
    the evaluated grasps (``grasps.json``), for looking at them afterwards."""
    from handcli.eval.geometry import scene_metrics
    from handcli.eval.geometry_eval import cache_gt_meshes, cache_gt_points
    from handcli.eval.grasp import grasp_success_ratio
    from handcli.eval.image_metrics import psnr_masked
    from handcli.eval.renders_eval import view_semantic_iou
    from handcli.render.bounds import ray_aabb
    from handcli.render.rays import camera_rays, pixel_grid

    out = {"frame": frame}
    scene = m.scene(frame)
    psnrs, ious = [], []
    for j in m.cache.views_of_frame(frame):
        if j == m.input_views[frame]:
            continue
        r, gt, label = m.render_crop(j)
        S = gt.shape[0]
        cam = m.cache.cameras()[int(m.cache.view_table()["camera"][j])]
        o, d = camera_rays(torch.tensor(r["K"], dtype=torch.float32),
                           torch.tensor(cam["world_to_cam"], dtype=torch.float32), pixel_grid(S, S))
        at_box = ray_aabb(o, d, scene.box_min.cpu(), scene.box_max.cpu())[2].reshape(S, S).numpy()
        p = psnr_masked(r["rgb"], gt, at_box)
        if p is not None:
            psnrs.append(p)
        ious.append(view_semantic_iou(r["semantic"], label)[0])
    out["psnr_box"] = float(np.mean(psnrs))
    out["iou"] = float(np.mean(ious))
    t = time.perf_counter()
    meshes = m.extract_meshes(frame)
    out["mesh_s"] = round(time.perf_counter() - t, 2)
    gt_pts, _ = cache_gt_points(m.cache_path, frame)
    gt = cache_gt_meshes(m.cache_path, frame)
    if root is not None:  # the generator's exact hand surface; the object pose is exact in both profiles
        ex = exact_gt(root, m.cache_path, frame)
        hand_pts = ex["hand"].vertices
        gt_pts = {"hand": hand_pts, "object": gt_pts["object"],
                  "scene": np.concatenate([gt_pts["object"], hand_pts])}
        gt = {"hand": ex["hand"], "object": gt["object"]}
    geo = scene_metrics({k: (v if len(v.faces) else None) for k, v in meshes.items()}, gt_pts, seed=seed)
    for part, g in geo.items():
        for k in ("fscore@5mm", "fscore@10mm", "cd_paper_x1000", "cd_mean_mm", "failed"):
            out[f"{part}_{k}"] = g[k]
    obj = meshes["object"] if len(meshes["object"].faces) else None
    import trimesh

    # proposals are filtered by the input hand mesh the method was given (estimated at test time when the
    # cache holds estimates), and scored against the exact object and hand
    input_hand = trimesh.Trimesh(scene.hand_verts.cpu().numpy(), gt["hand"].faces, process=False)
    out["input_hand_rms_mm"] = float(np.sqrt(np.mean(np.sum(
        (scene.hand_verts.cpu().numpy() - cache_gt_meshes(m.cache_path, frame)["hand"].vertices) ** 2, -1))) * 1000)
    g = grasp_success_ratio(obj, input_hand, gt["object"], gt["hand"], top_k=20, seed=seed, n_samples=500)
    out["grasp_success"] = g["success_ratio"]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for k, v in meshes.items():
            v.export(keep / f"{k}.ply")
        (keep / "grasps.json").write_text(json.dumps(g["grasps"], default=lambda a: np.asarray(a).tolist()))
    out["grasp_proposals"] = g["num_proposals"]
    if frame not in gt_grasp_cache:
        u = grasp_success_ratio(gt["object"], gt["hand"], gt["object"], gt["hand"], top_k=20, seed=seed,
                                n_samples=500)
        gt_grasp_cache[frame] = u["success_ratio"]
    out["grasp_success_gt_mesh"] = gt_grasp_cache[frame]
    return out


def run_method(method: str, cache: Path, splits: dict, budget: float, work: Path, eval_frames: int, seed: int,
               gt_grasp_cache: dict, steps: int | None = None, eval_seqs: int = 3) -> list[dict]:
    from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
    from handcli.methods.handnerf_ho.model import preset
    from handcli.methods.trainer import train

    cfg = replace(preset("fast", method), steps=steps or 1_000_000)
    train_frames = [f for seq in splits["train"] for f in seq]
    torch.manual_seed(seed)
    m = HandNeRFHOMethod(cfg, cache, method=method, train_frames=train_frames)
    run = work / f"run_{method}"
    run.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    last = train(m, run, steps=cfg.steps, lr=cfg.lr, lr_final=cfg.lr_final, seed=seed, resume=False,
                 log_every=100, ckpt_every=10 ** 9, time_budget=None if steps else budget)
    train_s = time.perf_counter() - t0
    m.model.eval()
    rows = []
    for split in ("unseen_grasp", "unseen_object"):
        for seq in splits[split][:eval_seqs]:
            pick = [seq[i] for i in np.unique(np.linspace(0, len(seq) - 1, min(eval_frames, len(seq))).round()
                                              .astype(int))]
            for f in pick:
                keep = work / f"meshes_{method}" / f"frame{f:04d}"
                r = {"method": method, "split": split,
                     **eval_frame(m, f, gt_grasp_cache, seed, keep, root=work / "dexycb")}
                rows.append(r)
                print(json.dumps(r), flush=True)
    for r in rows:
        r.update(steps=last.get("step"), train_s=round(train_s, 1), train_psnr=last.get("psnr"),
                 samples_per_ray=last.get("samples_per_ray"), rays_per_s=last.get("rays_per_s"),
                 encoder_init=m.encoder_init)
    return rows


COLS = [("psnr_box", "PSNR", 2), ("iou", "IoU", 1), ("object_fscore@5mm", "F5 obj", 3),
        ("object_fscore@10mm", "F10 obj", 3), ("hand_fscore@5mm", "F5 hand", 3), ("hand_fscore@10mm", "F10 hand", 3),
        ("scene_fscore@5mm", "F5 whole", 3), ("scene_fscore@10mm", "F10 whole", 3),
        ("object_cd_paper_x1000", "CD obj", 3), ("hand_cd_paper_x1000", "CD hand", 3),
        ("scene_cd_paper_x1000", "CD whole", 3), ("object_cd_mean_mm", "CD obj mm", 1),
        ("grasp_success", "grasp", 3), ("input_hand_rms_mm", "input hand err mm", 1)]


def table(rows: list[dict]) -> str:
    lines = ["| split | method | steps | " + " | ".join(c[1] for c in COLS) + " |",
             "|---|---|---|" + "---|" * len(COLS)]
    for split in ("unseen_grasp", "unseen_object"):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["split"] == split and r["method"] == method]
            if not sel:
                continue
            vals = []
            for key, _, nd in COLS:
                xs = [r[key] for r in sel if r.get(key) is not None]
                vals.append(f"{np.mean(xs):.{nd}f}" if xs else "-")
            lines.append(f"| {split} | {method} | {sel[0]['steps']} | " + " | ".join(vals) + " |")
        gt = [r["grasp_success_gt_mesh"] for r in rows if r["split"] == split]
        if gt:
            lines.append(f"| {split} | GT mesh (upper bound) | - | " + " | ".join(
                f"{np.mean(gt):.3f}" if c[0] == "grasp_success" else "-" for c in COLS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=480.0, help="training seconds per method")
    ap.add_argument("--work", type=Path, default=Path("bench_out/handnerf_ho"))
    ap.add_argument("--methods", default="handnerf-ho,pixelnerf")
    ap.add_argument("--eval-frames", type=int, default=2, help="evaluated frames per test sequence")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps (overrides --budget)")
    ap.add_argument("--profile", choices=("ideal", "realistic"), default="ideal", help="synthetic data profile")
    ap.add_argument("--frames", type=int, default=5, help="frames per sequence (frame 0 has no hand)")
    ap.add_argument("--eval-seqs", type=int, default=3, help="evaluated sequences per test split (of 3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cache = prepare(args.work, args.seed, args.profile, args.frames)
    splits = split_frames(cache)
    print(f"data ready in {time.perf_counter() - t:.0f} s: " +
          ", ".join(f"{k} {sum(len(s) for s in v)} frames" for k, v in splits.items()), flush=True)
    rows: list[dict] = []
    gt_grasp: dict = {}
    for method in args.methods.split(","):
        rows += run_method(method, cache, splits, args.budget, args.work, args.eval_frames, args.seed, gt_grasp,
                           args.steps, args.eval_seqs)
    (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    for method in dict.fromkeys(r["method"] for r in rows):
        r = next(x for x in rows if x["method"] == method)
        print(f"{method}: {r['steps']} steps in {r['train_s']} s, {r['rays_per_s']:.0f} rays/s, "
              f"{r['samples_per_ray']:.1f} samples/ray, train PSNR {r['train_psnr']:.2f}, encoder {r['encoder_init']}")


if __name__ == "__main__":
    main()
