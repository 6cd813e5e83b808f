"""``handcli report``: one page with both methods' metrics, pictures embedded, every linked file present."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError
from handcli.methods.trainer import plot_curves
from handcli.render.orbit import default_intrinsics
from handcli.render.renders_folder import RendersWriter, contact_sheet, write_png
from handcli.render.video import write_video
from handcli.report import METRICS_SCHEMA

METHODS = {"handocc": 33.25, "handnerf": 29.5}


def _method_folder(root, name, psnr, rng):
    d = root / name
    (d / "run").mkdir(parents=True)
    recs = [{"step": s, "loss": 1.0 / s, "psnr": 20 + s / 10} for s in (10, 20, 30)]
    plot_curves(recs, d / "run" / "curves.png")
    (d / "run" / "complete.json").write_text(json.dumps(recs[-1] | {"elapsed_s": 12.5}))
    K, M = default_intrinsics(16, 12), np.eye(4)
    w = RendersWriter(d / "renders", name, d / "run", root / "cache.h5", "views", {})
    img = rng.random((12, 16, 3))
    w.add(img, np.ones((12, 16)), np.ones((12, 16)), {"K": K, "world_to_cam": M, "seconds": 0.5})
    w.close()
    contact_sheet([(img, img)], ["v"], d / "renders" / "contact_sheet.png")
    ow = RendersWriter(d / "renders" / "orbit", name, d / "run", root / "cache.h5", "orbit", {})
    frames = [(rng.random((12, 16, 3)) * 255).astype(np.uint8) for _ in range(3)]
    for f in frames:
        ow.add(f, np.ones((12, 16)), np.ones((12, 16)), {"K": K, "world_to_cam": M})
    ow.close()
    write_video(frames, d / "renders" / "orbit.mp4", fps=4)
    (d / "metrics.json").write_text(json.dumps({
        "schema": METRICS_SCHEMA, "inputs": {"method": name, "cache": str(root / "cache.h5")}, "num_views": 1,
        "mean": {"psnr_full": psnr, "psnr_box": psnr - 1, "ssim_gaussian": 0.9, "lpips_alex": None,
                 "depth_error_mm": 4.0, "semantic_iou": 90.0}}))


def test_report_page(tmp_path):
    rng = np.random.default_rng(0)
    for name, psnr in METHODS.items():
        _method_folder(tmp_path, name, psnr, rng)
    write_png(tmp_path / "hand.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "other").mkdir()  # folders without metrics.json are not methods
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--seconds", "540"])
    assert res.exit_code == 0, res.output
    page = tmp_path / "index.html"
    assert res.stdout.split() == [str(page)]
    text = page.read_text()
    rows = re.findall(r"<tr class='method' data-method='([^']+)'><th>[^<]+</th>(.*?)</tr>", text)
    assert sorted(r[0] for r in rows) == sorted(METHODS)
    for name, cells in rows:
        assert f"{METHODS[name]:.2f}" in cells  # each method's own PSNR in its row
    assert "<b>33.25</b>" in text  # the better PSNR is marked
    assert "9.0 minutes" in text and "handcli view handocc/run cache.h5" in text
    # every referenced file exists; embedded pictures decode (4 PNGs per method pair + hand, 2 GIFs)
    refs = re.findall(r"(?:src|href)='([^']+)'", text)
    local = [r for r in refs if not r.startswith("data:")]
    assert local and all((tmp_path / r).is_file() for r in local)
    assert {"handocc/renders/orbit.mp4", "handnerf/renders/orbit.mp4"} <= set(local)
    data = [r for r in refs if r.startswith("data:")]
    magic = {"image/png": b"\x89PNG", "image/gif": b"GIF89a"}
    kinds = []
    for uri in data:
        mime, b64 = re.match(r"data:([^;]+);base64,(.*)", uri).groups()
        assert base64.b64decode(b64).startswith(magic[mime])
        kinds.append(mime)
    assert kinds.count("image/gif") == 2 and kinds.count("image/png") == 5  # 2 sheets, 2 curves, the hand


def test_report_errors(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(res.exception, InputError) and "metrics.json" in str(res.exception)
    assert not (tmp_path / "index.html").exists()
    _method_folder(tmp_path, "handocc", 30.0, np.random.default_rng(1))
    (tmp_path / "index.html").write_text("old")
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(res.exception, InputError) and "--force" in str(res.exception)
    assert (tmp_path / "index.html").read_text() == "old"
    (tmp_path / "handocc" / "metrics.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(InputError):
        from handcli.report import write_report

        write_report(tmp_path, tmp_path / "r.html")
