"""``handcli eval``: a renders folder + the cache -> metrics.json (+ metrics_sheet.png); or reconstructed
meshes + ground truth (a cache frame or point files) -> geometry metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from handcli.commands.options import Force


def sheet_path(out: Path) -> Path:
    """The contact sheet written beside metrics.json: `<stem>_sheet.png` (metrics.json -> metrics_sheet.png)."""
    return out.with_name(f"{out.stem}_sheet.png")


def eval_command(
    inputs: List[Path] = typer.Argument(..., help="A renders folder written by `handcli render` (holds "
                                        "renders.json) and the cache it was made from; or meshes (hand.ply, "
                                        "object.ply, scene.ply, or folders from `handcli mesh`) and optionally the "
                                        "cache holding the ground truth (with --frame)."),
    out: Path = typer.Option(..., "-o", "--out", help="metrics.json to write; the contact sheet goes beside it."),
    depth: Optional[Path] = typer.Option(None, "--depth", help="Depth targets file (handcli.targets.depth/1); "
                                                               "default: rasterize GT depth from the cache."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights",
                                                 help="torchvision AlexNet checkpoint for LPIPS."),
    lpips_lin_weights: Optional[Path] = typer.Option(None, "--lpips-lin-weights",
                                                     help="lpips v0.1 alex.pth linear heads."),
    sheet_views: int = typer.Option(8, min=1, help="Views on the contact sheet."),
    frame: Optional[int] = typer.Option(None, "--frame", help="Meshes: the cache frame they reconstruct."),
    gt_hand: Optional[Path] = typer.Option(None, "--gt-hand", help="Meshes: GT hand points or mesh "
                                           "(.ply/.obj vertices, .xyz/.txt/.npy) instead of the cache's."),
    gt_object: Optional[Path] = typer.Option(None, "--gt-object", help="Meshes: GT object points or mesh "
                                             "(e.g. a posed points.xyz) instead of the cache's."),
    seed: int = typer.Option(0, help="Meshes: seed of the surface sampling."),
    force: Force = False,
) -> None:
    """Image metrics of rendered cache views: PSNR (full, box), SSIM (Gaussian, skimage), LPIPS, depth, IoU.
    Given meshes instead: F-score at 5/10 mm and Chamfer distance (Choi's m²x1000 and mean mm) per part."""
    import json
    import sys

    from handcli.errors import InputError

    first = inputs[0]
    if not (first.is_dir() and (first / "renders.json").exists()) and _looks_like_meshes(first):
        return _eval_geometry(inputs, out, frame, gt_hand, gt_object, seed, force)
    if len(inputs) != 2:
        raise InputError(f"a renders folder is evaluated against one cache: expected RENDERS CACHE, got "
                         f"{len(inputs)} paths", field="inputs")
    renders, cache = inputs

    from handcli.eval.renders_eval import evaluate_renders
    from handcli.outputs import atomic_path, check_writable
    from handcli.progress import console, progress
    from handcli.render.renders_folder import contact_sheet

    sheet = sheet_path(out)
    check_writable(out, force, inputs=[renders, cache, depth], is_dir=False)
    check_writable(sheet, force, inputs=[renders, cache, depth], is_dir=False)
    with progress() as bar:
        task = bar.add_task("eval", total=None)
        res = evaluate_renders(renders, cache, depth, lpips_weights, lpips_lin_weights, sheet_views=sheet_views,
                               on_view=lambda done, total: bar.update(task, completed=done, total=total))
    text = json.dumps(res.doc, indent=1, allow_nan=False)
    with atomic_path(out, force) as tmp_json, atomic_path(sheet, force) as tmp_sheet:
        contact_sheet(res.sheet, res.sheet_labels, tmp_sheet)
        tmp_json.write_text(text)
    print_table(res.doc, console)
    print(out)
    sys.stdout.flush()


def _looks_like_meshes(path: Path) -> bool:
    from handcli.eval.geometry_eval import MESH_SUFFIXES

    if path.is_dir():
        return any(f.suffix.lower() in MESH_SUFFIXES for f in path.iterdir())
    return path.suffix.lower() in MESH_SUFFIXES


def _eval_geometry(inputs: list[Path], out: Path, frame, gt_hand, gt_object, seed: int, force: bool) -> None:
    """Geometry branch of ``handcli eval``: meshes (+ the cache) -> metrics.json; prints its path."""
    import json
    import sys

    from handcli.eval.geometry_eval import evaluate_geometry, is_cache_file, print_geometry_table
    from handcli.outputs import atomic_path, check_writable
    from handcli.progress import console

    check_writable(out, force, inputs=inputs, is_dir=False)
    caches = [p for p in inputs if is_cache_file(p)]
    meshes = [p for p in inputs if not is_cache_file(p)]
    if len(caches) > 1:
        from handcli.errors import InputError

        raise InputError(f"more than one cache given: {', '.join(map(str, caches))}", field="inputs")
    doc = evaluate_geometry(meshes, caches[0] if caches else None, frame, gt_hand, gt_object, seed)
    text = json.dumps(doc, indent=1, allow_nan=False)
    with atomic_path(out, force) as tmp:
        tmp.write_text(text)
    print_geometry_table(doc, console)
    print(out)
    sys.stdout.flush()


def print_table(doc: dict, console) -> None:
    """Per-view metrics and their mean as a rich table (on the given console, stderr in the CLI)."""
    from rich.table import Table

    parts = ("depth_error_shown_mm", "depth_shown")  # DE's two parts: a line under the table (80 columns)
    metrics = [m for m in doc["mean"] if m not in parts]
    from rich import box

    short = {"psnr_full": "PSNR-full", "psnr_box": "PSNR-box", "psnr_full_camcal": "PSNR-cal",
             "ssim_gaussian": "SSIM-g", "ssim_skimage_default": "SSIM-sk", "lpips_alex": "LPIPS", "depth_error_mm": "DE-mm",
             "semantic_iou": "IoU"}
    t = Table(title=f"{doc['num_views']} views (conventions: metrics.json)", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    t.add_column("view", min_width=10, overflow="ellipsis", no_wrap=True)
    for m in metrics:
        t.add_column(short.get(m, m), justify="right", no_wrap=True)

    def fmt(m: str, x, index=None) -> str:
        if x is None:
            inf = doc["infinite"].get(m, [])
            return "inf" if (index is None and inf) or index in inf else "-"
        return f"{x:.4f}" if m.startswith(("ssim", "lpips")) else f"{x:.2f}"

    for v in doc["views"]:
        t.add_row(v["name"], *[fmt(m, v[m], v["index"]) for m in metrics])
    t.add_row("mean", *[fmt(m, doc["mean"][m]) for m in metrics], style="bold")
    console.print(t)
    de, shown = (doc["mean"].get(m) for m in parts)
    if de is not None and shown is not None:
        console.print(f"DE where the renders show a surface: {de:.2f} mm, on {100 * shown:.2f} % of its pixels",
                      highlight=False)
    for note in doc["notes"][1:]:
        console.print(f"note: {note}", highlight=False)
    if doc["num_skipped"]:
        console.print(f"note: {doc['num_skipped']} views without a cache_view skipped", highlight=False)
