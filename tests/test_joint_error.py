"""bench/joint_error.py's mean joint error by hand, and the exact-annotation copy of a synthetic InterHand set it
preprocesses (handcli.synth.interhand.exact_annotation_copy)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from handcli.errors import InputError
from handcli.synth.interhand import exact_annotation_copy

_spec = importlib.util.spec_from_file_location(
    "joint_error", Path(__file__).resolve().parents[1] / "bench" / "joint_error.py")
joint_error = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(joint_error)


def test_mean_joint_error_by_hand():
    err = np.zeros((1, 2, 21, 3))
    err[0, 0, :, 0] = 0.003  # frame 0: every joint 3 mm off along x
    err[0, 1, :, 0] = 0.001  # frame 1: 1 mm
    assert joint_error.mean_error_mm(err) == pytest.approx(2.0)
    # the common offset over the frames is 2 mm: 1 mm is left in each frame
    assert joint_error.mean_error_mm(err, remove_common=True) == pytest.approx(1.0)
    err[0, 1, :, :2] = [0.0, 0.004]  # frame 1: 4 mm along y; the mean offset is (1.5, 2) mm, 2.5 mm from each
    assert joint_error.mean_error_mm(err) == pytest.approx(3.5)
    assert joint_error.mean_error_mm(err, remove_common=True) == pytest.approx(2.5)


def test_exact_annotation_copy(tmp_path):
    root = tmp_path / "ih"
    ann = root / "annotations" / "train"
    ann.mkdir(parents=True)
    (root / "handcli_gt").mkdir()
    (root / "images").mkdir()
    for name, value in (("data", "d"), ("camera", "c"), ("joint_3d", "annotated"), ("MANO_NeuralAnnot", "annotated")):
        (ann / f"InterHand2.6M_train_{name}.json").write_text(json.dumps(value))
    for name in ("joint_3d", "MANO_NeuralAnnot"):
        (root / "handcli_gt" / f"InterHand2.6M_train_{name}.json").write_text(json.dumps("exact"))
    out = exact_annotation_copy(root, tmp_path / "exact")
    read = lambda p: json.loads(p.read_text())  # noqa: E731
    for name, value in (("data", "d"), ("camera", "c"), ("joint_3d", "exact"), ("MANO_NeuralAnnot", "exact")):
        assert read(out / "annotations" / "train" / f"InterHand2.6M_train_{name}.json") == value
        assert read(ann / f"InterHand2.6M_train_{name}.json") == {"joint_3d": "annotated",
                                                                  "MANO_NeuralAnnot": "annotated"}.get(name, value)
    assert (out / "images").is_symlink() and (out / "images").resolve() == (root / "images").resolve()
    with pytest.raises(InputError, match="no exact annotations"):
        exact_annotation_copy(tmp_path / "exact" / "annotations", tmp_path / "other")
