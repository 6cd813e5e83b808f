"""bench/label_coverage.py on the tiny set, whose masks are rendered from its own hand models (nothing missed), and
on a copy whose hand models are shrunk (a rim of the masks missed, more without the one-pixel growth)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "label_coverage", Path(__file__).resolve().parents[1] / "bench" / "label_coverage.py")
label_coverage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(label_coverage)


def test_own_masks_are_covered(tiny_cache, capsys):
    from handcli.data.shards import open_cache

    with open_cache(tiny_cache) as c:
        cameras = [cam["name"] for cam in c.cameras()]
    assert label_coverage.cache_misses(tiny_cache, cameras, radius=1) == (0.0, 0.0)
    assert label_coverage.main([str(tiny_cache), "--cameras", ",".join(cameras)]) == 0
    assert "| tiny.h5 | 0.00 % | 0.00 % |" in capsys.readouterr().out


def test_shrunk_models_miss_a_rim(tiny_cache, tmp_path):
    import h5py

    from handcli.data.shards import open_cache

    thin = tmp_path / "thin.h5"
    shutil.copy(tiny_cache, thin)
    with h5py.File(thin, "r+") as f:
        for side in ("right", "left"):
            key = f"frames/{side}/vertices"
            if key in f:
                v = f[key][()]
                centre = v.mean(axis=-2, keepdims=True)
                f[key][...] = np.where(np.any(v != 0, axis=(-2, -1), keepdims=True), centre + 0.8 * (v - centre), v)
    with open_cache(thin) as c:
        cameras = [cam["name"] for cam in c.cameras()]
    grown, raw = label_coverage.cache_misses(thin, cameras, radius=1)
    assert 0.01 < grown < raw < 1.0


def test_hand_pixels_selects_the_named_hands():
    import torch

    from handcli.labels import LABELS, hand_pixels

    label = torch.tensor([[LABELS["background"], LABELS["right"]], [LABELS["left"], LABELS["object"]]], dtype=torch.uint8)
    assert hand_pixels(label, ["right", "left"]).tolist() == [[False, True], [True, False]]
    assert hand_pixels(label, ["left"]).tolist() == [[False, False], [True, False]]
    assert not hand_pixels(label, []).any()
