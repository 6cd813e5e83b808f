"""``scripts/demo.sh`` end to end at a tiny size: both methods trained, rendered, evaluated, one report page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_script_writes_one_report_with_both_methods(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "handcli"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m handcli.cli \"$@\"\n")
    exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "TRAIN_SECONDS": "16", "DEMO_FRAMES": "3", "DEMO_ORBIT": "2", "DEMO_MAX_VIEWS": "2", "DEMO_MESH_RES": "24"}
    out = tmp_path / "demo_out"
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), str(out)], env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    page = (out / "index.html").read_text()
    assert sorted(re.findall(r"data-method='([^']+)'", page)) == ["handnerf", "handocc"]
    for method in ("handnerf", "handocc"):
        assert (out / method / "metrics.json").is_file() and (out / method / "renders" / "orbit.mp4").is_file()
    refs = [x for x in re.findall(r"(?:src|href)='([^']+)'", page) if not x.startswith("data:")]
    assert all((out / x).is_file() for x in refs)
    assert "open" in r.stderr and "index.html" in r.stderr
