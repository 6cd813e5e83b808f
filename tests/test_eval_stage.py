"""`handcli eval`: renders folder + cache -> metrics.json, against hand-computed and independent references."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import torch
import typer
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from handcli.commands.eval_cmd import eval_command
from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.eval.image_metrics import METRIC_CONVENTIONS
from handcli.eval.renders_eval import CacheDepth, evaluate_renders
from handcli.render.renders_folder import RendersWriter

app = typer.Typer()
app.command("eval")(eval_command)


@app.callback()
def _root() -> None:
    pass


def run_eval(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def strict_json(path):
    def bad(x):
        raise ValueError(f"invalid JSON constant {x}")

    return json.loads(path.read_text(), parse_constant=bad)


@pytest.fixture(scope="module")
def gt(synth_cache):
    """Three cache views (a one-hand portrait, a landscape, a two-hand view) with their GT and GT depth."""
    with Cache(synth_cache) as c:
        vt = c.view_table()
        cams = c.cameras()
        two = next(j for j in range(c.num_views) if len(c.frame(int(vt["frame"][j])).hands) == 2)
        land = next(j for j in range(c.num_views) if vt["width"][j] > vt["height"][j])
        depth = CacheDepth(c)
        out = []
        for j in (0, land, two):
            v = c.view(j)
            cam = cams[v["camera"]]
            img = np.where(v["label"][..., None] > 0, v["rgb"], 0).astype(np.uint8)
            out.append({"j": j, "img": img, "label": v["label"], "box2d": v["box2d"], "frame": v["frame"],
                        "key": c.frame(v["frame"]).key, "camera": cam["name"], "K": cam["K"],
                        "world_to_cam": cam["world_to_cam"],
                        "depth": depth.view(j, v["frame"], v["camera"], *v["label"].shape)})
    assert len({g["j"] for g in out}) == 3
    return out


def write_renders(path, cache, views, rgb=None, depth=None, semantic=None, kind="views", meta=None):
    """A renders folder of `views` (from the gt fixture); rgb/depth/semantic map a view dict to arrays."""
    w = RendersWriter(path, "test", None, cache, kind, {})
    for g in views:
        img = rgb(g) if rgb else g["img"]
        m = {"cache_view": g["j"], "frame": g["frame"], "frame_key": g["key"], "camera": g["camera"], "K": g["K"],
             "world_to_cam": g["world_to_cam"], "name": f"view{g['j']}"}
        m.update(meta(g) if meta else {})
        w.add(img.astype(np.float64) / 255.0, depth(g) if depth else g["depth"], (g["label"] > 0).astype(float),
              m, semantic=semantic(g) if semantic else None)
    w.close()
    return path


@pytest.fixture(autouse=True)
def no_lpips_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))


def test_identical_renders(tmp_path, synth_cache, gt):
    r = write_renders(tmp_path / "r", synth_cache, gt, semantic=lambda g: g["label"])
    out = tmp_path / "metrics.json"
    res = run_eval(r, synth_cache, "-o", out)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)  # only the path on stdout
    assert "PSNR-full" in res.stderr and "mean" in res.stderr and " inf " in res.stderr
    doc = strict_json(out)  # +inf PSNR must not produce Infinity in the file
    assert doc["schema"] == "handcli.metrics.images/1" and doc["num_views"] == 3
    for m in ("psnr_full", "psnr_box"):
        assert doc["mean"][m] is None and doc["infinite"][m] == [0, 1, 2] and doc["count"][m] == 3
        assert all(v[m] is None for v in doc["views"])
    assert doc["mean"]["ssim_gaussian"] == pytest.approx(1.0) and doc["mean"]["ssim_skimage_default"] == pytest.approx(1.0)
    assert doc["mean"]["depth_error_mm"] == 0.0
    assert doc["mean"]["depth_error_shown_mm"] == 0.0 and doc["mean"]["depth_shown"] == 1.0
    assert "DE where the renders show a surface: 0.00 mm, on 100.00 % of its pixels" in res.stderr
    assert doc["mean"]["semantic_iou"] == 100.0
    assert doc["mean"]["lpips_alex"] is None and doc["lpips"]["available"] is False
    assert "AlexNet backbone weights not found" in doc["lpips"]["info"]
    assert any("lpips_alex is null" in n for n in doc["notes"])
    assert set(doc["conventions"]) == set(doc["mean"]) and all(doc["conventions"][m] == METRIC_CONVENTIONS[m]
                                                               for m in doc["conventions"])
    assert [v["cache_view"] for v in doc["views"]] == [g["j"] for g in gt]
    sheet = cv2.imread(str(tmp_path / "metrics_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 3 * 334  # three rows


def test_empty_render_pixels_count_at_full_depth_in_de_only(tmp_path, synth_cache, gt):
    """A render that leaves part of the GT mask empty (depth 0): DE counts those pixels at their whole depth,
    depth_error_shown_mm leaves them out and depth_shown is the share it shows."""
    def holed(g):
        d = g["depth"].copy()
        rows = np.nonzero((g["label"] > 0).any(1))[0]
        d[rows[: len(rows) // 4]] = 0.0  # the top quarter of the hand's rows shows nothing
        return d

    r = write_renders(tmp_path / "r", synth_cache, gt, depth=holed)
    doc = evaluate_renders(r, synth_cache).doc
    for g, v in zip(gt, doc["views"]):
        valid = (g["label"] > 0) & (g["depth"] > 0)
        shown = valid & (holed(g) > 0)
        assert v["depth_shown"] == pytest.approx(shown.sum() / valid.sum()) and 0.5 < v["depth_shown"] < 1.0
        assert v["depth_error_shown_mm"] == pytest.approx(0.0, abs=1e-6)
        assert v["depth_error_mm"] == pytest.approx(1000 * g["depth"][valid & ~shown].sum() / valid.sum(), rel=1e-6)


def test_noise_psnr_ssim_and_depth_offset(tmp_path, synth_cache, gt):
    rng = np.random.default_rng(7)
    noisy = {}
    for g in gt:
        fg = g["label"] > 0
        noise = rng.integers(-25, 26, g["img"].shape) * fg[..., None]  # noise on the hand only
        noisy[g["j"]] = np.clip(g["img"].astype(int) + noise, 0, 255).astype(np.uint8)
    r = write_renders(tmp_path / "r", synth_cache, gt, rgb=lambda g: noisy[g["j"]],
                      depth=lambda g: g["depth"] + np.float32(0.005) * (g["label"] > 0))
    res = evaluate_renders(r, synth_cache)
    doc = res.doc
    for g, v in zip(gt, doc["views"]):
        p, t = noisy[g["j"]] / 255.0, g["img"] / 255.0
        H, W = g["label"].shape
        x0, y0, x1, y1 = g["box2d"]
        vv, uu = np.mgrid[0:H, 0:W]
        box = (uu >= x0) & (uu <= x1) & (vv >= y0) & (vv <= y1)
        mse_full = np.mean((p - t) ** 2)
        mse_box = np.mean((p[box] - t[box]) ** 2)
        assert v["psnr_full"] == pytest.approx(-10 * math.log10(mse_full), abs=1e-9)
        assert v["psnr_box"] == pytest.approx(-10 * math.log10(mse_box), abs=1e-9)
        # black, exact background: PSNR_full = PSNR_box - 10 log10(box fraction) > PSNR_box
        assert v["psnr_full"] - v["psnr_box"] == pytest.approx(-10 * math.log10(box.mean()), abs=1e-9)
        assert v["psnr_full"] > v["psnr_box"]
        ref_g = structural_similarity(p, t, channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
        assert v["ssim_gaussian"] == pytest.approx(ref_g, abs=1e-9)
        assert v["ssim_skimage_default"] == pytest.approx(structural_similarity(p, t, channel_axis=-1, data_range=1),
                                                          abs=1e-9)
        assert v["ssim_gaussian"] < 1.0
        assert v["depth_error_mm"] == pytest.approx(5.0, abs=1e-3)
        assert v["depth_error_shown_mm"] == pytest.approx(5.0, abs=1e-3) and v["depth_shown"] == 1.0
    for m in ("psnr_full", "psnr_box", "ssim_gaussian", "depth_error_mm"):
        assert doc["mean"][m] == pytest.approx(np.mean([v[m] for v in doc["views"]]))
    assert doc["infinite"] == {} and "semantic_iou" not in doc["mean"]
    assert len(res.sheet) == 3 and res.sheet_labels[0].startswith("view")


def test_gt_depth_matches_trimesh_ray_casting(synth_cache, gt):
    """The rasterized GT z-depth agrees with trimesh's ray-triangle intersection at sampled pixels."""
    import trimesh

    g = gt[2]  # two hands
    with Cache(synth_cache) as c:
        rec = c.frame(g["frame"])
        meshes = [trimesh.Trimesh(h.vertices, c.hand_model(s)["faces"], process=False) for s, h in rec.hands.items()]
    mesh = trimesh.util.concatenate(meshes)
    D = g["depth"]
    assert ((D > 0) == (g["label"] > 0)).all()  # same meshes as the cache's masks
    rng = np.random.default_rng(0)
    fg = np.argwhere(D > 0)
    pix = np.concatenate([fg[rng.choice(len(fg), 40, replace=False)], [[0, 0], [5, 300]]])  # (row, col)
    R, t = g["world_to_cam"][:3, :3], g["world_to_cam"][:3, 3]
    eye = -R.T @ t
    rays_cam = np.linalg.solve(g["K"], np.stack([pix[:, 1], pix[:, 0], np.ones(len(pix))]).astype(float)).T
    dirs = rays_cam @ R  # camera -> world directions (rows: R^T d)
    locs, idx, _ = trimesh.ray.ray_triangle.RayMeshIntersector(mesh).intersects_location(
        np.repeat(eye[None], len(pix), 0), dirs, multiple_hits=True)
    z_hit = (locs - eye) @ R[2]  # camera z of each hit
    for k, (row, col) in enumerate(pix):
        zs = z_hit[idx == k]
        if len(zs):
            assert D[row, col] == pytest.approx(zs.min(), abs=2e-6)
        else:
            assert D[row, col] == 0


def test_depth_targets_file(tmp_path, synth_cache, gt):
    with Cache(synth_cache) as c:
        vt = c.view_table()
        depth = CacheDepth(c)
        n = int((vt["height"] * vt["width"]).sum())
        flat = np.zeros(n, np.float32)
        for j in range(c.num_views):
            v = c.view(j)
            off = int(vt["offset"][j])
            flat[off:off + v["label"].size] = depth.view(j, v["frame"], v["camera"], *v["label"].shape).ravel()
    tpath = tmp_path / "depth.h5"
    with h5py.File(tpath, "w") as f:
        f.attrs["schema"] = "handcli.targets.depth/1"
        f.attrs["num_views"] = len(vt["offset"])
        f["views/offset"] = vt["offset"]
        f["views/height"] = vt["height"]
        f["views/width"] = vt["width"]
        f["depth"] = flat + np.float32(0.002) * (flat > 0)  # targets 2 mm behind the cache meshes
    r = write_renders(tmp_path / "r", synth_cache, gt)
    doc = evaluate_renders(r, synth_cache, depth_path=tpath).doc
    assert "depth targets file" in doc["ground_truth"]["depth"] and doc["inputs"]["depth"] == str(tpath)
    assert all(v["depth_error_mm"] == pytest.approx(2.0, abs=1e-3) for v in doc["views"])
    with h5py.File(tpath, "a") as f:
        f.attrs["schema"] = "handcli.targets.features/1"
    with pytest.raises(InputError) as e:
        evaluate_renders(r, synth_cache, depth_path=tpath)
    assert e.value.field == "schema" and e.value.path == str(tpath)
    with pytest.raises(InputError, match="not found"):
        evaluate_renders(r, synth_cache, depth_path=tmp_path / "none.h5")


def test_semantic_iou_hand_computed(tmp_path, synth_cache, gt):
    g = gt[2]  # labels 1 (right) and 2 (left)
    pred = g["label"].copy()
    pred[pred == 1], pred[pred == 2] = 2, 1  # swapping the hands: both are "hand"
    H = pred.shape[0]
    pred[: H // 2][pred[: H // 2] > 0] = 0  # drop the hand in the upper half
    r = write_renders(tmp_path / "r", synth_cache, [g], semantic=lambda _: pred)
    v = evaluate_renders(r, synth_cache).doc["views"][0]
    P, G = pred > 0, g["label"] > 0
    iou_hand = (P & G).sum() / (P | G).sum()
    iou_bg = (~P & ~G).sum() / (~P | ~G).sum()
    assert v["semantic_classes"] == 2
    assert v["semantic_iou"] == pytest.approx(100 * (iou_hand + iou_bg) / 2)
    assert v["semantic_iou"] < 100


def test_lpips_with_weight_files(tmp_path, synth_cache, gt):
    from handcli.eval.lpips import load_lpips
    from handcli.nn.alexnet import AlexNetFeatures

    g = torch.Generator().manual_seed(0)
    backbone = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in AlexNetFeatures().state_dict().items()}
    lin = {f"lin{k}.model.1.weight": torch.rand((1, c, 1, 1), generator=g)
           for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(lin, tmp_path / "alex.pth")
    rng = np.random.default_rng(3)
    noisy = np.clip(gt[0]["img"].astype(int) + rng.integers(-30, 31, gt[0]["img"].shape), 0, 255).astype(np.uint8)
    r = write_renders(tmp_path / "r", synth_cache, gt[:2], rgb=lambda x: noisy if x is gt[0] else x["img"])
    doc = evaluate_renders(r, synth_cache, lpips_weights=tmp_path / "alexnet.pth",
                           lpips_lin_weights=tmp_path / "alex.pth").doc
    model, _ = load_lpips(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    assert doc["lpips"]["available"] is True
    assert doc["views"][0]["lpips_alex"] == pytest.approx(model.distance(noisy / 255.0, gt[0]["img"] / 255.0),
                                                          rel=1e-6)
    assert doc["views"][0]["lpips_alex"] > 0 and doc["views"][1]["lpips_alex"] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(InputError):
        evaluate_renders(r, synth_cache, lpips_weights=tmp_path / "missing.pth",
                         lpips_lin_weights=tmp_path / "alex.pth")


def test_orbit_views_are_skipped(tmp_path, synth_cache, gt):
    w = RendersWriter(tmp_path / "r", "test", None, synth_cache, "views", {})
    g = gt[0]
    w.add(g["img"] / 255.0, g["depth"], np.ones_like(g["depth"]), {"K": g["K"], "world_to_cam": g["world_to_cam"]})
    w.close()
    with pytest.raises(InputError) as e:
        evaluate_renders(tmp_path / "r", synth_cache)
    assert e.value.field == "views" and "nothing to evaluate" in str(e.value)
    w = RendersWriter(tmp_path / "r2", "test", None, synth_cache, "views", {})
    w.add(g["img"] / 255.0, g["depth"], np.ones_like(g["depth"]), {"K": g["K"], "world_to_cam": g["world_to_cam"]})
    w.add(g["img"] / 255.0, g["depth"], np.ones_like(g["depth"]),
          {"K": g["K"], "world_to_cam": g["world_to_cam"], "cache_view": g["j"]})
    w.close()
    doc = evaluate_renders(tmp_path / "r2", synth_cache).doc
    assert doc["num_views"] == 1 and doc["num_skipped"] == 1 and doc["skipped"][0]["index"] == 0
    assert doc["views"][0]["index"] == 1


def _shift_K(g):
    K = g["K"].copy()
    K[0, 2] += 3
    return {"K": K}


@pytest.mark.parametrize("meta, field", [
    (lambda g: {"cache_view": 10_000}, "views[0].cache_view"),
    (lambda g: {"frame": g["frame"] + 1}, "views[0].frame"),
    (lambda g: {"frame_key": "train/Capture9/x/1"}, "views[0].frame_key"),
    (lambda g: {"camera": "499999"}, "views[0].camera"),
    (_shift_K, "views[0].K"),
])
def test_cache_mismatch_is_input_error(tmp_path, synth_cache, gt, meta, field):
    r = write_renders(tmp_path / "r", synth_cache, gt[:1], meta=meta)
    out = tmp_path / "m.json"
    res = run_eval(r, synth_cache, "-o", out)
    assert isinstance(res.exception, InputError), res.output
    assert res.exception.field == field and res.exception.path == str(r / "renders.json")
    assert not out.exists() and not (tmp_path / "m_sheet.png").exists()
    assert not list(tmp_path.glob(".m*"))  # no temporary left behind


def test_bad_inputs_write_nothing(tmp_path, synth_cache, gt):
    r = write_renders(tmp_path / "r", synth_cache, gt[:1])
    out = tmp_path / "metrics.json"
    # a render whose size does not match the cache view
    small = cv2.resize(gt[0]["img"], (100, 150))
    d = r / "renders.json"
    doc = json.loads(d.read_text())
    doc["views"][0].update(width=100, height=150)
    d.write_text(json.dumps(doc))
    cv2.imwrite(str(r / "rgb/0000.png"), small[..., ::-1])
    res = run_eval(r, synth_cache, "-o", out)
    assert isinstance(res.exception, InputError) and res.exception.field == "views[0].width"
    assert "100x150" in str(res.exception) and not out.exists()
    # malformed renders.json
    d.write_text("{not json")
    res = run_eval(r, synth_cache, "-o", out)
    assert isinstance(res.exception, InputError) and str(d) in str(res.exception)
    assert not out.exists() and not (tmp_path / "metrics_sheet.png").exists()
    # not a cache
    r2 = write_renders(tmp_path / "r2", synth_cache, gt[:1])
    res = run_eval(r2, d, "-o", out)
    assert isinstance(res.exception, InputError) and not out.exists()
    # refusing to overwrite without --force
    assert run_eval(r2, synth_cache, "-o", out).exit_code == 0
    before = out.read_bytes()
    res = run_eval(r2, synth_cache, "-o", out)
    assert isinstance(res.exception, InputError) and "--force" in str(res.exception) and out.read_bytes() == before
    assert run_eval(r2, synth_cache, "-o", out, "--force").exit_code == 0


def test_command_module_imports_only_typer():
    code = ("import sys; import handcli.commands.eval_cmd; "
            "bad = [m for m in ('torch', 'numpy', 'h5py', 'cv2') if m in sys.modules]; assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
