"""``train --fit-budget``: the step count (and so the learning-rate decay) is sized to the time budget from
the rate of the first real steps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError
from handcli.methods.trainer import FIT_FRACTION, read_metrics, train


@dataclass
class Cfg:
    steps: int = 100_000


class Sleeper:
    """A method whose steps take `dt` seconds."""

    def __init__(self, dt: float, slow_steps: int = 0, slow_dt: float = 0.0):
        self.dt, self.slow_steps, self.slow_dt = dt, slow_steps, slow_dt
        self.model = torch.nn.Linear(2, 1)
        self.cfg = Cfg()

    def attach_run(self, run_dir):
        pass

    def train_step(self, step, gen):
        time.sleep(self.slow_dt if step < self.slow_steps else self.dt)
        return (self.model(torch.ones(1, 2)) ** 2).sum(), {}

    def finish_training(self):
        return None


def test_fit_budget_sizes_the_schedule_to_the_budget(tmp_path):
    m = Sleeper(0.01)
    last = train(m, tmp_path, steps=100_000, lr=1e-2, lr_final=1e-4, seed=0, resume=False, log_every=20,
                 ckpt_every=10**9, time_budget=3.0, fit_budget=True)
    recs = read_metrics(tmp_path)
    fitted = [r["fitted_steps"] for r in recs if "fitted_steps" in r]
    # fitted at FIT_FRACTION and again at REFIT_FRACTION of the budget (the two may share a log row)
    assert 1 <= len(fitted) <= 2 and fitted[-1] == m.cfg.steps  # the method's config follows the schedule
    assert 120 <= m.cfg.steps <= 300  # ~0.95 * 3 s / 0.01 s, fewer when sleeps overshoot on a busy machine
    # the schedule ran (nearly: the step rate is measured early, and sleeps overshoot on a busy machine) to its
    # end within the budget, so the learning rate decayed to (about) its final value
    assert last["step"] >= 0.85 * m.cfg.steps and last["elapsed_s"] <= 3.2
    assert last["lr"] < 3e-4
    first = [r for r in recs if r["elapsed_s"] < FIT_FRACTION * 3.0]
    assert all(r["lr"] == 1e-2 for r in first)  # the measuring steps run at the initial rate

    # without the fit, the same budget cuts a long schedule near its start
    (tmp_path / "b").mkdir()
    m2 = Sleeper(0.01)
    last2 = train(m2, tmp_path / "b", steps=100_000, lr=1e-2, lr_final=1e-4, seed=0, resume=False, log_every=20,
                  ckpt_every=10**9, time_budget=1.0)
    assert last2["lr"] > 5e-3 and m2.cfg.steps == 100_000


def test_refit_uses_the_budget_after_a_slow_start(tmp_path):
    """Early steps with one-off work (lazily built per-frame data) make the first fit too short; the refit at
    REFIT_FRACTION of the budget plans from the rate since, so training still fills the budget."""
    m = Sleeper(0.01, slow_steps=15, slow_dt=0.04)  # the first fit (at step 13) sees only slow steps
    last = train(m, tmp_path, steps=100_000, lr=1e-2, lr_final=1e-4, seed=0, resume=False, log_every=10,
                 ckpt_every=10**9, time_budget=3.0, fit_budget=True)
    fitted = [r["fitted_steps"] for r in read_metrics(tmp_path) if "fitted_steps" in r]
    assert len(fitted) == 2 and fitted[1] > 1.5 * fitted[0]  # the slow start under-planned the first fit
    assert last["elapsed_s"] >= 0.75 * 3.0 and last["lr"] < 3e-4  # the budget is used and the lr decayed


def test_fit_budget_needs_a_time_budget(tiny_cache, tmp_path):
    res = CliRunner().invoke(app, ["train", str(tiny_cache), "-o", str(tmp_path / "run"), "--method", "handocc",
                                   "--fit-budget"])
    assert isinstance(res.exception, InputError) and res.exception.field == "fit_budget"
    assert not (tmp_path / "run").exists()


def test_fit_budget_through_the_cli(tiny_cache, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_cache), "-o", str(run), "--method", "handocc", "--set",
                                   "rays_per_step=64", "--set", "occ_points=256", "--set", "pool_points=2048",
                                   "--time-budget", "8", "--fit-budget", "--log-every", "5"])
    assert res.exit_code == 0, res.output
    steps = json.loads((run / "config.json").read_text())["config"]["steps"]
    assert steps != 2000 and steps >= 11  # the preset's 2000 replaced by the fitted count
    assert json.loads((run / "complete.json").read_text())["step"] <= steps
