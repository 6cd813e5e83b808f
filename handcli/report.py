"""One HTML page for a folder of runs (``handcli report``, the demo's ``demo_out/index.html``).

A report folder holds one sub-folder per method, as ``scripts/demo.sh`` writes them::

    DIR/hand.png                     the hand model picture (optional)
    DIR/<method>/run/                config.json, complete.json, curves.png (handcli train)
    DIR/<method>/renders/            renders.json, contact_sheet.png, orbit/rgb/*.png, orbit.mp4 (handcli render)
    DIR/<method>/metrics.json        handcli eval
    DIR/<method>/mesh/mesh.png       optional picture of meshes (handcli mesh -o DIR/<method>/mesh)

`write_report` writes one self-contained page: pictures and the orbit animations (GIF, which every browser
plays; OpenCV's mp4v videos do not play in browsers) are embedded as data URIs, so the page opens from any
folder without a server; the mp4 files are linked by relative path for download.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from handcli.errors import InputError
from handcli.outputs import atomic_path

METRICS_SCHEMA = "handcli.metrics.images/1"
# (key in metrics.json "mean", column title, format, better)
METRIC_COLUMNS = (
    ("psnr_full", "PSNR full (dB)", "{:.2f}", "max"),
    ("psnr_box", "PSNR box (dB)", "{:.2f}", "max"),
    ("psnr_full_camcal", "PSNR full, camera-calibrated (dB)", "{:.2f}", "max"),
    ("ssim_gaussian", "SSIM", "{:.4f}", "max"),
    ("lpips_alex", "LPIPS (alex)", "{:.4f}", "min"),
    ("depth_error_mm", "depth error (mm)", "{:.2f}", "min"),
    ("depth_error_shown_mm", "depth error where shown (mm)", "{:.2f}", "min"),
    ("depth_shown", "GT mask shown", "{:.4f}", "max"),
    ("semantic_iou", "mask IoU (%)", "{:.2f}", "max"),
)


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", path=path) from None


def find_methods(report_dir: Path) -> list[dict]:
    """The method folders of a report folder: [{name, dir, metrics, run_config, complete, renders}], in
    folder-name order. A folder counts when it holds a metrics.json of `handcli eval` (images)."""
    out = []
    for d in sorted(p for p in Path(report_dir).iterdir() if p.is_dir()):
        metrics = _load(d / "metrics.json")
        if metrics is None:
            continue
        if metrics.get("schema") != METRICS_SCHEMA or not isinstance(metrics.get("mean"), dict):
            raise InputError(f"expected a metrics.json of `handcli eval` (schema {METRICS_SCHEMA})",
                             path=d / "metrics.json", field="schema")
        name = (metrics.get("inputs") or {}).get("method") or d.name
        out.append({"name": str(name), "dir": d, "metrics": metrics, "run_config": _load(d / "run" / "config.json"),
                    "complete": _load(d / "run" / "complete.json"), "renders": _load(d / "renders" / "renders.json")})
    return out


def _data_uri(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _orbit_gif_uri(renders_dir: Path, fps: float = 12) -> str | None:
    """The orbit's PNG sequence as an embedded looping GIF, or None without an orbit."""
    import cv2

    from handcli.render.video import encode_gif

    frames = sorted((renders_dir / "orbit" / "rgb").glob("*.png"))
    if not frames:
        return None
    imgs = [np.ascontiguousarray(cv2.imread(str(f), cv2.IMREAD_COLOR)[..., ::-1]) for f in frames]
    return "data:image/gif;base64," + base64.b64encode(encode_gif(imgs, fps)).decode("ascii")


def _fmt(v, fmt: str) -> str:
    return "&ndash;" if v is None else fmt.format(v)


def metrics_rows(methods: list[dict]) -> list[dict]:
    """Per method: the mean metrics of METRIC_COLUMNS plus training steps/seconds and render seconds/view."""
    rows = []
    for m in methods:
        mean = m["metrics"]["mean"]
        complete = m["complete"] or {}
        views = (m["renders"] or {}).get("views") or []
        rows.append({"method": m["name"], **{k: mean.get(k) for k, *_ in METRIC_COLUMNS},
                     "views": m["metrics"].get("num_views"), "steps": complete.get("step"),
                     "train_s": complete.get("elapsed_s"),
                     "render_s": float(np.mean([v.get("seconds", 0.0) for v in views])) if views else None})
    return rows


def _table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _, _ in METRIC_COLUMNS)
    best = {}
    for k, _, _, better in METRIC_COLUMNS:
        vals = [r[k] for r in rows if r[k] is not None]
        if len(vals) > 1:
            best[k] = max(vals) if better == "max" else min(vals)
    body = []
    for r in rows:
        cells = []
        for k, _, fmt, _ in METRIC_COLUMNS:
            txt = _fmt(r[k], fmt)
            cells.append(f"<td><b>{txt}</b></td>" if k in best and r[k] == best[k] else f"<td>{txt}</td>")
        cells += [f"<td>{_fmt(r['views'], '{}')}</td>", f"<td>{_fmt(r['steps'], '{}')}</td>",
                  f"<td>{_fmt(r['train_s'], '{:.0f}')}</td>", f"<td>{_fmt(r['render_s'], '{:.2f}')}</td>"]
        body.append(f"<tr class='method' data-method='{html.escape(r['method'])}'><th>{html.escape(r['method'])}"
                    f"</th>{''.join(cells)}</tr>")
    return (f"<table><tr><th>method</th>{head}<th>views</th><th>training steps</th><th>training s</th>"
            f"<th>render s / view</th></tr>{''.join(body)}</table>")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
tr.method th{text-align:left}.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
figure{margin:0;flex:1 1 0;min-width:320px}figcaption{font-weight:bold;margin:.3em 0}img{max-width:100%;image-rendering:auto}
code{background:#f3f3f3;padding:1px 4px}img.hand{max-width:720px}.note{color:#666;font-size:90%}"""


def write_report(report_dir: str | Path, out_html: str | Path, title: str = "handcli report",
                 seconds: float | None = None, force: bool = False) -> Path:
    """Write the report page of a report folder (layout in the module docstring) to ``out_html``.

    Sections: metrics side by side (best value in bold), contact sheets, orbit animations (embedded GIFs,
    mp4 linked), training curves, the hand model picture, and how to open the viewer. Files the page links
    (mp4) are referenced relative to the page's folder. Raises InputError when no method folder is found.
    """
    report_dir, out_html = Path(report_dir), Path(out_html)
    if not report_dir.is_dir():
        raise InputError("report folder not found", path=report_dir)
    methods = find_methods(report_dir)
    if not methods:
        raise InputError("no method folder with a metrics.json (handcli eval) in the report folder",
                         path=report_dir)
    page = out_html.resolve().parent

    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(page).as_posix()
        except ValueError:
            return p.resolve().as_uri()

    rows = metrics_rows(methods)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    cache = (methods[0]["metrics"].get("inputs") or {}).get("cache")
    parts.append(f"<p>{len(methods)} methods trained on the same cache and cameras"
                 + (f" (<code>{html.escape(str(cache))}</code>)" if cache else "")
                 + (f"; the whole run took {seconds / 60:.1f} minutes" if seconds else "") + ".</p>")
    parts.append("<h2>Held-out views</h2>" + _table(rows)
                 + "<p class='note'>Mean over the rendered held-out views (handcli eval, docs/metrics.md); "
                   "PSNR full includes the black background, PSNR box only pixels in the hand's box; "
                   "LPIPS is empty without its weights.</p>")
    sections = {"Contact sheets (prediction | ground truth | error)": [], "Orbits": [], "Training curves": [],
                "Meshes": []}
    for m in methods:
        d, name = m["dir"], html.escape(m["name"])
        if (d / "renders" / "contact_sheet.png").is_file():
            sections["Contact sheets (prediction | ground truth | error)"].append(
                f"<figure><figcaption>{name}</figcaption><img src='{_data_uri(d / 'renders' / 'contact_sheet.png')}'"
                f" alt='{name} contact sheet'></figure>")
        gif = _orbit_gif_uri(d / "renders")
        if gif:
            links = "".join(f" <a href='{html.escape(rel(v))}'>{v.name}</a>" for v in
                            sorted((d / "renders").glob("*.mp4")) + sorted((d / "renders").glob("*.gif")))
            sections["Orbits"].append(f"<figure><figcaption>{name}</figcaption><img src='{gif}' "
                                      f"alt='{name} orbit'><div class='note'>video:{links}</div></figure>")
        if (d / "run" / "curves.png").is_file():
            sections["Training curves"].append(f"<figure><figcaption>{name}</figcaption><img src='"
                                               f"{_data_uri(d / 'run' / 'curves.png')}' alt='{name} curves'>"
                                               "</figure>")
        for pic in (d / "mesh.png", d / "mesh" / "mesh.png"):
            if pic.is_file():
                sections["Meshes"].append(f"<figure><figcaption>{name}</figcaption><img src='"
                                          f"{_data_uri(pic)}' alt='{name} mesh'></figure>")
    for head, figs in sections.items():
        if figs:
            parts.append(f"<h2>{html.escape(head)}</h2><div class='row'>{''.join(figs)}</div>")
    if (report_dir / "hand.png").is_file():
        parts.append(f"<h2>Hand model</h2><img src='{_data_uri(report_dir / 'hand.png')}' alt='hand model' class='hand'>")
    cache_arg = html.escape(rel(Path(cache)) if cache else "CACHE")
    runs = "".join(f"<li><code>handcli view {html.escape(rel(m['dir'] / 'run'))} {cache_arg}</code></li>"
                   for m in methods)
    parts.append("<h2>Look around</h2><p>Open a trained run in the interactive viewer (paths relative to "
                 f"this page's folder):</p><ul>{runs}</ul>")
    parts.append("</body></html>")
    with atomic_path(out_html, force=force) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
    return out_html
