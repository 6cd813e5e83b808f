"""Time the numpy rasterizer on hand-sized meshes at the InterHand cache resolution (512 x 334, portrait).

    python bench/bench_raster.py [--height 512 --width 334 --repeats 50]

Scenes (focal 1265 px, about 1 m away): a hand-like mesh (ellipsoid palm + five capsule fingers, ~4.2k faces,
~0.2 m long), the same with a second hand (two meshes in one z-buffer), a 4096-face capsule, a 5120-face
icosphere of 0.2 m diameter (a worst case: a 250 px disc, far more covered pixels than a hand), and the
project's open hand model at rest (~5.6k faces; one and two hands) when it can be built. Prints the best and
median wall time per frame of `rasterize` / `rasterize_meshes` (single thread), the median thread CPU time
(less sensitive to other processes on a shared machine; includes page faults) and frames/s (from the
median wall time). px: covered pixels.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import trimesh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from handcli.render.raster import rasterize, rasterize_meshes  # noqa: E402


def hand_like(mirror: bool = False) -> trimesh.Trimesh:
    """A closed-parts stand-in for a posed hand: palm ellipsoid plus five capsule fingers (~4.2k faces)."""
    palm = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    palm.apply_scale([0.045, 0.05, 0.016])
    parts = [palm]
    for i, (length, angle) in enumerate([(0.05, -0.9), (0.075, -0.25), (0.085, 0.0), (0.08, 0.22), (0.06, 0.45)]):
        finger = trimesh.creation.capsule(height=length, radius=0.009, count=[24, 16])
        finger.apply_translation([0, 0, length / 2 + 0.009])
        bend = trimesh.transformations.rotation_matrix(np.pi / 2 + 0.3 * (i % 2), [1, 0, 0])  # z -> -y
        spread = trimesh.transformations.rotation_matrix(angle, [0, 0, 1])
        finger.apply_transform(spread @ bend)
        finger.apply_translation(spread[:3, :3] @ [0, -0.045, 0])
        parts.append(finger)
    hand = trimesh.util.concatenate(parts)
    if mirror:
        hand.apply_scale([-1, 1, 1])
    return hand


def open_hand_template() -> trimesh.Trimesh | None:
    """The project's open hand model at rest (flat hand, ~5.6k faces), fingers up, palm to the camera."""
    try:
        from handcli.hand.open_model import build_open_hand
        d = build_open_hand("right")
    except Exception as e:  # the bench still runs without it
        print(f"open hand model unavailable ({type(e).__name__}: {e}); skipping that scene", file=sys.stderr)
        return None
    v = np.asarray(d["v_template"], dtype=np.float64)
    v = (v - v.mean(0)) @ np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]).T
    return trimesh.Trimesh(v, np.asarray(d["f"]), process=False)


def place(mesh: trimesh.Trimesh, rot_seed: int, offset) -> trimesh.Trimesh:
    m = mesh.copy()
    angles = np.random.default_rng(rot_seed).uniform(-0.4, 0.4, 3)
    m.apply_transform(trimesh.transformations.euler_matrix(*angles))
    m.apply_translation(offset)
    return m


def timeit(fn, repeats: int) -> tuple[float, float, float]:
    """Best and median wall time and median thread CPU time of fn(), in ms."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return min(wall) * 1e3, float(np.median(wall)) * 1e3, float(np.median(cpu)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=334)
    ap.add_argument("--focal", type=float, default=1265.0)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    H, W = args.height, args.width
    K = np.array([[args.focal, 0, (W - 1) / 2], [0, args.focal, (H - 1) / 2], [0, 0, 1]])

    right = place(hand_like(), 0, [0.0, 0.0, 1.0])
    left = place(hand_like(mirror=True), 1, [0.05, 0.02, 1.06])
    capsule = place(trimesh.creation.capsule(height=0.12, radius=0.04, count=[64, 32]), 2, [0, 0, 1.0])
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    sphere.apply_translation([0, 0, 1.0])
    scenes = {
        "hand-like, 1 mesh": [right],
        "hand-like, 2 meshes": [right, left],
        "capsule 4096 faces": [capsule],
        "icosphere 5120 faces (0.2 m disc)": [sphere],
    }
    hand = open_hand_template()
    if hand is not None:
        scenes["open hand model, 1 mesh"] = [place(hand, 3, [0.0, 0.0, 1.0])]
        scenes["open hand model, 2 meshes"] = [scenes["open hand model, 1 mesh"][0],
                                                place(hand, 4, [0.04, 0.03, 1.05])]
    print(f"{H}x{W} (HxW), focal {args.focal:g} px, {args.repeats} repeats, numpy {np.__version__}, one thread")
    print(f"{'scene':36s} {'faces':>6s} {'px':>7s} {'best ms':>8s} {'median ms':>10s} {'cpu ms':>7s} "
          f"{'frames/s':>9s}")
    for name, meshes in scenes.items():
        pairs = [(m.vertices, m.faces) for m in meshes]
        if len(pairs) == 1:
            fn = lambda p=pairs[0]: rasterize(p[0], p[1], K, H, W)  # noqa: E731
        else:
            fn = lambda p=pairs: rasterize_meshes(p, K, H, W)  # noqa: E731
        covered = int(fn().mask.sum())
        best, median, cpu = timeit(fn, args.repeats)
        faces = sum(len(m.faces) for m in meshes)
        print(f"{name:36s} {faces:6d} {covered:7d} {best:8.2f} {median:10.2f} {cpu:7.2f} {1e3 / median:9.1f}")


if __name__ == "__main__":
    main()
