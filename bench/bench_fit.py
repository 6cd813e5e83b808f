"""Fitting the open hand model to 3D joints: per-frame reference vs batched vs batched + warm-started.

    python bench/bench_fit.py [--sequences 8] [--length 64] [--ref-frames 16] [--threads 1] [--noise-mm 0]

Data: synthetic sequences of the open hand model (right, the InterHand flags, as ``preprocess interhand``
without MANO files uses it): per sequence one random shape (betas ~ N(0, 1)), a smooth finger motion
(closure, spread, opposition) with 3 degree per-joint jitter, a global rotation turning ~0.1 rad and a
wrist moving ~1 cm per frame (InterHand's 5 fps train set moves about this much). Targets are the model's
own 21 joints (plus Gaussian noise of ``--noise-mm``), so the fitted mesh can be compared with the
ground-truth mesh.

Rows, all on the same frames in one process:
- ``per-frame``: ``fit_to_joints`` one frame per call (what preprocessing did), on the first
  ``--ref-frames`` frames only (it is slow);
- ``batched``: ``fit_to_joints`` on all frames in one call (same steps, same solution per frame);
- ``sequence``: ``fit_sequence``: batched, runs of 16 frames warm-started from the previous frame.

Prints a markdown table (frames/s, mean joint error mm, mean vertex error mm against the ground truth,
both over all frames of the row and over the reference frames) and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_sequences(model, n_seq: int, length: int, seed: int, noise_mm: float):
    """Synthetic sequences: joints (T, 21, 3), valid (T, 21), starts (T,), ground-truth vertices (T, V, 3)."""
    from scipy.spatial.transform import Rotation

    from handcli.hand.model import plausible_poses

    rng = np.random.default_rng(seed)
    poses, shapes, transl, starts = [], [], [], []
    for _ in range(n_seq):
        t = np.arange(length)
        ph = rng.uniform(0, 2 * np.pi, 3)
        closure = 0.5 + 0.45 * np.sin(0.25 * t + ph[0])
        spread = 0.3 + 0.4 * np.sin(0.2 * t + ph[1])
        oppose = 0.5 + 0.4 * np.sin(0.15 * t + ph[2])
        fingers = plausible_poses(model, closure, spread, oppose, rng=rng, noise_deg=3.0)
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        r0 = Rotation.random(random_state=rng)
        orient = np.stack([(Rotation.from_rotvec(axis * 0.1 * k) * r0).as_rotvec() for k in t])
        vel = rng.normal(0, 0.01, 3)
        tr = np.cumsum(np.tile(vel, (length, 1)) + rng.normal(0, 0.003, (length, 3)), 0)
        poses.append(np.concatenate([orient, fingers], 1))
        shapes.append(np.tile(rng.normal(0, 1, 10), (length, 1)))
        transl.append(tr)
        s = np.zeros(length, bool)
        s[0] = True
        starts.append(s)
    f = lambda x: torch.as_tensor(np.concatenate(x), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = model(f(poses), f(shapes), f(transl))
    joints = out.joints + torch.as_tensor(rng.normal(0, noise_mm / 1000.0, tuple(out.joints.shape)),
                                          dtype=torch.float32)
    return joints, torch.ones(joints.shape[:2], dtype=torch.bool), np.concatenate(starts), out.vertices


def vertex_error_mm(model, pose, shape, trans, gt_verts) -> torch.Tensor:
    """(T,) mean distance between the fitted and the ground-truth mesh vertices, mm."""
    with torch.no_grad():
        v = model(pose, shape, trans).vertices
    return (v - gt_verts).norm(dim=-1).mean(1) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--ref-frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--noise-mm", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segment", type=int, default=16)
    ap.add_argument("--warm-steps", type=int, default=300)
    ap.add_argument("--warm-lr", type=float, default=0.05)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from handcli.hand.fit import fit_sequence, fit_to_joints
    from handcli.hand.model import load_hand_models

    model = load_hand_models("interhand", None)["right"]
    joints, valid, starts, gt = make_sequences(model, args.sequences, args.length, args.seed, args.noise_mm)
    n = len(joints)
    ref = min(args.ref_frames, n)
    rows = []

    def row(name, frames, seconds, pose, shape, trans, err):
        verr = vertex_error_mm(model, pose, shape, trans, gt[:frames])
        r = {"fit": name, "frames": frames, "seconds": round(seconds, 2), "frames_per_s": frames / seconds,
             "joint_err_mm": float(err.mean() * 1000), "joint_err_mm_max": float(err.max() * 1000),
             "vertex_err_mm": float(verr.mean()), "joint_err_mm_ref": float(err[:ref].mean() * 1000),
             "vertex_err_mm_ref": float(verr[:ref].mean())}
        rows.append(r)
        print(json.dumps(r), flush=True)

    if not args.skip_reference:
        t = time.perf_counter()
        outs = [fit_to_joints(model, joints[i:i + 1], valid[i:i + 1]) for i in range(ref)]
        row("per-frame (reference)", ref, time.perf_counter() - t, *(torch.cat(x) for x in zip(*outs)))
        t = time.perf_counter()
        out = fit_to_joints(model, joints, valid)
        row("batched", n, time.perf_counter() - t, *out)
    t = time.perf_counter()
    out = fit_sequence(model, joints, valid, starts, segment=args.segment, warm_steps=args.warm_steps,
                       warm_lr=args.warm_lr)
    row("sequence (batched, warm-started)", n, time.perf_counter() - t, *out)

    print(f"\n{args.sequences} sequences x {args.length} frames, {args.threads} thread(s), joint noise "
          f"{args.noise_mm} mm; reference = the first {ref} frames\n")
    print("| fit | frames | frames/s | joint err mm (all) | vertex err mm (all) | joint err mm (ref) | "
          "vertex err mm (ref) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fit']} | {r['frames']} | {r['frames_per_s']:.2f} | {r['joint_err_mm']:.3f} | "
              f"{r['vertex_err_mm']:.3f} | {r['joint_err_mm_ref']:.3f} | {r['vertex_err_mm_ref']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
