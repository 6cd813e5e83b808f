"""``train --fit-budget``: the step count (and so the learning-rate decay) is sized to the time budget."""

from __future__ import annotations

import time

import torch
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError
from handcli.methods.trainer import steps_for_budget


class Sleeper:
    """A method whose steps take `dt` seconds (one slow step among them)."""

    def __init__(self, dt: float):
        self.dt = dt
        self.model = torch.nn.Linear(2, 1)
        self.calls = 0

    def train_step(self, step, gen):
        self.calls += 1
        time.sleep(self.dt * (20 if self.calls == 6 else 1))
        return self.model(torch.ones(1, 2)).sum(), {}


def test_steps_for_budget_follows_the_step_time():
    m = Sleeper(0.01)
    before = m.model.weight.detach().clone()
    n = steps_for_budget(m, budget=2.0, probe=12, probe_fraction=0.05)
    assert 60 <= n <= 185  # 0.9 * 2 s / ~0.01 s (180), the slow step ignored (median); sleep overshoots under load
    assert m.calls >= 15 and torch.equal(m.model.weight, before) and m.model.weight.grad is None
    assert steps_for_budget(Sleeper(0.02), budget=2.0, probe=12) < n  # slower steps, fewer of them


def test_fit_budget_needs_a_time_budget(tiny_cache, tmp_path):
    res = CliRunner().invoke(app, ["train", str(tiny_cache), "-o", str(tmp_path / "run"), "--method", "handocc",
                                   "--fit-budget"])
    assert isinstance(res.exception, InputError) and res.exception.field == "fit_budget"
