"""Nothing a user had is removed: --force refuses inputs and foreign folders, validates inputs before it
touches the old output, and replaces it only once the new one is complete; kill -9 leftovers are cleaned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from handcli.errors import InputError
from handcli.outputs import atomic_path, check_writable, clean_stale, mark_artifact

TINY_SET = ["--set", "rays_per_step=64", "--set", "n_samples=8", "--set", "hidden=16", "--set", "layers=2",
            "--set", "skips=[]", "--set", "latent_dim=4", "--set", "ec_hidden=8", "--set", "ec_layers=2",
            "--threads", "1"]


def run_cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    from handcli import cli

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture()
def run1(tiny_cache, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", tiny_cache, "-o", run, "--steps", "1", *TINY_SET], monkeypatch, capsys)
    assert code == 0, err
    return run


def test_force_refuses_inputs_and_foreign_folders(tiny_cache, run1, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "data" / "cache.h5"
    cache.parent.mkdir()
    shutil.copy(tiny_cache, cache)
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"precious")
    keep = {p: snapshot(p) for p in (cache.parent, user, run1)}
    cases = [
        (["train", cache, "-o", cache, "--force"], "output is an input"),
        (["train", cache, "-o", cache.parent, "--force"], "contains an input"),
        (["train", cache, "-o", user, "--force"], "not a handcli artifact"),
        (["targets", "depth", cache, "-o", cache, "--force"], "output is an input"),
        (["targets", "depth", cache, "-o", user, "--force"], "folder"),
        (["render", run1, cache, "-o", user, "--force"], "not a handcli artifact"),
        (["render", run1, cache, "-o", run1, "--force"], "output is an input"),
        (["render", run1, cache, "-o", run1 / "snapshots", "--force"], "inside an input"),
        (["adapt", run1, cache, "-o", run1, "--force"], "output is an input"),
        (["train", tmp_path / "typo.h5", "-o", run1, "--force", *TINY_SET], "typo.h5"),  # old run kept
    ]
    for args, msg in cases:
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 2 and msg in err and out == "", (args[:1], err)
    for p, before in keep.items():
        assert snapshot(p) == before, p
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_force_replaces_a_run_only_when_the_new_one_is_complete(tiny_cache, run1, tmp_path, monkeypatch, capsys):
    import json
    import signal
    import time

    before = snapshot(run1)
    proc = subprocess.Popen([sys.executable, "-m", "handcli.cli", "train", str(tiny_cache), "-o", str(run1), "--force",
                             "--steps", "100000", "--log-every", "1", *TINY_SET], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not any(p.stat().st_size for p in tmp_path.glob(".run.*.tmp/metrics.jsonl")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < 240
        time.sleep(0.01)
    assert snapshot(run1) == before  # the new run trains beside the old one
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert snapshot(run1) == before and list(tmp_path.glob(".run.*.tmp"))
    code, _, err = run_cli(["train", tiny_cache, "-o", run1, "--force", "--steps", "2", *TINY_SET], monkeypatch,
                           capsys)
    assert code == 0 and "stale" in err, err
    assert json.loads((run1 / "complete.json").read_text())["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_atomic_path_kinds_and_stale_cleanup(tmp_path):
    out = tmp_path / "renders"
    with atomic_path(out, is_dir=True, kind="renders") as tmp:
        (tmp / "a.png").write_bytes(b"1")
    assert (out / "a.png").is_file() and os.stat(out).st_mode & 0o055  # usual permissions, not mkdtemp's 0700
    with pytest.raises(InputError, match="handcli renders folder"):
        check_writable(out, True, kind="meshes", is_dir=True)
    with pytest.raises(InputError, match="refusing to replace a folder with a file"):
        check_writable(out, True, is_dir=False)
    with atomic_path(out, force=True, is_dir=True, kind="renders") as tmp:
        (tmp / "b.png").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == [".handcli-artifact", "b.png"]
    # a failure keeps the old output and leaves no temporary
    with pytest.raises(RuntimeError), atomic_path(out, force=True, is_dir=True, kind="renders") as tmp:
        (tmp / "c.png").write_bytes(b"3")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [".handcli-artifact", "b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renders"]
    # leftovers of a kill -9: temporaries of dead writers go, a live writer's stay, a mid-swap backup is restored
    f = tmp_path / "cache.h5"
    dead, live = dead_pid(), os.getppid()
    (tmp_path / f".cache.h5.{dead}.abc.tmp").write_bytes(b"partial")
    (tmp_path / f".cache.h5.{live}.xyz.tmp").write_bytes(b"someone else is writing")
    (tmp_path / f".cache.h5.{dead}.old").write_bytes(b"the user's cache")
    gone = clean_stale(f)
    assert [p.name for p in gone] == [f".cache.h5.{dead}.abc.tmp"]
    assert f.read_bytes() == b"the user's cache" and (tmp_path / f".cache.h5.{live}.xyz.tmp").exists()
    # a folder made by someone else is not replaced, whatever its name
    (tmp_path / "mine").mkdir()
    with pytest.raises(InputError, match="not a handcli artifact"):
        check_writable(tmp_path / "mine", True, kind="renders", is_dir=True)
    mark_artifact(tmp_path / "mine", "renders")
    check_writable(tmp_path / "mine", True, kind="renders", is_dir=True)


def test_a_failure_while_the_run_folder_is_made_leaves_nothing(tiny_cache, run1, tmp_path, monkeypatch, capsys):
    """The first checkpoint cannot be written (disk full, a signal): neither the old run nor a temporary stays
    changed or behind, for a new run and for --force."""
    from handcli.methods import trainer

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer, "save_atomic", full_disk)
    before = snapshot(run1)
    for out, extra in ((tmp_path / "new", []), (run1, ["--force"])):
        code, _, err = run_cli(["train", tiny_cache, "-o", out, "--steps", "1", *extra, *TINY_SET], monkeypatch,
                               capsys)
        assert code != 0, err
        assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "new").exists()
    assert snapshot(run1) == before
