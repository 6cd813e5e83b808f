"""Hand masks refined against the image (handcli.data.mask_refine, ``preprocess interhand --refine-masks``): a
mask rendered a few pixels off the imaged hand moves onto it, never by more than the band, keeps its hand
labels, and is deterministic; on a realistic synthetic set the cache's masks get closer to the true ones."""

from __future__ import annotations

import glob
import json

import cv2
import numpy as np
import pytest

from handcli.data.mask_refine import refine_labels


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _scene(shift: int = 3):
    """A dark noisy background with two skin-coloured blobs (right 1, left 2) and labels drawn ``shift`` pixels
    off to the right and thinner, as a mask rendered from an annotation that is off."""
    rng = np.random.default_rng(0)
    h, w = 96, 128
    img = np.clip(rng.normal(0.08, 0.01, (h, w, 3)), 0, 1)
    truth = np.zeros((h, w), np.uint8)
    cv2.ellipse(truth, (40, 48), (18, 30), 10, 0, 360, 1, -1)
    cv2.ellipse(truth, (88, 48), (16, 26), -10, 0, 360, 2, -1)
    skin = np.array([0.85, 0.62, 0.5]) * (0.8 + 0.2 * rng.random((h, w, 1)))
    img = np.where(truth[..., None] > 0, skin, img)
    rgb = (img * 255).astype(np.uint8)
    label = np.zeros_like(truth)
    cv2.ellipse(label, (40 + shift, 48), (16, 28), 10, 0, 360, 1, -1)
    cv2.ellipse(label, (88 + shift, 48), (14, 24), -10, 0, 360, 2, -1)
    return rgb, label, truth


def test_a_mask_off_the_hand_moves_onto_it_within_the_band():
    rgb, label, truth = _scene()
    band = 4
    out = refine_labels(rgb, label, band)
    assert out.shape == label.shape and out.dtype == label.dtype
    for k in (1, 2):
        before, after = _iou(label == k, truth == k), _iou(out == k, truth == k)
        assert after > 0.95 and after > before + 0.05, (k, before, after)
    # nothing farther than the band from the rendered silhouette changed
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    fg = (label > 0).astype(np.uint8)
    inner = cv2.erode(fg, kernel).astype(bool)
    outer = ~cv2.dilate(fg, kernel).astype(bool)
    assert np.array_equal(out[inner], label[inner]) and not out[outer].any()
    # new pixels take the label of their own hand, and the result does not depend on earlier calls
    assert not ((out == 2) & (truth == 1)).any() and not ((out == 1) & (truth == 2)).any()
    refine_labels(*_scene(shift=-2)[:2], 3)
    assert np.array_equal(refine_labels(rgb, label, band), out)


def test_nothing_to_refine_returns_the_labels():
    rgb, label, _ = _scene()
    assert np.array_equal(refine_labels(rgb, label, 0), label)
    empty = np.zeros_like(label)
    assert not refine_labels(rgb, empty, 3).any()
    with pytest.raises(ValueError):
        refine_labels(rgb[:10], label, 3)


def test_preprocess_refines_the_realistic_masks(tmp_path):
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.data.shards import open_cache
    from handcli.errors import InputError
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import realism_config

    root = tmp_path / "ih"
    write_interhand(root, InterHandSynthConfig(frames=2, cameras=3, mono_cameras=0, seqs=("right",), seed=1,
                                               black_frame=False, null_mano=False,
                                               realism=realism_config("realistic", "interhand")))
    ious = {}
    for band in (0, 3):
        out = tmp_path / f"c{band}.h5"
        preprocess_interhand(root, out, scale=0.5, refine_masks=band)
        inter = union = 0
        with open_cache(out) as c:
            assert json.loads(c.attrs["config"])["refine_masks"] == band
            vt, cams = c.view_table(), c.cameras()
            for j in range(len(vt["frame"])):
                cam = cams[int(vt["camera"][j])]["name"]
                m = cv2.imread(sorted(glob.glob(str(root / "handcli_gt" / "train" / "*" / "*" / f"cam{cam}" /
                                                    "mask*.png")))[int(vt["frame"][j])], cv2.IMREAD_UNCHANGED)
                lab = c.view(j)["label"] > 0
                true = cv2.resize((m > 0).astype(np.float32), lab.shape[::-1], interpolation=cv2.INTER_AREA) >= 0.5
                inter, union = inter + (lab & true).sum(), union + (lab | true).sum()
        ious[band] = inter / union
    assert ious[3] > ious[0] + 0.03 and ious[3] > 0.9, ious
    with pytest.raises(InputError) as e:
        preprocess_interhand(root, tmp_path / "bad.h5", scale=0.5, refine_masks=-1)
    assert e.value.field == "refine_masks" and not (tmp_path / "bad.h5").exists()
