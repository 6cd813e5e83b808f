"""Shared fixtures: one tiny synthetic InterHand dataset and its cache per test session (per xdist worker)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see handcli/cli.py)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

TINY = dict(frames=4, cameras=4, mono_cameras=1, seqs=("right", "interacting"), seed=3)


@pytest.fixture(scope="session")
def synth_ih(tmp_path_factory) -> Path:
    """A tiny synthetic InterHand2.6M root: 2 sequences x 4 frames x (3 portrait + 1 landscape + 1 mono)."""
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    root = tmp_path_factory.mktemp("synth") / "ih"
    write_interhand(root, InterHandSynthConfig(**TINY))
    return root


@pytest.fixture(scope="session")
def synth_cache(synth_ih, tmp_path_factory) -> Path:
    """The tiny dataset preprocessed at full resolution."""
    from handcli.data.interhand_preprocess import preprocess_interhand

    out = tmp_path_factory.mktemp("cache") / "cache.h5"
    preprocess_interhand(synth_ih, out)
    return out


@pytest.fixture(scope="session")
def tiny_cache(synth_ih, tmp_path_factory) -> Path:
    """The tiny dataset at quarter resolution (84x128 views) for training tests."""
    from handcli.data.interhand_preprocess import preprocess_interhand

    out = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    preprocess_interhand(synth_ih, out, scale=0.25)
    return out


@pytest.fixture(scope="session")
def tiny_depth(tiny_cache, tmp_path_factory) -> Path:
    from handcli.targets.depth import compute_depth

    out = tmp_path_factory.mktemp("tinyd") / "depth.h5"
    compute_depth(tiny_cache, out, command="test")
    return out


@pytest.fixture(scope="session")
def dex_cache(tmp_path_factory) -> Path:
    """Tiny synthetic DexYCB (2 subjects: right and left hands, 3 cameras) at quarter resolution."""
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    d = tmp_path_factory.mktemp("hodex")
    write_dexycb(d / "dex", DexYCBSynthConfig(subjects=2, seqs=1, frames=3, cameras=3, seed=5))
    preprocess_dexycb(d / "dex", d / "cache.h5", scale=0.25)
    return d / "cache.h5"


@pytest.fixture(scope="session")
def occ_run(tiny_cache, tmp_path_factory) -> Path:
    """A HandOcc run trained for 40 steps on the tiny cache (about 10 s): coloured, hand-shaped renders."""
    from tests.cli_run import HANDOCC_SMALL, handcli

    run = tmp_path_factory.mktemp("occ_run") / "run"
    r = handcli("train", tiny_cache, "-o", run, "--method", "handocc", "--steps", "40", *HANDOCC_SMALL,
                "--set", "lr=5e-3")
    assert r.returncode == 0, r.stderr
    return run


NO_CUDA = "CUDA not available on this machine: the cuda variant runs where a GPU is (make gpu-check)"


class NoCapabilities:
    """A method that can do nothing beyond the contract's minimum (``stub_method_run``)."""

    method = "stub"
    capabilities = frozenset()

    @classmethod
    def from_run(cls, run, cache, device):
        return cls()


@pytest.fixture
def stub_method_run(tmp_path, monkeypatch):
    """A run folder of ``NoCapabilities``, registered as the method "stub" for this test: for the commands' dispatch
    on what a method can do, without training one."""
    from handcli import registry
    from handcli.methods.base import write_run_config
    from handcli.methods.handocc.model import PRESETS

    monkeypatch.setitem(registry.METHODS, "stub", f"{NoCapabilities.__module__}:NoCapabilities")
    run = tmp_path / "run_stub"
    run.mkdir()
    write_run_config(run, "stub", "fast", PRESETS["fast"], {"cache": "x.h5"}, 0, "test")
    return run


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    """The device a test runs on: "cpu" always, "cuda" when present (skipped with its reason otherwise;
    `-rs` groups these skips on one line). `pytest -m cuda` selects the CUDA variants."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
    return torch.device(request.param)


def pytest_report_header(config):
    return f"devices: cpu{', cuda (' + torch.cuda.get_device_name(0) + ')' if torch.cuda.is_available() else ''}" \
           f"{'' if torch.cuda.is_available() else ' (no CUDA: cuda-parametrised tests are skipped)'}"
