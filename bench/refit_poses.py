"""Refit a trained HandOcc run's training skeletons: what a better per-frame pose is worth after (or before) training.

    python bench/refit_poses.py polish RUN CACHE -o OUT [--steps 800] [--lr 3e-5] [--cameras A,B,...]
    python bench/refit_poses.py reanchor RUN CACHE -o OUT.h5

``polish``: the run's training frames adapted once more against their training views with every network frozen (the
method of ``handcli adapt``, handcli.methods.handocc.adapt), the joint offsets starting from the run's own learned
offsets (``handcli adapt`` starts a novel frame from the training hands' common offset). OUT is a run folder that
``handcli render`` / ``eval`` read like the trained run: render the held-out cameras and compare. Cameras default to
the run's training cameras (never adapt on a camera you evaluate on).

``reanchor``: a copy of CACHE whose training hands' joints are the run's refined joints minus the training hands'
common offset (``SkeletonRefinement.transfer``: the part of the offsets shared by all frames, which the networks
absorb): a second training on OUT.h5 starts from the first one's per-frame corrections instead of the annotation.

docs/benchmarks.md ("Twelfth round") quotes numbers made with both. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from handcli.methods.handocc.refine import SIDES  # noqa: E402


def polish(run: Path, cache: Path, out: Path, steps: int, lr: float, cameras: list[str] | None) -> dict:
    """Adapt the training frames of ``run`` from its learned offsets, networks frozen; writes the run ``out``.
    Returns the last logged training record."""
    from handcli.methods.base import read_run_config, write_run_config
    from handcli.methods.handocc.adapt import prepare_adaptation
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.trainer import seed_everything, train

    doc = read_run_config(run)
    cameras = cameras or doc["data"].get("cameras")
    frames = doc["data"].get("train_frames_used")
    seed_everything(0)
    trained = HandOccMethod.from_run(run, device="cpu")
    m, _ = prepare_adaptation(trained, cache, frames=frames, steps=steps, lr=lr, device="cpu", cameras=cameras)
    own, new = trained.model.refine, m.model.refine
    with torch.no_grad():
        for i, (f, s) in enumerate(new.keys.tolist()):
            j = own.index(int(f), SIDES[int(s)], new.anchor[i])
            if j is None:
                raise SystemExit(f"{cache}: frame {f} {SIDES[int(s)]} is not a training hand of {run}")
            new.offsets[i] = own.offset_m()[j] / new.scale
    out.mkdir(parents=True)
    data = {"cache": str(cache.resolve()), "depth": None, "features": None, "cameras": cameras, "eval_cameras": None,
            "frames": frames, **m.run_data(), "adapted_from": str(run.resolve())}
    write_run_config(out, doc["method"], doc["preset"], m.cfg, data, 0, " ".join(sys.argv),
                     train={"log_every": 50, "ckpt_every": steps, "snapshot_every": 0})
    last = train(m, out, steps=steps, lr=lr, lr_final=lr, seed=0, resume=False, log_every=50, ckpt_every=steps)
    (out / "complete.json").write_text(json.dumps(last, indent=2))
    return last


def reanchor(run: Path, cache: Path, out: Path) -> dict[tuple[int, str], float]:
    """Copy ``cache`` to ``out`` with the run's training hands' joints replaced by their refined joints minus the
    common offset. Returns {(frame, side): mean joint move in mm}."""
    import h5py

    from handcli.methods.handocc.method import HandOccMethod

    ref = HandOccMethod.from_run(run, device="cpu").model.refine
    shutil.copyfile(cache, out)
    moved = {}
    with torch.no_grad(), h5py.File(out, "r+") as h5:
        for i, (f, s) in enumerate(ref.keys.tolist()):
            side = SIDES[int(s)]
            col = h5[f"frames/{side}/joints"]
            a = ref.anchor[i]
            if not np.allclose(col[f], a.numpy(), atol=1e-5):
                raise SystemExit(f"{cache}: frames/{side}/joints[{f}] is not the annotation {run} was trained on")
            common = ref.transfer(side, a[None])[0] - a  # (21, 3) the common offset in this hand's frame
            new = a + ref.offset_m()[i] - common
            col[f] = new.numpy().astype(col.dtype)
            moved[(int(f), side)] = float((new - a).norm(dim=-1).mean()) * 1000.0
    return moved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("polish", "reanchor"))
    ap.add_argument("run", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=3e-5, help="an Adam step moves a joint by about lr x refine_scale")
    ap.add_argument("--cameras", default=None, help="comma-separated camera ids (default: the run's training cameras)")
    a = ap.parse_args(argv)
    if a.out.exists():
        raise SystemExit(f"{a.out} exists: choose a new output")
    if a.mode == "polish":
        last = polish(a.run, a.cache, a.out, a.steps, a.lr, a.cameras.split(",") if a.cameras else None)
        print(f"polished {a.out}: " + ", ".join(f"{k} {last[k]:.5f}" for k in ("rgb", "mask", "refine") if k in last))
    else:
        moved = reanchor(a.run, a.cache, a.out)
        print(f"{a.out}: {len(moved)} hands re-anchored, mean move {np.mean(list(moved.values())):.2f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
