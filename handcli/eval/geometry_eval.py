"""Geometry evaluation of reconstructed hand-object meshes (``handcli eval MESHES... [CACHE] --frame F``).

Predictions are PLY/OBJ files named by part (``hand``, ``object``, ``scene``; ``right``/``left`` are hand
pieces and are merged), given as files or as folders written by ``handcli mesh``. Ground truth comes from
the cache frame (hand = the posed hand mesh vertices, object = the object model's ``points`` posed by the
frame's object pose, scene = object then hand, as HandNeRF_RELEASE) or from ``--gt-hand``/``--gt-object``
files, and the metrics are those of ``handcli.eval.geometry`` (Choi's protocol): F-score at 5 and 10 mm and
the Chamfer distance, both as the paper prints it and as a plain mean distance in millimetres.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import trimesh

from handcli.errors import InputError
from handcli.eval.geometry import DEFAULT_THRESHOLDS, PARTS, load_mesh, load_points, scene_metrics

SCHEMA = "handcli.metrics.geometry/1"
MESH_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb")
PART_OF_STEM = {"hand": "hand", "right": "hand", "left": "hand", "object": "object", "scene": "scene",
                "total": "scene"}
CONVENTIONS = {
    "cd_paper_x1000": "mean d²(pred→gt) + mean d²(gt→pred), squared metres ×1000 (what Choi et al. print as "
                      "'CD (mm)'; a sum of mean squared nearest-neighbour distances, not millimetres)",
    "cd_mean_mm": "½ (mean d(pred→gt) + mean d(gt→pred)) in millimetres (plain mean nearest-neighbour distance)",
    "fscore@5mm": "2PR/(P+R) with P, R = fractions of predicted / GT points within 5 mm of the other set",
    "fscore@10mm": "the same at 10 mm",
    "sampling": "the predicted mesh is sampled uniformly on its surface with as many points as the GT set "
                "(trimesh.sample.sample_surface, seeded); an empty or missing mesh scores CD = 10 m² and F = 0",
}


def is_cache_file(path: Path) -> bool:
    """A handcli cache candidate: an existing HDF5 file (by signature, whatever its suffix), or a directory of
    shard caches (``*.h5`` HDF5 files, handcli.data.shards)."""
    import h5py

    if path.is_dir():
        return any(p.is_file() and h5py.is_hdf5(str(p)) for p in path.glob("*.h5"))
    return path.is_file() and h5py.is_hdf5(str(path))


def collect_mesh_paths(paths: list[Path]) -> dict[str, list[Path]]:
    """part -> mesh files from files and folders (a folder contributes its files named after a part).

    Raises InputError for a missing path, a file whose name is not a part, or nothing found.
    """
    found: dict[str, list[Path]] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in MESH_SUFFIXES and f.stem in PART_OF_STEM)
            if not files:
                raise InputError("folder holds no hand/object/scene mesh (hand.ply, object.ply, scene.ply, "
                                 "right.ply, left.ply)", path=p)
        elif p.is_file():
            if p.stem not in PART_OF_STEM:
                raise InputError(f"cannot tell which part this mesh is: name it one of "
                                 f"{', '.join(sorted(PART_OF_STEM))} (.ply/.obj)", path=p)
            files = [p]
        else:
            raise InputError("file not found", path=p)
        for f in files:
            found.setdefault(PART_OF_STEM[f.stem], []).append(f)
    if not found:
        raise InputError("no mesh given", field="meshes")
    return found


def load_part_meshes(paths: dict[str, list[Path]]) -> dict[str, trimesh.Trimesh | None]:
    """part -> one mesh (pieces concatenated) or None when every file of the part is empty."""
    out = {}
    for part, files in paths.items():
        meshes = [m for m in (load_mesh(f) for f in files) if m is not None]
        out[part] = None if not meshes else meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    return out


def cache_gt_points(cache_path: Path, frame: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """GT point sets of a cache frame: hand (posed mesh vertices of every hand), object (model points posed).

    Returns (part -> (N, 3) metres, part -> description).
    """
    from handcli.data.objects import apply_pose
    from handcli.data.shards import open_cache

    with open_cache(cache_path) as c:
        if not 0 <= frame < c.num_frames:
            raise InputError(f"frame {frame} outside 0..{c.num_frames - 1}", path=cache_path, field="frame")
        rec = c.frame(frame)
        pts, desc = {}, {}
        hands = [(s, h) for s, h in rec.hands.items() if h.vertices is not None]
        if hands:
            pts["hand"] = np.concatenate([h.vertices.astype(np.float64) for _, h in hands])
            desc["hand"] = (f"posed hand mesh vertices of cache frame {frame} "
                            f"({', '.join(f'{s}: {len(h.vertices)}' for s, h in hands)})")
        if rec.object is not None:
            model = c.object_mesh(rec.object.name)
            pts["object"] = apply_pose(np.asarray(rec.object.pose, np.float64), model["points"])
            desc["object"] = f"{len(model['points'])} points of object model {rec.object.name} posed in frame {frame}"
    if not pts:
        raise InputError(f"frame {frame} has neither a hand mesh nor an object", path=cache_path, field="frame")
    return pts, desc


def cache_gt_meshes(cache_path: Path, frame: int) -> dict[str, trimesh.Trimesh]:
    """GT meshes of a cache frame in world coordinates: hand (posed hand model mesh), object (posed model)."""
    from handcli.data.objects import apply_pose
    from handcli.data.shards import open_cache

    with open_cache(cache_path) as c:
        rec = c.frame(frame)
        out = {}
        hands = []
        for side, h in rec.hands.items():
            if h.vertices is not None:
                hands.append(trimesh.Trimesh(h.vertices.astype(np.float64), c.hand_model(side)["faces"],
                                             process=False))
        if hands:
            out["hand"] = hands[0] if len(hands) == 1 else trimesh.util.concatenate(hands)
        if rec.object is not None:
            m = c.object_mesh(rec.object.name)
            out["object"] = trimesh.Trimesh(apply_pose(np.asarray(rec.object.pose, np.float64), m["vertices"]),
                                            m["faces"], process=False)
    return out


def evaluate_geometry(mesh_inputs: list[Path], cache: Path | None = None, frame: int | None = None,
                      gt_hand: Path | None = None, gt_object: Path | None = None, seed: int = 0) -> dict:
    """The metrics.json document of a geometry evaluation (nothing written). See the module docstring."""
    t0 = time.perf_counter()
    paths = collect_mesh_paths(mesh_inputs)
    gt, desc = {}, {}
    if cache is not None:
        if frame is None:
            raise InputError("--frame is needed to take the ground truth from a cache", path=cache, field="frame")
        gt, desc = cache_gt_points(cache, frame)
    for part, f in (("hand", gt_hand), ("object", gt_object)):
        if f is not None:
            gt[part] = load_points(f)
            desc[part] = f"{len(gt[part])} points of {f}"
    if not gt:
        raise InputError("no ground truth: give the cache and --frame, or --gt-hand/--gt-object", field="gt")
    pred = load_part_meshes(paths)
    metrics = scene_metrics(pred, gt, seed=seed)
    if "scene" in metrics:
        desc["scene"] = "object points then hand points (HandNeRF_RELEASE)"
    scene_source = ("the given scene mesh" if "scene" in paths
                    else "the predicted hand and object meshes concatenated")
    return {
        "schema": SCHEMA,
        "handcli_version": _version(),
        "inputs": {"meshes": {k: [str(p) for p in v] for k, v in paths.items()},
                   "cache": None if cache is None else str(cache), "frame": frame,
                   "gt_hand": None if gt_hand is None else str(gt_hand),
                   "gt_object": None if gt_object is None else str(gt_object)},
        "config": {"seed": seed, "thresholds_m": list(DEFAULT_THRESHOLDS)},
        "ground_truth": {**desc, "scene_prediction": scene_source},
        "conventions": CONVENTIONS,
        "parts": {p: metrics[p] for p in PARTS if p in metrics},
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _version() -> str:
    from handcli import __version__

    return __version__


def print_geometry_table(doc: dict, console) -> None:
    """Per-part F-scores and Chamfer distances as a rich table (stderr in the CLI)."""
    from rich import box
    from rich.table import Table

    t = Table(title="geometry (conventions: metrics.json)", box=box.SIMPLE_HEAD)
    for col in ("part", "F@5mm", "F@10mm", "CD paper (m²x1000)", "CD mean (mm)", "GT points"):
        t.add_column(col, justify="right" if col != "part" else "left")
    for part, m in doc["parts"].items():
        mean_mm = "-" if m["cd_mean_mm"] is None else f"{m['cd_mean_mm']:.2f}"
        t.add_row(part + (" (failed)" if m["failed"] else ""), f"{m['fscore@5mm']:.3f}", f"{m['fscore@10mm']:.3f}",
                  f"{m['cd_paper_x1000']:.3f}", mean_mm, str(m["num_gt"]))
    console.print(t)
