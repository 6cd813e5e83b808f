"""``handcli eval``: a renders folder + the cache -> metrics.json (+ metrics_sheet.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def sheet_path(out: Path) -> Path:
    """The contact sheet written beside metrics.json: `<stem>_sheet.png` (metrics.json -> metrics_sheet.png)."""
    return out.with_name(f"{out.stem}_sheet.png")


def eval_command(
    renders: Path = typer.Argument(..., help="Renders folder written by `handcli render` (holds renders.json)."),
    cache: Path = typer.Argument(..., help="The cache (.h5) the renders were made from."),
    out: Path = typer.Option(..., "-o", "--out", help="metrics.json to write; the contact sheet goes beside it."),
    depth: Optional[Path] = typer.Option(None, "--depth", help="Depth targets file (handcli.targets.depth/1); "
                                                               "default: rasterize GT depth from the cache."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights",
                                                 help="torchvision AlexNet checkpoint for LPIPS."),
    lpips_lin_weights: Optional[Path] = typer.Option(None, "--lpips-lin-weights",
                                                     help="lpips v0.1 alex.pth linear heads."),
    sheet_views: int = typer.Option(8, min=1, help="Views on the contact sheet."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Image metrics of rendered cache views: PSNR (full, box), SSIM (Gaussian, skimage), LPIPS, depth, IoU."""
    import json
    import sys

    from handcli.eval.images_eval import evaluate_renders
    from handcli.outputs import atomic_path, check_writable
    from handcli.progress import console, progress
    from handcli.render.outputs import contact_sheet

    sheet = sheet_path(out)
    check_writable(out, force)
    check_writable(sheet, force)
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


def print_table(doc: dict, console) -> None:
    """Per-view metrics and their mean as a rich table (on the given console, stderr in the CLI)."""
    from rich.table import Table

    metrics = list(doc["mean"])
    from rich import box

    short = {"psnr_full": "PSNR-full", "psnr_box": "PSNR-box", "ssim_gaussian": "SSIM-g",
             "ssim_skimage_default": "SSIM-sk", "lpips_alex": "LPIPS", "depth_error_mm": "DE-mm",
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
    for note in doc["notes"][1:]:
        console.print(f"note: {note}", highlight=False)
    if doc["num_skipped"]:
        console.print(f"note: {doc['num_skipped']} views without a cache_view skipped", highlight=False)
