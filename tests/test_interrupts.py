"""Interrupts, determinism and resume through the CLI: SIGINT/SIGTERM keep the work done (exit 130), kill -9
leaves nothing that the next run does not clean, --seed makes runs bit-identical, and kill -9 + --resume ends
with the checkpoint of an uninterrupted run (no weights copied between runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY_SET = ["--set", "rays_per_step=64", "--set", "n_samples=8", "--set", "hidden=16", "--set", "layers=2",
            "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=8", "--set", "ec_layers=2",
            "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """``handcli ARGS`` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from handcli import cli

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "handcli.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def metric_steps(run: Path) -> list[int]:
    p = run / "metrics.jsonl"
    if not p.is_file():
        return []
    steps = []
    for line in p.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a row being written
    return steps


def wait_for(cond, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"process ended early: {proc.communicate()[1][-2000:]}"
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.005)


def ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def assert_same_state(a, b, where="") -> None:
    """Bit-identical nested state (tensors compared with torch.equal, dtype included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def train_args(cache, run, *extra):
    return ["train", cache, "-o", run, *TINY_SET, *extra]


# ------------------------------------------------------------------------------------------------- determinism
def test_identical_seeds_give_bit_identical_checkpoints(tiny_cache, tmp_path, monkeypatch, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for run, seed in ((a, 0), (b, 0), (c, 1)):
        torch.rand(7)  # the global generator is in a different state before each run
        code, _, err = run_cli(train_args(tiny_cache, run, "--steps", "3", "--seed", seed), monkeypatch, capsys)
        assert code == 0, err
    assert_same_state(ckpt(a), ckpt(b))
    assert (a / "checkpoint.pt").read_bytes() == (b / "checkpoint.pt").read_bytes()
    # the seed reaches the initialisation: another seed gives other weights
    wa, wc = ckpt(a)["model"], ckpt(c)["model"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


@pytest.mark.slow
def test_identical_seeds_handocc(tiny_cache, tmp_path, monkeypatch, capsys):
    small = ["--method", "handocc", "--stage", "occupancy", "--steps", "3", "--set", "rays_per_step=64", "--set",
             "occ_points=256", "--set", "pool_points=1024", "--set", "occ_hidden=16", "--set", "color_hidden=16",
             "--set", "max_samples=8", "--cameras", "400002,400009", "--threads", "1"]
    for run in (tmp_path / "a", tmp_path / "b"):
        torch.rand(5)
        code, _, err = run_cli(["train", tiny_cache, "-o", run, *small], monkeypatch, capsys)
        assert code == 0, err
    assert_same_state(ckpt(tmp_path / "a"), ckpt(tmp_path / "b"))


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_cache, tmp_path, monkeypatch, capsys):
    steps = ["--steps", "60", "--ckpt-every", "5", "--log-every", "1", "--seed", "3"]
    a, b = tmp_path / "a", tmp_path / "b"
    proc = start(*train_args(tiny_cache, b, *steps))
    wait_for(lambda: any(s > 5 for s in metric_steps(b)), proc)  # the step-5 checkpoint is written
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = ckpt(b)["step"]
    assert 5 <= killed_at < 60 and not (b / "complete.json").exists()
    code, _, err = run_cli(["train", tiny_cache, "-o", b, "--resume"], monkeypatch, capsys)
    assert code == 0, err
    code, _, err = run_cli(train_args(tiny_cache, a, *steps), monkeypatch, capsys)  # uninterrupted
    assert code == 0, err
    sa, sb = ckpt(a), ckpt(b)
    assert sa["step"] == sb["step"] == 60
    assert_same_state(sa, sb)
    # the resume kept --log-every 1 and wrote each step once
    assert metric_steps(b) == list(range(1, 61)) == metric_steps(a)


# ------------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_train_checkpoints_the_current_step(tiny_cache, tmp_path, monkeypatch, capsys, sig):
    run = tmp_path / "run"
    proc = start(*train_args(tiny_cache, run, "--steps", "100000", "--log-every", "1", "--ckpt-every", "1000"))
    wait_for(lambda: len(metric_steps(run)) >= 1, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    state = ckpt(run)
    rows = metric_steps(run)
    assert 1 <= state["step"] < 1000 and rows[-1] == state["step"], (state["step"], rows[-3:])
    assert "interrupted at step" in err and out == "" and not (run / "complete.json").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporaries left
    # a plain --resume continues with the run's settings (log every step, checkpoint every 1000)
    k = state["step"]
    code, _, err = run_cli(["train", tiny_cache, "-o", run, "--resume", "--steps", k + 3], monkeypatch, capsys)
    assert code == 0, err
    assert metric_steps(run) == sorted(set(metric_steps(run))) and metric_steps(run)[-3:] == [k + 1, k + 2, k + 3]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["log_every"] == 1 and cfg["train"]["ckpt_every"] == 1000


def test_resume_drops_rows_after_the_checkpoint_and_needs_a_checkpoint(tiny_cache, tmp_path, monkeypatch,
                                                                       capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(train_args(tiny_cache, run, "--steps", "4", "--log-every", "1", "--ckpt-every", "2"),
                           monkeypatch, capsys)
    assert code == 0, err
    # as a kill -9 after step 5 would leave it: rows past the checkpoint (step 4), a half-written row
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + '{"step": 6, "lo')
    (run / ".checkpoint.pt.tmp").write_bytes(b"half a checkpoint")
    code, _, err = run_cli(["train", tiny_cache, "-o", run, "--resume", "--steps", "6"], monkeypatch, capsys)
    assert code == 0, err
    assert metric_steps(run) == [1, 2, 3, 4, 5, 6] and not (run / ".checkpoint.pt.tmp").exists()
    assert "stale" in err
    # --resume on a run without a checkpoint is an error that says how to start over
    (run / "checkpoint.pt").unlink()
    code, _, err = run_cli(["train", tiny_cache, "-o", run, "--resume"], monkeypatch, capsys)
    assert code == 2 and "checkpoint" in err and "--force" in err


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(x) for x in task.read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc (Linux) to list worker processes")
def test_kill_9_during_preprocess_workers_die_and_rerun_cleans(synth_ih, tmp_path):
    out = tmp_path / "c.h5"
    proc = start("preprocess", "interhand", synth_ih, "-o", out, "--workers", "2", "--scale", "0.25")
    wait_for(lambda: len(_children(proc.pid)) >= 2 and list(tmp_path.glob(".c.h5.*.tmp")), proc)
    workers = _children(proc.pid)  # killed while the workers are still starting (the hardest case)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # a surviving worker would keep the output pipes open
    t0 = time.time()
    while any(_alive(w) for w in workers) and time.time() - t0 < 10:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "worker processes outlived their parent"
    stale = list(tmp_path.glob(".c.h5.*.tmp"))
    assert stale and not out.exists()
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "preprocess", "interhand", str(synth_ih), "-o",
                        str(out), "--scale", "0.25"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and not any(p.exists() for p in stale) and "stale" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]


@pytest.mark.slow
def test_sigint_during_preprocess_is_never_swallowed(synth_ih, tmp_path):
    for i in range(3):
        out = tmp_path / f"c{i}.h5"
        proc = start("preprocess", "interhand", synth_ih, "-o", out, "--workers", "2")
        wait_for(lambda: bool(list(tmp_path.glob(f".{out.name}.*.tmp"))), proc)
        time.sleep(0.2 * i)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err[-2000:]
        assert list(tmp_path.iterdir()) == [], [p.name for p in tmp_path.iterdir()]


@pytest.mark.slow
def test_sigint_during_adapt_keeps_a_checkpoint(tiny_cache, tmp_path, monkeypatch, capsys):
    run, out = tmp_path / "run", tmp_path / "adapted"
    code, _, err = run_cli(train_args(tiny_cache, run, "--steps", "1"), monkeypatch, capsys)
    assert code == 0, err
    proc = start("adapt", run, tiny_cache, "-o", out, "--steps", "100000")
    wait_for(lambda: any(metric_steps(p) for p in tmp_path.glob(".adapted.*.tmp")), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 1 <= ckpt(out)["step"] == metric_steps(out)[-1] < 100000
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


SIGNAL_AT_TEMP = """
import os, signal, sys
from pathlib import Path
from handcli import outputs
from handcli.interrupts import stage_signals

is_dir, folder = sys.argv[1] == "dir", Path(sys.argv[2])
hook = "make_temp_dir" if is_dir else "temp_name"
real = getattr(outputs, hook)

def then_signal(*args, **kwargs):
    made = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)  # pending now; the handler runs at a later bytecode
    return made

setattr(outputs, hook, then_signal)
try:
    with stage_signals():
        with outputs.atomic_path(folder / "out", is_dir=is_dir):
            for _ in range(10_000):  # the stage's work: the pending signal is raised by now at the latest
                pass
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("is_dir", [False, True])
def test_a_signal_while_the_temporary_is_made_leaves_nothing(tmp_path, is_dir):
    """SIGINT arriving right after the temporary's name is drawn or its folder made (before the stage's own
    work): ``atomic_path`` is already in charge of it and removes it. In a fresh process: signal handlers belong
    to the main thread, which a pytest-xdist worker does not run tests in."""
    r = subprocess.run([sys.executable, "-c", SIGNAL_AT_TEMP, "dir" if is_dir else "file", str(tmp_path)],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 130, r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


SIGNAL_AS_ANOTHER_ERROR = """
import os, signal, sys
from handcli import cli
from handcli.data import cache

real = cache.CacheWriter.__init__

def signal_turned_into_type_error(self, *args, **kwargs):
    try:  # what h5py does with a signal landing in its Cython type conversion (seen in CI)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):
            pass
    except KeyboardInterrupt:
        raise TypeError("Operation not defined for data type class") from None
    real(self, *args, **kwargs)

cache.CacheWriter.__init__ = signal_turned_into_type_error
sys.argv = ["handcli", "preprocess", "interhand", *sys.argv[1:]]
cli.main()
"""


def test_a_signal_that_surfaces_as_another_error_still_exits_130(synth_ih, tmp_path):
    """A KeyboardInterrupt a library turns into another exception is still the user's Ctrl-C: exit 130 and
    nothing left behind, not "internal error" and exit 1. In a fresh process (signal handlers, main thread)."""
    out = tmp_path / "c.h5"
    r = subprocess.run([sys.executable, "-c", SIGNAL_AS_ANOTHER_ERROR, str(synth_ih), "-o", str(out), "--scale",
                        "0.25"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "interrupted (SIGINT; it surfaced as TypeError" in r.stderr and "internal error" not in r.stderr
    assert list(tmp_path.iterdir()) == []
