"""The one definition of each convention: projection, box geometry, selections, the recorded command line,
``--set`` parsing, the dataset registry and atomic rewrites."""

import os
import sys

import numpy as np
import pytest
import torch

from handcli.camera import (
    box_2d,
    box_corners,
    intrinsics,
    project,
    transform,
    world_to_cam_matrix,
    world_to_pixels,
)
from handcli.errors import InputError


def test_project_numpy_and_torch_agree_with_the_pinhole_formula():
    rng = np.random.default_rng(0)
    K = intrinsics(300.0, 280.0, 128.5, 90.25)
    K[0, 1] = 0.5  # skew takes part through K[:2, :2]
    p = rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 1.5], (50, 3))
    want = np.stack([(K[0, 0] * p[:, 0] + K[0, 1] * p[:, 1]) / p[:, 2] + K[0, 2],
                     K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]], 1)
    np.testing.assert_allclose(project(p, K), want, rtol=1e-12)
    got = project(torch.tensor(p), torch.tensor(K))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    # batch dimensions broadcast: (2, 25, 3) -> (2, 25, 2)
    np.testing.assert_allclose(project(p.reshape(2, 25, 3), K).reshape(50, 2), want)


def test_project_min_depth_clamps_points_behind_the_camera():
    K = intrinsics(100.0, 100.0, 10.0, 10.0)
    p = np.array([[0.1, 0.1, -1.0], [0.1, 0.1, 0.0]])
    uv = project(p, K, min_depth=1e-3)
    np.testing.assert_allclose(uv, [[10.0 + 100.0 * 0.1 / 1e-3, 10.0 + 100.0 * 0.1 / 1e-3]] * 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert not np.isfinite(project(p[1:], K)).all()


def test_world_to_pixels_is_transform_then_project():
    rng = np.random.default_rng(1)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    M = world_to_cam_matrix(R, [0.0, 0.0, 2.0])
    K = intrinsics(200.0, 200.0, 50.0, 40.0)
    x = rng.uniform(-0.3, 0.3, (10, 3))
    uv, z = world_to_pixels(torch.tensor(x), torch.tensor(K), torch.tensor(M))
    np.testing.assert_allclose(uv.numpy(), project(transform(M, x), K))
    np.testing.assert_allclose(z.numpy(), transform(M, x)[:, 2])


def test_box_corners_and_box_2d():
    lo, hi = np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])
    c = box_corners(lo, hi)
    assert c.shape == (8, 3) and len({tuple(r) for r in c}) == 8
    np.testing.assert_array_equal(c.min(0), lo)
    np.testing.assert_array_equal(c.max(0), hi)
    K = intrinsics(10.0, 10.0, 0.0, 0.0)
    b = box_2d(lo, hi, np.eye(4), K, width=100, height=100)
    uv = project(c, K)  # all in front of the camera and inside the image here
    np.testing.assert_allclose(b, np.concatenate([uv.min(0), uv.max(0)]), rtol=1e-6)


def test_selection_parsing():
    from handcli.data.selection import parse_names, parse_selection, parse_shard

    assert parse_selection("0-3,7, 9") == {0, 1, 2, 3, 7, 9}
    assert parse_selection("") is None and parse_names(None) is None
    assert parse_names(" a, b,,") == {"a", "b"}
    assert parse_shard(None) == (0, 1) and parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(InputError) as e:
            parse_shard(bad)
        assert e.value.field == "shard"
    with pytest.raises(InputError, match="bad selection"):
        parse_selection("5-2")


def test_preprocess_options_are_checked_by_the_library():
    from handcli.data.pipeline import check_options

    check_options(0.5, "auto", 2)
    for args, field in (((0.0, "auto"), "scale"), ((1.0, "mesh"), "mesh-from"), ((1.0, "auto", 0), "every")):
        with pytest.raises(InputError) as e:
            check_options(*args)
        assert e.value.field == field


def test_command_line_and_sets(monkeypatch):
    from handcli.commands.cmdline import command_line, parse_sets

    monkeypatch.setattr(sys, "argv", ["handcli", "train", "my cache.h5", "--set", "lr=1e-3"])
    assert command_line() == "handcli train 'my cache.h5' --set lr=1e-3"
    assert parse_sets(["lr=1e-3", "name=abc", "sizes=[1, 2]"]) == {"lr": 1e-3, "name": "abc", "sizes": [1, 2]}
    with pytest.raises(InputError) as e:
        parse_sets(["lr"])
    assert e.value.field == "set"


def test_configure_takes_a_dict_of_overrides():
    from handcli.methods.base import configure
    from handcli.methods.handnerf.model import HandNeRFConfig

    presets = {"fast": HandNeRFConfig()}
    cfg = configure(presets, "fast", 7, {"lr": 0.5})
    assert cfg.steps == 7 and cfg.lr == 0.5
    with pytest.raises(InputError, match="unknown config keys"):
        configure(presets, "fast", None, {"no_such_key": 1})


def test_dataset_registry_is_what_preprocess_runs(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from handcli import registry
    from handcli.cli import app

    with pytest.raises(InputError, match="unknown dataset"):
        registry.dataset_preprocess("nope")
    assert registry.dataset_preprocess("ho3d").__name__ == "preprocess_ho3d"
    calls = []

    def fake(root, out, **kw):
        calls.append((root, out, kw))
        return {"frames": 1, "views": 2, "dropped_frames": {}, "images_per_s": 3.0}

    monkeypatch.setattr(registry, "dataset_preprocess", lambda name: fake if name == "ho3d" else None)
    args = ["preprocess", "ho3d", str(tmp_path), "-o", str(tmp_path / "c.h5"), "--every", "2"]
    monkeypatch.setattr(sys, "argv", ["handcli", *args])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (root, out, kw), = calls
    assert kw["every"] == 2 and kw["workers"] == 1 and kw["mano_dir"] is None
    assert kw["command"] == "handcli " + " ".join(args)


def test_replace_file_is_all_or_nothing(tmp_path):
    from handcli.outputs import replace_file

    p = tmp_path / "config.json"
    replace_file(p, lambda tmp: tmp.write_text("one"))
    assert p.read_text() == "one"

    def fails(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replace_file(p, fails)
    assert p.read_text() == "one" and os.listdir(tmp_path) == ["config.json"]
