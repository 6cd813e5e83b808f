"""How far a HandOcc run's refined skeletons are from the exact joints of a synthetic InterHand set.

    python bench/joint_error.py DATASET RUN [RUN ...] [--exact-cache PATH]

DATASET is a `handcli synth interhand` folder; its ground-truth sidecar (`handcli_gt/`) holds the exact MANO and joint
annotations the images were rendered from. The exact joints go through the same reader and preprocess as the
annotated ones: a copy of the dataset with the sidecar's annotation files (`exact_annotation_copy`) is preprocessed
once (kept at ``--exact-cache``, default ``DATASET/../exact_<name>.h5``; the images at a quarter scale: world joints
do not depend on it). Each RUN is a HandOcc run trained on a cache of DATASET.

Prints, per run, the mean distance (mm) of the training hands' 21 joints to the exact ones: as annotated, as refined
by the run, and both again after removing each joint's mean error over the frames (a common offset, which the
networks can absorb). The sixth round of docs/benchmarks.md (HandOcc on realistic data) quotes numbers made this way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mean_error_mm(err: np.ndarray, remove_common: bool = False) -> float:
    """err (N, F, 21, 3) metres: per-hand-frame joint errors of N hands over F frames -> mean joint distance (mm);
    ``remove_common`` first subtracts each hand's per-joint mean error over its frames."""
    if remove_common:
        err = err - err.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(err, axis=-1).mean() * 1000.0)


def exact_cache(dataset: Path, out: Path) -> Path:
    """Preprocess a copy of ``dataset`` whose annotations are the sidecar's exact ones (cached at ``out``)."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import exact_annotation_copy

    if not out.exists():
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            preprocess_interhand(exact_annotation_copy(dataset, Path(tmp) / dataset.name), out, scale=0.25)
    return out


def run_errors(run: Path, exact: Path) -> tuple[np.ndarray, np.ndarray]:
    """(annotated, refined) joint errors (N, F, 21, 3) metres of a run's training hands against ``exact``."""
    from handcli.data.shards import open_cache
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.skeletons import frame_joints

    m = HandOccMethod.from_run(run)
    frames = json.loads((run / "config.json").read_text())["data"]["train_frames_used"]
    ann: dict[str, list] = {}
    ref: dict[str, list] = {}
    with open_cache(exact) as ex:
        for f in frames:
            truth = dict(frame_joints(ex, f, "joints"))
            refined = dict(m.skeletons(f))  # the run's refined joints (the annotated ones without refinement)
            for side, j in frame_joints(m.cache, f, "joints"):
                ann.setdefault(side, []).append(j - truth[side])
                ref.setdefault(side, []).append(refined[side] - truth[side])
    return np.stack([np.stack(v) for v in ann.values()]), np.stack([np.stack(v) for v in ref.values()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--exact-cache", type=Path, default=None)
    a = ap.parse_args(argv)
    exact = exact_cache(a.dataset, a.exact_cache or a.dataset.parent / f"exact_{a.dataset.name}.h5")
    print("| run | annotated mm | refined mm | annotated, common offset removed | refined, common offset removed |")
    print("|---|---|---|---|---|")
    for run in a.runs:
        ann, ref = run_errors(run, exact)
        print(f"| {run.name} | {mean_error_mm(ann):.2f} | {mean_error_mm(ref):.2f} | "
              f"{mean_error_mm(ann, True):.2f} | {mean_error_mm(ref, True):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
