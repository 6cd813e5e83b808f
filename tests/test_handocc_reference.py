"""HandOcc's reference appearance: one crop per training camera (``reference_picks``), the run's own hands rendered
with the weighted mean of their codes (``HandOcc.default_codes``), and checkpoints with a single reference crop per
side still load and render as before."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from handcli.errors import InputError
from handcli.methods.handocc.method import crops_to_tensor, reference_picks
from handcli.methods.handocc.model import PRESETS, REF_CROPS, HandOcc

CFG = replace(PRESETS["fast"], crop_size=16, enc_channels=(4, 8), app_dim=4)


class _Hand:  # default_codes reads the side only
    def __init__(self, side):
        self.side = side


def test_reference_picks_by_hand():
    cameras = np.array([5, 5, 7, 7, 9, 7])
    ok = np.array([False, True, True, True, True, True])
    assert reference_picks(cameras, ok, 16).tolist() == [1, 2, 4]  # the first view with a crop of each camera
    assert reference_picks(cameras, ok, 2).tolist() == [1, 4]  # cameras 5, 7, 9 spread over two picks
    assert reference_picks(cameras, np.zeros(6, bool), 4).tolist() == []
    assert reference_picks(np.array([9, 5]), np.array([True, True]), 4).tolist() == [0, 1]  # view order kept


def test_default_code_is_the_weighted_mean_of_the_reference_codes():
    torch.manual_seed(0)
    model = HandOcc(CFG).eval()
    model.ref_crops.uniform_(0.0, 1.0)
    with torch.no_grad():
        model.ref_weight[0, :2] = torch.tensor([0.25, 0.75])
        model.ref_weight[1, 3] = 1.0
        right, left = model.default_codes([_Hand("right"), _Hand("left")])
        codes = model.app(model.ref_crops[0, :2])
        torch.testing.assert_close(right, 0.25 * codes[0] + 0.75 * codes[1])
        torch.testing.assert_close(left, model.app(model.ref_crops[1, 3:4])[0])
        assert not torch.allclose(codes[0], codes[1])  # so that the mean is a test
        model.ref_weight.zero_()  # a model never given weights: its first crop, as a single crop did before
        torch.testing.assert_close(model.default_codes([_Hand("right")])[0], model.app(model.ref_crops[0, :1])[0])


def test_a_checkpoint_with_one_reference_crop_per_side_loads():
    torch.manual_seed(1)
    model = HandOcc(CFG).eval()
    state = model.state_dict()
    old_crops = torch.rand(2, 3, CFG.crop_size, CFG.crop_size)  # the buffer before REF_CROPS
    state["ref_crops"] = old_crops
    del state["ref_weight"]
    fresh = HandOcc(CFG).eval()
    fresh.load_state_dict(state)
    assert fresh.ref_crops.shape == (2, REF_CROPS, 3, CFG.crop_size, CFG.crop_size)
    assert fresh.ref_weight[:, 0].tolist() == [1.0, 1.0] and float(fresh.ref_weight[:, 1:].abs().sum()) == 0.0
    with torch.no_grad():
        right, left = fresh.default_codes([_Hand("right"), _Hand("left")])
        torch.testing.assert_close(torch.stack([right, left]), fresh.app(old_crops))


def test_a_training_run_keeps_one_reference_crop_per_camera(tiny_cache):
    from test_handocc_refine import _tiny

    m = _tiny(tiny_cache)  # three training cameras
    w = m.model.ref_weight.cpu()
    for side in range(2):
        n = int((w[side] > 0).sum())
        assert 1 <= n <= 3 and torch.allclose(w[side][w[side] > 0], torch.full((n,), 1.0 / n))
    assert int((w[0] > 0).sum()) == 3  # every training camera sees the right hand of the tiny set


def test_training_code_is_the_mean_of_app_crops_random_crops(tiny_cache):
    from test_handocc_refine import _tiny

    m = _tiny(tiny_cache, app_crops=3)
    f = m.frames[0]
    hands = [m.model.hand(j, s) for s, j in m.joints[f]]
    with torch.no_grad():
        codes = m.train_codes(f, hands, torch.Generator().manual_seed(5))
        gen = torch.Generator().manual_seed(5)  # the same draws, by hand
        for h, code in zip(hands, codes):
            k = 0 if h.side == "right" else 1
            pool = m.crop_index[(m.frame_capture[f], k)]
            rows = pool[torch.randperm(len(pool), generator=gen)[:3].numpy()]
            assert len(rows) == min(3, len(pool)) >= 2
            torch.testing.assert_close(code, m.model.app(crops_to_tensor(m.crops[rows, k], m.device)).mean(0))
    with pytest.raises(InputError, match="app_crops"):
        replace(PRESETS["fast"], app_crops=0).check()
