"""``handcli export nerfstudio``: transforms.json fields, files, the OpenGL convention (cache joints reprojected
through the exported cameras land where the cache projects them) and the train / held-out split."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from handcli.camera import project, transform
from handcli.cli import app
from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.export.nerfstudio import project_nerfstudio


def _ns_ray_direction(frame: dict, uv: np.ndarray) -> np.ndarray:
    """nerfstudio's ray directions (world, unnormalised) through handcli pixel coordinates uv (N, 2):
    pixel index i has nerfstudio coordinate i + 0.5; camera looks down -z, image y up (Cameras.generate_rays)."""
    x = (uv[:, 0] + 0.5 - frame["cx"]) / frame["fl_x"]
    y = -(uv[:, 1] + 0.5 - frame["cy"]) / frame["fl_y"]
    d_cam = np.stack([x, y, -np.ones_like(x)], axis=1)
    return d_cam @ np.asarray(frame["transform_matrix"])[:3, :3].T


def test_transforms_json_matches_the_cache(tiny_cache, tmp_path):
    out = tmp_path / "ns"
    res = CliRunner().invoke(app, ["export", "nerfstudio", str(tiny_cache), "-o", str(out), "--eval-cameras",
                                   "400009"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(out / "transforms.json")]
    doc = json.loads((out / "transforms.json").read_text())
    with Cache(tiny_cache) as c:
        assert len(doc["frames"]) == c.num_views
        cams = {cam["name"]: cam for cam in c.cameras()}
        max_err = 0.0
        for f in doc["frames"]:
            for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
                assert isinstance(f[key], (int, float)) and f[key] > 0
            img = cv2.imread(str(out / f["file_path"]))
            mask = cv2.imread(str(out / f["mask_path"]), cv2.IMREAD_GRAYSCALE)
            assert img.shape == (f["h"], f["w"], 3) and mask.shape == (f["h"], f["w"])
            M = np.asarray(f["transform_matrix"])
            assert M.shape == (4, 4) and np.allclose(M[3], [0, 0, 0, 1])
            assert np.allclose(M[:3, :3] @ M[:3, :3].T, np.eye(3), atol=1e-9) and np.linalg.det(M[:3, :3]) > 0
            j = f["handcli"]["cache_view"]
            v = c.view(j)
            assert np.array_equal(mask > 0, v["label"] > 0)
            assert np.array_equal(img[..., ::-1], v["rgb"])
            cam = cams[f["handcli"]["camera"]]
            rec = c.frame(f["handcli"]["frame"])
            joints = np.concatenate([h.joints for h in rec.hands.values()])  # (J, 3) world
            uv_cache = project(transform(cam["world_to_cam"], joints), cam["K"])
            uv_ns = project_nerfstudio(joints, f)
            max_err = max(max_err, float(np.abs(uv_ns - uv_cache).max()))
            # independently of project_nerfstudio: nerfstudio's ray through the cache pixel passes the joint
            d = _ns_ray_direction(f, uv_cache)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            rel = joints - M[:3, 3]
            assert (np.einsum("ij,ij->i", rel, d) > 0).all()  # in front of the camera (OpenGL looks down -z)
            off = rel - np.einsum("ij,ij->i", rel, d)[:, None] * d
            assert np.linalg.norm(off, axis=1).max() < 1e-6
        assert max_err < 0.5 and max_err < 1e-6
    held = [f["file_path"] for f in doc["frames"] if f["handcli"]["camera"] == "400009"]
    assert held and doc["val_filenames"] == held == doc["test_filenames"]
    assert set(doc["train_filenames"]) | set(held) == {f["file_path"] for f in doc["frames"]}
    assert not set(doc["train_filenames"]) & set(held)


def test_selection_and_errors(tiny_cache, tmp_path):
    res = CliRunner().invoke(app, ["export", "nerfstudio", str(tiny_cache), "-o", str(tmp_path / "a"), "--cameras",
                                   "400002", "--frames", "0-1", "--black-background"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a" / "transforms.json").read_text())
    assert {f["handcli"]["camera"] for f in doc["frames"]} == {"400002"}
    assert {f["handcli"]["frame"] for f in doc["frames"]} <= {0, 1} and "train_filenames" not in doc
    f = doc["frames"][0]
    img = cv2.imread(str(tmp_path / "a" / f["file_path"]))
    mask = cv2.imread(str(tmp_path / "a" / f["mask_path"]), cv2.IMREAD_GRAYSCALE)
    assert img[mask == 0].max() == 0 and img[mask > 0].max() > 0
    for args, field in ((["--cameras", "nope"], "cameras/name"),
                        (["--cameras", "400002", "--eval-cameras", "400002"], "eval_cameras")):
        res = CliRunner().invoke(app, ["export", "nerfstudio", str(tiny_cache), "-o", str(tmp_path / "b"), *args])
        assert isinstance(res.exception, InputError) and res.exception.field == field
        assert not (tmp_path / "b").exists()
    res = CliRunner().invoke(app, ["export", "nerfstudio", str(tiny_cache), "-o", str(tmp_path / "a")])
    assert isinstance(res.exception, InputError) and "--force" in str(res.exception)
