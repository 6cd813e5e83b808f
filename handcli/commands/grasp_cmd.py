"""``handcli grasp-eval``: plan parallel-jaw grasps on a reconstructed object and score them against GT.

Meshes of any name come with ``--object PATH [--hand PATH]``; otherwise the mesh paths that ``handcli mesh``
prints are read (arguments, or stdin one per line when none are given): ``object.ply`` is the
reconstruction to plan on, ``hand.ply`` the reconstructed hand, ``scene.ply`` is ignored. Without
``--gt-object`` the reconstruction is scored against itself. Grasps come from the weight-free antipodal sampler for a Franka Panda gripper (8 cm opening),
grasps touching the hand are dropped, and each of the best ``--top-k`` is a success when the opened gripper
envelops part of the GT object without touching it or the GT hand (docs/grasp-eval.md). stdout: the JSON
summary, or with ``-o`` the written paths (grasp.json and the PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from handcli.commands.options import Force

PLAN_NAMES = {"object": "object", "hand": "hand", "right": "hand", "left": "hand", "scene": None, "total": None}


def _read_stdin_paths() -> list[Path]:
    import sys

    if sys.stdin is None or sys.stdin.isatty():
        return []
    return [Path(line.strip()) for line in sys.stdin.read().splitlines() if line.strip()]


def _load_gt_mesh(path: Path, what: str):
    """A GT mesh from PLY/OBJ; a point file (.xyz/.txt/.npy) becomes its convex hull (noted in the output)."""
    import trimesh

    from handcli.errors import InputError
    from handcli.eval.geometry import load_mesh, load_points

    if path.suffix.lower() in (".xyz", ".txt", ".npy"):
        pts = load_points(path)
        if len(pts) < 4:
            raise InputError("need at least 4 points for a convex hull", path=path)
        return trimesh.convex.convex_hull(pts), f"convex hull of {len(pts)} points (no surface in {path.name})"
    mesh = load_mesh(path)
    if mesh is None:
        raise InputError(f"the GT {what} mesh is empty", path=path)
    return mesh, f"mesh with {len(mesh.faces)} faces"


def _named_parts(paths: list[Path]) -> dict[str, Path]:
    """{'object': path, 'hand': path} from mesh paths named as `handcli mesh` names them (or their folders)."""
    from handcli.errors import InputError
    from handcli.eval.geometry_eval import MESH_SUFFIXES

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in MESH_SUFFIXES and f.stem in PLAN_NAMES)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("file not found", path=p)
    parts: dict[str, Path] = {}
    for f in files:
        if f.stem not in PLAN_NAMES:
            raise InputError(f"cannot tell which part this mesh is (expected one of {', '.join(PLAN_NAMES)}; "
                             "name any mesh with --object / --hand)", path=f)
        part = PLAN_NAMES[f.stem]
        if part is None:
            continue
        if part in parts:
            raise InputError(f"two {part} meshes given ({parts[part]} and {f})", path=f)
        parts[part] = f
    return parts


def grasp_eval_command(
    meshes: Optional[List[Path]] = typer.Argument(None, help="Reconstructed meshes named as `handcli mesh` "
                                                  "names them (object.ply, hand.ply; scene.ply is ignored) or "
                                                  "their folders; read from stdin, one per line, when neither "
                                                  "these nor --object are given."),
    object_: Optional[Path] = typer.Option(None, "--object", help="Reconstructed object mesh of any name "
                                           "(PLY/OBJ/GLB/...), instead of the named meshes."),
    hand: Optional[Path] = typer.Option(None, "--hand", help="Reconstructed hand mesh of any name (with "
                                        "--object)."),
    gt_object: Optional[Path] = typer.Option(None, "--gt-object", help="Ground-truth object mesh (PLY/OBJ) in "
                                             "the same frame; a points.xyz is used through its convex hull. "
                                             "Default: the reconstruction is its own ground truth (object and "
                                             "hand), which asks whether the mesh itself can be grasped."),
    gt_hand: Optional[Path] = typer.Option(None, "--gt-hand", help="Ground-truth hand mesh: grasps touching it "
                                           "fail."),
    avoid: str = typer.Option("auto", help="Hand mesh that filters the proposals: gt (the paper: the input MANO "
                              "mesh), pred (the reconstructed hand.ply), none; auto = gt if given, else pred."),
    top_k: int = typer.Option(50, "--top-k", min=1, help="Best proposals evaluated."),
    n_samples: int = typer.Option(1000, "--samples", min=1, help="Antipodal contact samples on the object."),
    seed: int = typer.Option(0, help="Random seed of the planner and the GT surface samples."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="grasp.json to write (all grasps with their "
                                       "results); a PNG of the best grasps goes beside it."),
    png: Optional[Path] = typer.Option(None, "--png", help="PNG of the best grasps (default: grasps.png beside "
                                       "-o)."),
    scene: Optional[Path] = typer.Option(None, "--scene", help="Also write the mesh and the best grippers for "
                                         "viewing (.glb, .gltf, .obj or .ply)."),
    show: int = typer.Option(5, min=1, help="Grasps drawn in the PNG / scene."),
    force: Force = False,
) -> None:
    """Grasp proposal success ratio of a reconstruction (Choi et al. Table IV, weight-free planner)."""
    import json

    from handcli.errors import InputError
    from handcli.eval.geometry import load_mesh
    from handcli.eval.grasp import grasp_success_ratio, render_grasps_png, write_grasps
    from handcli.outputs import check_writable
    from handcli.progress import log, stage_progress

    if object_ is not None or hand is not None:
        if meshes:
            raise InputError("give the meshes either as arguments or with --object/--hand, not both",
                             field="object")
        if object_ is None:
            raise InputError("--hand needs --object", field="object")
        for p in (object_, hand):
            if p is not None and not p.is_file():
                raise InputError("file not found", path=p)
        parts = {"object": object_, **({"hand": hand} if hand is not None else {})}
    else:
        paths = list(meshes) if meshes else _read_stdin_paths()
        if not paths:
            raise InputError("no meshes given (--object PATH, arguments, or stdin, e.g. `handcli mesh ... | "
                             "handcli grasp-eval`)", field="meshes")
        parts = _named_parts(paths)
    if "object" not in parts:
        raise InputError("no object mesh among the inputs (object.ply, or --object PATH)", field="meshes")
    if avoid not in ("auto", "gt", "pred", "none"):
        raise InputError("--avoid must be auto, gt, pred or none", field="avoid")
    if gt_object is None and gt_hand is not None:
        raise InputError("--gt-hand needs --gt-object", field="gt_hand")
    if avoid == "auto":
        avoid = "gt" if gt_hand is not None else ("pred" if "hand" in parts else "none")
    if avoid == "gt" and gt_hand is None:
        raise InputError("--avoid gt needs --gt-hand", field="avoid")
    if avoid == "pred" and "hand" not in parts:
        raise InputError("--avoid pred needs a hand mesh among the inputs (hand.ply or --hand)", field="avoid")
    if out is not None:
        check_writable(out, force)
        png = png or out.with_name("grasps.png")
    for p in (png, scene):
        if p is not None:
            check_writable(p, force)

    with stage_progress("grasp-eval", ["load meshes", "plan grasps", "evaluate against GT"]) as next_stage:
        pred_object = load_mesh(parts["object"])  # None when empty: no grasp, ratio 0 (as the paper scores it)
        if pred_object is None and gt_object is None:
            raise InputError("the object mesh has no faces (and is its own ground truth without --gt-object)",
                             path=parts["object"])
        pred_hand = load_mesh(parts["hand"]) if "hand" in parts else None
        if gt_object is None:  # the reconstruction is its own ground truth
            gt_obj_mesh, gt_obj_note = pred_object, "the reconstruction itself (no --gt-object)"
            gt_hand_mesh, gt_hand_note = pred_hand, None
        else:
            gt_obj_mesh, gt_obj_note = _load_gt_mesh(gt_object, "object")
            gt_hand_mesh, gt_hand_note = _load_gt_mesh(gt_hand, "hand") if gt_hand is not None else (None, None)
        avoid_mesh = {"gt": gt_hand_mesh, "pred": pred_hand, "none": None}[avoid]
        res = grasp_success_ratio(pred_object, avoid_mesh, gt_obj_mesh, gt_hand_mesh, top_k=top_k, seed=seed,
                                  n_samples=n_samples, on_stage=next_stage)
    summary = {
        "schema": "handcli.grasp-eval/1",
        "object": str(parts["object"]), "hand": str(parts["hand"]) if "hand" in parts else None,
        "gt_object": None if gt_object is None else str(gt_object),
        "gt_hand": None if gt_hand is None else str(gt_hand),
        "avoid": avoid, "object_empty": pred_object is None,
        "num_proposals": res["num_proposals"], "num_evaluated": res["num_evaluated"],
        "num_success": res["num_success"], "success_ratio": res["success_ratio"],
        "config": {"top_k": top_k, "samples": n_samples, "seed": seed, "planner": "antipodal (friction 0.5, 8 "
                   "approach directions)", "gripper": "franka panda boxes, 8 cm opening"},
        "notes": [n for n in (gt_obj_note if ("hull" in gt_obj_note or gt_object is None) else None,
                              gt_hand_note if gt_hand_note and "hull" in gt_hand_note else None) if n],
    }
    log(f"grasp-eval: {res['num_proposals']} proposals, {res['num_success']}/{res['num_evaluated']} successful "
        f"(ratio {res['success_ratio']:.3f})")
    if out is None:
        if png is not None:
            render_grasps_png(pred_object, res["grasps"], png, n_show=show, force=force)
            log(f"wrote {png}")
        if scene is not None:
            _write_scene(res, pred_object, scene, show, force)
        print(json.dumps(summary, indent=1))
        return
    written = write_grasps(res["grasps"], out, mesh=pred_object, scene_path=scene, n_show=show,
                           meta={"summary": summary}, force=force)
    written.append(render_grasps_png(pred_object, res["grasps"], png, n_show=show, force=force))
    for p in written:
        print(p)


def _write_scene(res: dict, mesh, path: Path, show: int, force: bool) -> Path:
    """The mesh and the best grippers as a viewable file (write_grasps' scene writer; its JSON is discarded)."""
    import tempfile

    from handcli.eval.grasp import write_grasps

    with tempfile.TemporaryDirectory() as d:
        write_grasps(res["grasps"], Path(d) / "g.json", mesh=mesh, scene_path=path, n_show=show, force=force)
    return path
