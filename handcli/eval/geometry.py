"""Geometry metrics of reconstructed meshes: Chamfer distance and F-score (Choi et al. ICRA'24 protocol).

The protocol follows HandNeRF_RELEASE ``main/recon.py`` + ``common/loss.calc_3d_metrics`` (from IHOI):

- GT is a point set (object model vertices, the 778 MANO vertices, or their concatenation for the scene);
- the predicted mesh is sampled uniformly on its surface with **as many points as GT**;
- nearest-neighbour distances both ways; precision = fraction of predicted points with a GT point closer
  than th (strict ``<``), recall = the same from GT to prediction, F = 2PR/(P+R), th = 5 mm and 10 mm;
- the paper's "CD (mm)" is mean(d²_pred→gt) + mean(d²_gt→pred) in m², printed ×1000. It is a sum of
  squared distances, not millimetres; we report it as ``cd_paper_x1000`` and add ``cd_mean_mm``, a plain
  mean nearest-neighbour distance in millimetres;
- an empty or missing mesh scores CD = 10 (raw m², so 10000 after ×1000) and F = 0, flagged ``failed``.

All coordinates are metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from handcli.checks import MAX_ABS_COORD, check_mesh_arrays
from handcli.errors import InputError

DEFAULT_THRESHOLDS = (0.005, 0.010)
FAILED_CD_M2 = 10.0  # the dummy CD of HandNeRF_RELEASE recon.py for an empty mesh (raw, before ×1000)
PARTS = ("hand", "object", "scene")


def _th_key(th: float) -> str:
    return f"{th * 1000:g}mm"


def is_empty_mesh(mesh: trimesh.Trimesh | None) -> bool:
    """True for a missing mesh or one without faces or with zero surface area."""
    return mesh is None or len(mesh.faces) == 0 or not np.isfinite(mesh.area) or mesh.area <= 0


def sample_points(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    """Area-uniform surface samples of ``mesh``: (n, 3) float64, reproducible for a given seed."""
    if is_empty_mesh(mesh):
        raise ValueError("cannot sample points on an empty mesh")
    points, _ = trimesh.sample.sample_surface(mesh, int(n), seed=seed)
    return np.asarray(points, dtype=np.float64)


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {points.shape}")
    if len(points) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(points).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return points


def chamfer_and_fscore(
    pred_points: np.ndarray, gt_points: np.ndarray, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
) -> dict:
    """Chamfer distances, precision, recall and F-score between two point sets.

    Args:
        pred_points: (N, 3) points sampled on the prediction, metres.
        gt_points: (M, 3) ground-truth points, metres.
        thresholds: distance thresholds in metres (F-score keys are named in mm, e.g. ``fscore@5mm``).

    Returns a dict of floats:
        ``cd_paper_x1000``: (mean d²(pred→gt) + mean d²(gt→pred)) × 1000, the paper's "CD (mm)" (m² × 1000);
        ``cd_m2``: the same without the ×1000;
        ``cd_mean_mm``: ½ (mean d(pred→gt) + mean d(gt→pred)) in mm;
        ``fscore@Xmm``, ``precision@Xmm``, ``recall@Xmm`` per threshold (fractions in [0, 1]);
        ``num_pred``, ``num_gt``, ``failed`` (False).
    """
    pred = _as_points(pred_points, "pred_points")
    gt = _as_points(gt_points, "gt_points")
    d_pred, _ = cKDTree(gt).query(pred, k=1)  # (N,) pred -> gt
    d_gt, _ = cKDTree(pred).query(gt, k=1)  # (M,) gt -> pred
    cd_m2 = float(np.mean(d_pred**2) + np.mean(d_gt**2))
    out = {
        "cd_paper_x1000": cd_m2 * 1000.0,
        "cd_m2": cd_m2,
        "cd_mean_mm": float(0.5 * (d_pred.mean() + d_gt.mean()) * 1000.0),
        "num_pred": int(len(pred)),
        "num_gt": int(len(gt)),
        "failed": False,
    }
    for th in thresholds:
        precision = float(np.mean(d_pred < th))
        recall = float(np.mean(d_gt < th))
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        key = _th_key(th)
        out[f"fscore@{key}"] = float(f)
        out[f"precision@{key}"] = precision
        out[f"recall@{key}"] = recall
    return out


def failed_metrics(num_gt: int = 0, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS) -> dict:
    """The score of an empty or missing prediction: CD = 10 m² (10000 after ×1000), F = P = R = 0.

    ``cd_mean_mm`` has no meaningful penalty value and is None; aggregate it over non-failed cases only.
    """
    out = {
        "cd_paper_x1000": FAILED_CD_M2 * 1000.0,
        "cd_m2": FAILED_CD_M2,
        "cd_mean_mm": None,
        "num_pred": 0,
        "num_gt": int(num_gt),
        "failed": True,
    }
    for th in thresholds:
        key = _th_key(th)
        out[f"fscore@{key}"] = 0.0
        out[f"precision@{key}"] = 0.0
        out[f"recall@{key}"] = 0.0
    return out


def mesh_metrics(
    pred_mesh: trimesh.Trimesh | None,
    gt_points: np.ndarray,
    seed: int = 0,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> dict:
    """Choi's protocol for one part: sample ``pred_mesh`` with len(gt_points) points and compare.

    Args:
        pred_mesh: the reconstructed mesh, or None when the method produced none.
        gt_points: (M, 3) ground-truth points in the same frame, metres.
    Returns the dict of :func:`chamfer_and_fscore`, or :func:`failed_metrics` for an empty mesh.
    """
    gt = _as_points(gt_points, "gt_points")
    if is_empty_mesh(pred_mesh):
        return failed_metrics(len(gt), thresholds)
    pred = sample_points(pred_mesh, len(gt), seed=seed)
    return chamfer_and_fscore(pred, gt, thresholds)


def _concat(meshes: list[trimesh.Trimesh | None]) -> trimesh.Trimesh | None:
    meshes = [m for m in meshes if not is_empty_mesh(m)]
    if not meshes:
        return None
    return meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)


def scene_metrics(
    pred: dict[str, trimesh.Trimesh | None],
    gt: dict[str, np.ndarray],
    seed: int = 0,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> dict[str, dict]:
    """Metrics for the parts ``hand``, ``object`` and ``scene`` (whole) of a hand-object reconstruction.

    Args:
        pred: part name -> predicted mesh or None. A ``scene`` entry is used as given (Choi meshes the whole
            density field for it); without one, the scene is the concatenation of the predicted hand and
            object meshes.
        gt: part name -> (M, 3) points for ``hand`` and/or ``object``; the GT scene is their concatenation
            (object first, as in HandNeRF_RELEASE) unless ``scene`` is given.
    Returns part -> metrics dict, for each part that has GT. A part missing from ``pred`` counts as failed.
    """
    gt = {k: _as_points(v, f"gt[{k!r}]") for k, v in gt.items() if v is not None}
    if "scene" not in gt and ("hand" in gt or "object" in gt):
        gt["scene"] = np.concatenate([gt[k] for k in ("object", "hand") if k in gt], axis=0)
    pred = dict(pred)
    if "scene" not in pred:
        pred["scene"] = _concat([pred.get("object"), pred.get("hand")])
    return {
        part: mesh_metrics(pred.get(part), gt[part], seed=seed, thresholds=thresholds)
        for part in PARTS
        if part in gt
    }


def load_mesh(path: str | Path) -> trimesh.Trimesh | None:
    """Read a mesh file (PLY, OBJ, ...) as one Trimesh; None when it has no faces (a failed reconstruction).

    Raises InputError when the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("mesh file not found", path=path)
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        raise InputError(f"cannot read mesh: {exc}", path=path) from exc
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError("file holds no triangle mesh", path=path)
    if len(mesh.vertices) and not np.isfinite(mesh.vertices).all():
        raise InputError("mesh vertices contain NaN or Inf", path=path, field="vertices")
    check_mesh_arrays(mesh.vertices, mesh.faces, path)
    return None if is_empty_mesh(mesh) else mesh


def load_points(path: str | Path) -> np.ndarray:
    """Read GT points: an .npy/.xyz/.txt array (N, 3), or the vertices of a PLY/OBJ mesh or point cloud."""
    path = Path(path)
    if not path.is_file():
        raise InputError("point file not found", path=path)
    try:
        if path.suffix == ".npy":
            points = np.load(path)
        elif path.suffix in (".xyz", ".txt"):
            points = np.loadtxt(path, ndmin=2)[:, :3]
        else:
            geom = trimesh.load(path, process=False)
            if isinstance(geom, trimesh.Scene):
                geom = geom.to_geometry() if hasattr(geom, "to_geometry") else geom.dump(concatenate=True)
            points = np.asarray(geom.vertices)
    except Exception as exc:
        raise InputError(f"cannot read points: {exc}", path=path) from exc
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"expected a non-empty (N, 3) point array, got shape {points.shape}", path=path)
    if not np.isfinite(points).all():
        raise InputError("points contain NaN or Inf", path=path)
    if np.abs(points).max() > MAX_ABS_COORD:
        raise InputError(f"coordinates up to {np.abs(points).max():.3g}; expected metres within {MAX_ABS_COORD:g}",
                         path=path, field="points")
    return points
