"""Stage progress bars (grasp-eval, mesh): every stage is shown, and the bar completes."""

from __future__ import annotations

import io

from rich.console import Console

from handcli import progress as prog


def test_stage_progress_walks_the_stages(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(prog, "console", Console(file=buf, width=120, force_terminal=False))
    with prog.stage_progress("grasp-eval", ["load", "plan", "evaluate"]) as next_stage:
        next_stage()
        next_stage()
    out = buf.getvalue()
    assert "grasp-eval: done" in out and "3/3" in out
    buf.truncate(0)
    with prog.stage_progress("mesh", ["a", "b"]) as next_stage:
        next_stage("custom")
        next_stage()  # past the last stage: ignored
    assert "2/2" in buf.getvalue()
