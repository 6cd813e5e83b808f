"""Render and training-step speed of HandNeRF and HandOcc: this tree's code against another checkout's, side by
side in one run, on one thread.

    python bench/bench_render_speed.py --base /tmp/speed_base [--repeats 5] [--work bench_out/render_speed]
    python bench/bench_render_speed.py --chunks 1024,2048,4096,8192,16384,65536 [--repeats 3]

``--base`` is a checkout of the code to compare with (e.g. ``git worktree add --detach /tmp/speed_base
4af27a9``). Each measurement runs in a fresh subprocess whose PYTHONPATH is either that checkout or this
tree, alternating old/new ``--repeats`` times so that load from other processes on a shared machine hits both
alike. Every subprocess builds the same seeded (untrained) models, renders one 256x167 view of a right-hand
frame and of a two-hand frame (HandNeRF ``fast`` preset with its 32-d and with the paper's 256-d distillation
feature, HandOcc ``fast`` as each tree's default and with the max over the parts that the old code rendered; the ``paper`` sizes take minutes per view on one thread) with the method's own
image render path (``render_image`` where the checkout has one, else the shared render driver
``handcli.render.driver`` around the method's ``render_rays``; torch.set_num_threads(1)), and writes the images; the report gives the median CPU time (process_time: on a shared machine wall time measures the other processes) of each,
the median old/new ratio and the largest absolute difference between the old and the new images (rgb, depth,
opacity).

The training-step part (new code only) times forward + backward + Adam step per sample (query point; HandOcc
evaluates ``top_k`` part MLPs at each) of HandOcc's occupancy network and its ray rendering (``render_rays(train=True)``, the ``fast`` preset) against a 4x128
MLP (LiveHand's size: 4 hidden layers of 128, ReLU) on the same number of samples with an input of the same
width as HandOcc's per-bone encoding plus its conditioning. Nothing is asserted; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIEW = dict(frames=2, camera_ids=("400002", "400004"), mono_cameras=0, seqs=("right", "interacting"),
            black_frame=False, null_mano=False, seed=0)


def prepare(work: Path) -> Path:
    """A synthetic InterHand2.6M cache at 256x167 (scale 0.5) with a right-hand and a two-hand frame."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    cache = work / "cache.h5"
    if not cache.exists():
        write_interhand(work / "ih", InterHandSynthConfig(**VIEW))
        preprocess_interhand(work / "ih", cache, scale=0.5, workers=1)
    return cache


def _view(module, name: str, model, state, args, old, chunk: int | None = None) -> dict:
    """One image through this checkout's render path: ``old(module.render_image)`` (code before the render
    driver) or the driver around the method class ``name``'s ``render_rays(state, ...)`` on ``model``."""
    from types import SimpleNamespace

    if hasattr(module, "render_image"):
        return old(module.render_image)
    from handcli.render.driver import render_image

    cls = getattr(module, name)
    fake = SimpleNamespace(model=model, render_counts=cls.render_counts)  # render_rays reads only these
    boxes = [(h.box_min, h.box_max) for h in state[0]]
    return render_image(lambda o, d, want, **x: cls.render_rays(fake, state, o, d, want, **x), boxes, *args,
                        frozenset({"rgb", "depth", "opacity"}), device="cpu", chunk=chunk or cls.render_chunk,
                        radii=cls.uses_radii, counts=cls.render_counts)


# ---------------------------------------------------------------------------------------------------------
# Child: runs with either checkout on PYTHONPATH


def child(cache_path: Path, out: Path, what: str) -> None:
    import torch

    from handcli.data.cache import Cache

    torch.set_num_threads(1)
    cache = Cache(cache_path)
    vt = cache.view_table()
    cams = cache.cameras()
    frames = {}
    for j in range(len(vt["frame"])):
        f = int(vt["frame"][j])
        n = sum(bool(cache.frame_value(f"{s}/present", f)) for s in ("right", "left"))
        frames.setdefault(n, j)  # the first view of a one-hand and of a two-hand frame
    times, images = {}, {}

    def timed(name, fn):
        t0 = time.process_time()
        r = fn()
        times[name] = time.process_time() - t0
        for k in ("rgb", "depth", "opacity"):
            images[f"{name}/{k}"] = r[k]

    for hands, j in sorted(frames.items()):
        cam = cams[int(vt["camera"][j])]
        f = int(vt["frame"][j])
        args = (cam["K"], cam["world_to_cam"], cam["height"], cam["width"])
        if what in ("all", "handnerf"):
            from handcli.methods.handnerf import method as hm
            from handcli.methods.handnerf.model import HandNeRF, preset

            for name, cfg in (("fast", preset("fast")), ("fast, 256-d feature", replace(preset("fast"), feat_dim=256))):
                torch.manual_seed(0)
                model = HandNeRF(cfg, 4).eval()
                with torch.no_grad():  # untrained densities are tiny: make the hands opaque (same in both trees)
                    model.field.density.bias.fill_(200.0)
                geoms = hm.frame_geometry(cache, f, cfg)
                with torch.no_grad():
                    timed(f"handnerf-{name} {hands} hand(s)",
                          lambda: _view(hm, "HandNeRFMethod", model, (geoms, 0), args,
                                        lambda ri: ri(model, geoms, *args, 0, "cpu")))
        if what in ("all", "handocc"):
            from handcli.methods.handocc import method as om
            from handcli.methods.handocc.model import PRESETS, HandOcc

            fast = PRESETS["fast"]
            # the old code always rendered the max over the parts: "max rule" times the same computation in both
            # trees; "fast" is each tree's default (this tree's renders the training blend, another image)
            max_rule = replace(fast, blend_inference=False) if hasattr(fast, "blend_inference") else fast
            for name, cfg in (("fast", fast), ("fast, max rule", max_rule)):
                torch.manual_seed(0)
                model = HandOcc(cfg).eval()
                torch.manual_seed(1)  # a non-trivial appearance: random reference crops
                model.ref_crops.uniform_(0.2, 0.9)
                hs = [model.hand(torch.as_tensor(jn), s) for s, jn in om.frame_joints(cache, f)]
                labels = torch.tensor([1 if h.side == "right" else 2 for h in hs], dtype=torch.uint8)
                with torch.no_grad():
                    codes = model.default_codes(hs)
                    timed(f"handocc-{name} {hands} hand(s)",
                          lambda: _view(om, "HandOccMethod", model, (hs, codes, labels), args,
                                        lambda ri: ri(model, hs, codes, *args, "cpu", cfg.chunk), chunk=cfg.chunk))
    train = train_step_bench(cache_path, 7) if what in ("all", "handocc") else []
    np.savez(out.with_suffix(".npz"), **images)
    out.with_suffix(".json").write_text(json.dumps({"render": times, "train": train}))


# ---------------------------------------------------------------------------------------------------------
# Training step per sample: HandOcc against a 4x128 MLP (new code only)


def chunk_bench(cache_path: Path, sizes: list[int], repeats: int) -> None:
    """This tree's HandNeRF render of the two-hand view (fast preset, 256-d feature) for several field chunk
    sizes (``FIELD_CHUNK``), interleaved; prints the median CPU seconds of each."""
    import torch

    from handcli.data.cache import Cache
    from handcli.methods.handnerf import method as hm
    from handcli.methods.handnerf import model as mm

    torch.set_num_threads(1)
    cache = Cache(cache_path)
    vt, cams = cache.view_table(), cache.cameras()
    j = next(j for j in range(len(vt["frame"])) if bool(cache.frame_value("left/present", int(vt["frame"][j]))))
    cam, f = cams[int(vt["camera"][j])], int(vt["frame"][j])
    cfg = replace(mm.preset("fast"), feat_dim=256)
    torch.manual_seed(0)
    model = mm.HandNeRF(cfg, 4).eval()
    geoms = hm.frame_geometry(cache, f, cfg)
    ts: dict[int, list[float]] = {n: [] for n in sizes}
    with torch.no_grad():
        for _ in range(repeats):
            for n in sizes:
                mm.FIELD_CHUNK["cpu"] = n
                t0 = time.process_time()
                args = (cam["K"], cam["world_to_cam"], cam["height"], cam["width"])
                _view(hm, "HandNeRFMethod", model, (geoms, 0), args, lambda ri: ri(model, geoms, *args, 0, "cpu"))
                ts[n].append(time.process_time() - t0)
    print("| field chunk (points) | " + " | ".join(str(n) for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    print("| render CPU s, median | " + " | ".join(f"{statistics.median(ts[n]):.3f}" for n in sizes) + " |")


def train_step_bench(cache_path: Path, repeats: int) -> list[tuple[str, float, float]]:
    """[(name, HandOcc us per sample, 4x128 MLP us per sample)] of training steps, timed alternately."""
    import torch

    from handcli.data.cache import Cache
    from handcli.methods.handocc.model import PRESETS

    torch.set_num_threads(1)
    cache = Cache(cache_path)
    rows = []
    for name in ("fast", "paper"):
        rows += _train_rows(cache, PRESETS[name], name, repeats)
    return rows


def _train_rows(cache, cfg, preset: str, repeats: int) -> list[tuple[str, float, float]]:
    import torch

    from handcli.methods.handocc import method as om
    from handcli.methods.handocc.model import HandOcc, render_rays
    from handcli.nn.mlp import MLP
    from handcli.render.bounds import ray_aabb
    from handcli.render.rays import camera_rays, pixel_grid

    torch.manual_seed(0)
    model = HandOcc(cfg).train()
    hands = [model.hand(torch.as_tensor(j), s) for s, j in om.frame_joints(cache, 0)]
    x_box = hands[0].box_min + (hands[0].box_max - hands[0].box_min) * torch.rand(cfg.occ_points, 3)
    # rays through the hand's box centre from a camera of the cache (the foreground half of a batch)
    cam = cache.cameras()[0]
    pix = pixel_grid(cam["height"], cam["width"])
    o, d = camera_rays(torch.as_tensor(cam["K"]).float(), torch.as_tensor(cam["world_to_cam"]).float(), pix)
    hit = torch.nonzero(ray_aabb(o, d, hands[0].box_min, hands[0].box_max)[2])[:, 0]
    sel = hit[torch.randperm(len(hit), generator=torch.Generator().manual_seed(0))[:cfg.rays_per_step]]
    o, d = o[sel], d[sel]
    opt_h = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def occ_step():
        q = model.occ(hands[0], x_box, soft=True)
        loss = q["occ"].square().mean()
        opt_h.zero_grad(set_to_none=True)
        loss.backward()
        opt_h.step()
        return len(x_box)

    def ray_step():
        gen.manual_seed(0)
        out = render_rays(model, hands, None, o, d, perturb=True, gen=gen, train=True)
        loss = out["opacity"].square().mean()
        opt_h.zero_grad(set_to_none=True)
        loss.backward()
        opt_h.step()
        return out["occ_evals"]

    enc_dim = model.occ.enc_dim + cfg.pose_proj
    mlp = MLP(enc_dim, 128, 4, 1)
    opt_m = torch.optim.Adam(mlp.parameters(), lr=1e-4)

    inputs = {}

    def mlp_step(n):
        x = inputs.setdefault(n, torch.randn(n, enc_dim))
        loss = mlp(x).square().mean()
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_m.step()
        return n

    rows = []
    steps = [("occupancy (labelled points)", occ_step)]
    if preset == "fast":
        steps.append(("rays (render_rays train=True, no colour)", ray_step))
    for name, fn in steps:
        n = fn()
        mlp_step(n)
        t_h, t_m = [], []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            t_h.append(time.process_time() - t0)
            t0 = time.process_time()
            mlp_step(n)
            t_m.append(time.process_time() - t0)
        rows.append((f"{preset}: {name}, {n} samples", statistics.median(t_h) / n * 1e6,
                     statistics.median(t_m) / n * 1e6))
    return rows


# ---------------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, help="checkout of the code to compare with (today's main)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--work", type=Path, default=ROOT / "bench_out" / "render_speed")
    p.add_argument("--only", choices=("all", "handnerf", "handocc"), default="all")
    p.add_argument("--chunks", type=str, help="only time this tree's HandNeRF render for these field chunk sizes, "
                   "e.g. 1024,4096,65536")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        return child(a.cache, a.child, a.only)
    sys.path.insert(0, str(ROOT))
    a.work.mkdir(parents=True, exist_ok=True)
    cache = prepare(a.work)
    if a.chunks:
        return chunk_bench(cache, [int(n) for n in a.chunks.split(",")], a.repeats)
    trees = {"new": ROOT} if a.base is None else {"old": a.base.resolve(), "new": ROOT}
    times: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    images: dict[str, dict] = {}
    train: dict[str, dict[str, list]] = {}
    for rep in range(a.repeats):
        for tree, path in trees.items():
            out = a.work / f"{tree}_{rep}"
            env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--cache", str(cache),
                            "--only", a.only], env=env, check=True, cwd=path)
            res = json.loads(out.with_suffix(".json").read_text())
            for k, v in res["render"].items():
                times[tree].setdefault(k, []).append(v)
            for name, th, tm in res["train"]:
                train.setdefault(tree, {}).setdefault(name, []).append((th, tm))
            if rep == 0:
                images[tree] = dict(np.load(out.with_suffix(".npz")))
    print("| render of a 256x167 view (1 thread) | " + " | ".join(f"{t} median s" for t in trees)
          + (" | old/new median ratio | max abs diff (rgb, depth, opacity) |" if "old" in trees else " |"))
    print("|---" * (len(trees) + 1 + 2 * ("old" in trees)) + "|")
    for k in times["new"]:
        row = f"| {k} | " + " | ".join(f"{statistics.median(times[t][k]):.3f}" for t in trees)
        if "old" in trees:
            ratios = [o / n for o, n in zip(times["old"][k], times["new"][k])]
            diffs = [float(np.abs(images["old"][f"{k}/{c}"] - images["new"][f"{k}/{c}"]).max())
                     for c in ("rgb", "depth", "opacity")]
            row += f" | {statistics.median(ratios):.2f}x | " + ", ".join(f"{x:.1e}" for x in diffs)
        print(row + " |")
    if train:
        print("\n| training step per sample (fwd + bwd + Adam, 1 thread), CPU us | "
              + " | ".join(f"{t}: HandOcc / 4x128 MLP / ratio" for t in trees) + " |")
        print("|---" * (len(trees) + 1) + "|")
        for name in train["new"]:
            cells = []
            for t in trees:
                th = statistics.median(x[0] for x in train[t][name])
                tm = statistics.median(x[1] for x in train[t][name])
                cells.append(f"{th:.2f} / {tm:.2f} / {th / tm:.2f}x")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
