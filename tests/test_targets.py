"""The `targets` stage: pseudo-depth maps and 2D teacher features (HandNeRF, Guo §3.3-3.4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from handcli.commands.targets_cmd import app
from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.targets.depth import z_to_ray_distance
from handcli.targets.features import (
    fit_pca,
    l2_normalize,
    load_teacher,
    masked_image,
    project_pca,
    teacher_features,
)
from handcli.targets.store import DepthTargets, FeatureTargets, pixel_cells, sample_features

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(args: list[str]):
    """Run the targets app; return the result, re-raising any exception."""
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    """Half-resolution cache of two interacting-hands frames, one portrait and one landscape camera."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    root = tmp_path_factory.mktemp("tg") / "ih"
    write_interhand(root, InterHandSynthConfig(frames=2, cameras=2, mono_cameras=0, seqs=("interacting",),
                                               black_frame=False, null_mano=False, seed=5))
    out = root.parent / "cache.h5"
    preprocess_interhand(root, out, scale=0.5)
    return out


@pytest.fixture(scope="module")
def depth_file(small_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tgd") / "depth.h5"
    res = invoke(["depth", small_cache, "-o", out])
    assert res.exit_code == 0 and res.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def eff_file(small_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tgf") / "feats.h5"
    res = invoke(["features", small_cache, "-o", out, "--dim", "32"])
    assert res.exit_code == 0 and res.stdout.strip() == str(out)
    return out


def official_vits8_shapes() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of dino_deitsmall8_pretrain.pth, written out independently of handcli.nn.vit."""
    s = {"cls_token": (1, 1, 384), "pos_embed": (1, 785, 384), "patch_embed.proj.weight": (384, 3, 8, 8),
         "patch_embed.proj.bias": (384,), "norm.weight": (384,), "norm.bias": (384,)}
    for i in range(12):
        b = f"blocks.{i}."
        s.update({b + "norm1.weight": (384,), b + "norm1.bias": (384,), b + "attn.qkv.weight": (1152, 384),
                  b + "attn.qkv.bias": (1152,), b + "attn.proj.weight": (384, 384), b + "attn.proj.bias": (384,),
                  b + "norm2.weight": (384,), b + "norm2.bias": (384,), b + "mlp.fc1.weight": (1536, 384),
                  b + "mlp.fc1.bias": (1536,), b + "mlp.fc2.weight": (384, 1536), b + "mlp.fc2.bias": (384,)})
    return s


@pytest.fixture(scope="module")
def dino_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in official_vits8_shapes().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            out[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[k] = 0.05 * torch.randn(shape, generator=g)
    return out


@pytest.fixture(scope="module")
def dino_ckpt(dino_state, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("dino") / "dino_deitsmall8_pretrain.pth"
    torch.save(dino_state, p)
    return p


# ------------------------------------------------------------------------------------------- depth


def test_depth_equals_raycast_z_and_labels(small_cache, depth_file):
    """Depth > 0 exactly on the cache's foreground; z of the nearest hit of trimesh ray casting inside."""
    import trimesh

    from handcli.camera import transform
    from handcli.targets.depth import frame_meshes

    rng = np.random.default_rng(0)
    with Cache(small_cache) as c, DepthTargets(depth_file) as d, h5py.File(depth_file) as f:
        assert f.attrs["depth_kind"] == "z" and f.attrs["schema"] == "handcli.targets.depth/1"
        assert int(f.attrs["num_views"]) == c.num_views
        assert f["depth"].dtype == np.float32
        cams = c.cameras()
        for j in range(c.num_views):
            v = c.view(j)
            z = d.view(j)
            assert z.shape == v["label"].shape
            assert np.array_equal(z > 0, v["label"] > 0)
            assert set(np.unique(v["label"])) == {0, 1, 2}
            # interior foreground pixels (4-neighbours foreground too), cast from the camera centre
            fg = v["label"] > 0
            inner = fg[1:-1, 1:-1] & fg[:-2, 1:-1] & fg[2:, 1:-1] & fg[1:-1, :-2] & fg[1:-1, 2:]
            rows, cols = np.nonzero(inner)
            pick = rng.choice(len(rows), size=150, replace=False)
            r, col = rows[pick] + 1, cols[pick] + 1
            cam = cams[v["camera"]]
            meshes = frame_meshes(c, v["frame"])
            verts = np.concatenate([transform(cam["world_to_cam"], m[0].astype(np.float64)) for m in meshes])
            faces = np.concatenate([meshes[0][1], meshes[1][1] + len(meshes[0][0])])
            owner = np.repeat([1, 2], [len(meshes[0][1]), len(meshes[1][1])])  # right first: label 1, left: 2
            mesh = trimesh.Trimesh(verts, faces, process=False)
            dirs = np.stack([col, r, np.ones_like(r)], 1).astype(np.float64) @ np.linalg.inv(cam["K"]).T
            tri, ray, loc = mesh.ray.intersects_id(np.zeros_like(dirs), dirs, multiple_hits=True,
                                                   return_locations=True)
            order = np.lexsort((loc[:, 2], ray))
            first = order[np.r_[True, ray[order][1:] != ray[order][:-1]]]
            assert len(first) == len(pick)  # every interior foreground ray hits the mesh
            z_ref = np.empty(len(pick))
            z_ref[ray[first]] = loc[first, 2]
            lab_ref = np.empty(len(pick), int)
            lab_ref[ray[first]] = owner[tri[first]]
            np.testing.assert_allclose(z[r, col], z_ref, rtol=1e-5, atol=1e-6)
            assert (lab_ref == v["label"][r, col]).mean() > 0.98   # ties at contact may go either way


def test_z_to_ray_distance_off_axis():
    K = np.array([[100.0, 0, 50.0], [0, 200.0, 40.0], [0, 0, 1]])
    # pixel (150, 40): x/z = 1, y/z = 0 -> the ray is 45 degrees off the optical axis
    t = z_to_ray_distance(np.array([2.0]), K, np.array([[150.0, 40.0]]))
    np.testing.assert_allclose(t, [2 * np.sqrt(2)])
    # a camera point projects to some pixel; its distance from the centre is the ray distance
    P = np.array([[0.3, -0.2, 1.5], [0.0, 0.0, 0.7]])
    pix = (P @ K.T)[:, :2] / P[:, 2:]
    np.testing.assert_allclose(z_to_ray_distance(P[:, 2], K, pix), np.linalg.norm(P, axis=1))
    # full-map form, torch input, and the renderer's inverse (ray distance -> z) give the identity
    zmap = np.full((5, 7), 1.25)
    tmap = z_to_ray_distance(zmap, K)
    assert tmap.shape == (5, 7) and np.all(tmap > 1.25) is np.True_
    tt = z_to_ray_distance(torch.tensor([2.0], dtype=torch.float64), K, torch.tensor([[150.0, 40.0]]))
    assert isinstance(tt, torch.Tensor) and abs(tt.item() - 2 * np.sqrt(2)) < 1e-12
    from handcli.render.rays import camera_rays
    from handcli.render.volume import ray_distance_to_z

    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    _, dirs = camera_rays(torch.tensor(K), w2c, torch.tensor(pix))
    back = ray_distance_to_z(torch.tensor(np.linalg.norm(P, axis=1)), dirs, w2c)
    np.testing.assert_allclose(back.numpy(), P[:, 2], rtol=1e-12)


def test_depth_reader_sampling_and_matching(small_cache, depth_file):
    with Cache(small_cache) as c, DepthTargets(depth_file) as ram, \
            DepthTargets(depth_file, max_ram_bytes=0) as disk:
        assert ram.in_ram and not disk.in_ram
        ram.check_matches(c)
        rng = np.random.default_rng(1)
        views = rng.integers(0, c.num_views, 500)
        W, H = ram.width[views], ram.height[views]
        pix = np.stack([rng.uniform(-0.49, W - 0.51), rng.uniform(-0.49, H - 0.51)], 1)
        expect = np.array([ram.view(j)[int(np.floor(p[1] + 0.5)), int(np.floor(p[0] + 0.5))]
                           for j, p in zip(views, pix)])
        assert (expect > 0).any() and (expect == 0).any()
        np.testing.assert_array_equal(ram.sample(views, pix), expect)
        np.testing.assert_array_equal(disk.sample(views, pix), expect)
        np.testing.assert_array_equal(ram.sample(int(views[0]), pix[:3]), ram.sample(views[:1].repeat(3), pix[:3]))

        class Other:
            path, num_views = Path("other.h5"), c.num_views + 1

        with pytest.raises(InputError) as e:
            ram.check_matches(Other())
        assert str(depth_file) in str(e.value) and e.value.field == "num_views"
    with pytest.raises(InputError) as e:
        FeatureTargets(depth_file)
    assert e.value.field == "schema"


# ---------------------------------------------------------------------------------------- features


def test_fit_pca_matches_svd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12)) * np.linspace(3, 0.1, 12) @ np.linalg.qr(rng.normal(size=(12, 12)))[0]
    mean, comps = fit_pca(X, 5)
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(comps), np.abs(vt[:5]), atol=1e-5)
    np.testing.assert_allclose(comps @ comps.T, np.eye(5), atol=1e-10)
    Y = project_pca(X, mean, comps)
    assert np.all(np.diff(Y.var(0)) < 0)          # decreasing variance
    with pytest.raises(InputError):
        fit_pca(X, 13)


def test_efficientnet_features_file(small_cache, eff_file):
    """L2 -> PCA -> L2 of the masked image's teacher features, float16 at stride 8, shared global basis."""
    with Cache(small_cache) as c, FeatureTargets(eff_file) as ft, h5py.File(eff_file) as f:
        a = f.attrs
        assert a["schema"] == "handcli.targets.features/1" and a["teacher"] == "efficientnet-lite0"
        assert a["pca"] == "global" and int(a["dim"]) == 32 and int(a["stride"]) == 8
        assert int(a["cache_num_views"]) == c.num_views and len(a["weights_sha256"]) == 16
        assert f["features"].dtype == np.float16 and f["features"].shape[1] == 32
        ft.check_matches(c)
        t = load_teacher("efficientnet-lite0")
        mean, comps = f["pca/mean"][()], f["pca/components"][()]
        np.testing.assert_allclose(comps @ comps.T, np.eye(32), atol=1e-5)
        for j in range(c.num_views):
            v = c.view(j)
            H, W = v["label"].shape
            fm = ft.view(j)
            assert fm.shape == (-(-H // 8), -(-W // 8), 32)
            np.testing.assert_allclose(np.linalg.norm(fm, axis=-1), 1.0, atol=2e-3)
            raw = teacher_features(t, masked_image(v["rgb"], v["label"])).numpy()
            ref = l2_normalize(project_pca(l2_normalize(raw.reshape(raw.shape[0], -1).T), mean, comps))
            np.testing.assert_allclose(fm.reshape(-1, 32), ref, atol=3e-3)
            if j == 0:  # the unmasked image (non-black synthetic background) gives other features
                raw_u = teacher_features(t, v["rgb"].astype(np.float32) / 255).numpy()
                ref_u = l2_normalize(project_pca(l2_normalize(raw_u.reshape(raw.shape[0], -1).T), mean, comps))
                assert np.abs(ref_u - ref).max() > 0.1


def test_features_ignore_background(small_cache, eff_file, tmp_path):
    """Noise in the background pixels of the cache changes nothing: the teacher sees masked images."""
    noisy = tmp_path / "noisy.h5"
    noisy.write_bytes(small_cache.read_bytes())
    with h5py.File(noisy, "r+") as f:
        rgb, label = f["views/rgb"][()], f["views/label"][()]
        rgb[label == 0] = np.random.default_rng(0).integers(0, 256, size=((label == 0).sum(), 3))
        f["views/rgb"][...] = rgb
    out = tmp_path / "f.h5"
    invoke(["features", noisy, "-o", out, "--dim", "32"])
    with h5py.File(out) as a, h5py.File(eff_file) as b:
        np.testing.assert_array_equal(a["features"][()], b["features"][()])


def test_sample_features_cells(small_cache, eff_file):
    with FeatureTargets(eff_file) as ft, FeatureTargets(eff_file, max_ram_bytes=0) as disk:
        fm = ft.view(1)
        h, w, _ = fm.shape
        pix = np.array([[0, 0], [7.4, 0], [7.6, 0], [15.49, 8.6], [-3, -3], [1e4, 1e4], [8 * w - 1, 0]])
        cells = [(0, 0), (0, 0), (0, 1), (1, 1), (0, 0), (h - 1, w - 1), (0, w - 1)]
        got = sample_features(ft, 1, pix)
        np.testing.assert_array_equal(got, np.stack([fm[r, col] for r, col in cells]))
        np.testing.assert_array_equal(sample_features(str(eff_file), 1, pix), got)
        rng = np.random.default_rng(2)
        views = rng.integers(0, ft.num_views, 300)
        pix = np.stack([rng.uniform(0, ft.width[views] - 1), rng.uniform(0, ft.height[views] - 1)], 1)
        expect = np.stack([ft.view(j)[int(np.floor(p[1] + 0.5)) // 8, int(np.floor(p[0] + 0.5)) // 8]
                           for j, p in zip(views, pix)])
        np.testing.assert_array_equal(ft.sample(views, pix), expect)
        np.testing.assert_array_equal(disk.sample(views, pix), expect)
    rows, cols = pixel_cells(np.array([[23.5, 16.49]]), 8, 10, 10)
    assert (rows[0], cols[0]) == (2, 3)


def test_efficientnet_teacher_is_pretrained():
    """The packaged ImageNet weights load offline: skimage's cat photo is classified as a cat."""
    from skimage import data, transform

    from handcli.nn.efficientnet_teacher import LITE0_MEAN, LITE0_STD

    t = load_teacher("efficientnet-lite0")
    net = t.extra["module"].net
    img = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top = net(x)[0].argmax().item()
    assert 281 <= top <= 285  # ImageNet tabby / tiger / Persian / Siamese / Egyptian cat
    f1 = teacher_features(t, img)
    f2 = teacher_features(t, transform.resize(data.coffee(), (224, 224)).astype(np.float32))
    assert f1.shape == (392, 28, 28)
    assert (f1 - f2).abs().mean() > 0.01


def test_dino_checkpoint_official_keys(dino_state, dino_ckpt, tmp_path):
    from handcli.nn.vit import load_dino_vits8

    model = load_dino_vits8(dino_ckpt)
    assert set(model.state_dict()) == set(official_vits8_shapes())
    torch.testing.assert_close(model.blocks[3].mlp.fc1.weight, dino_state["blocks.3.mlp.fc1.weight"])
    x = torch.rand(1, 3, 256, 168)
    with torch.no_grad():
        l0, l1, l5 = model.get_intermediate_layers(x, [0, 1, 5])
    assert l1.shape == (1, 1 + 32 * 21, 384)
    assert (l1 - l0).abs().mean() > 0.05 and (l5 - l1).abs().mean() > 0.05
    # non-square input 256 x 167 through the teacher: padded to 256 x 168, one cell per 8 x 8 pixels
    t = load_teacher("dino-vits8", dino_ckpt)
    img = np.random.default_rng(0).random((256, 167, 3)).astype(np.float32)
    f = teacher_features(t, img)
    assert f.shape == (384, 32, 21)
    ref = model.patch_features((torch.nn.functional.pad(torch.from_numpy(img).permute(2, 0, 1), (0, 1))[None]
                                - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                               / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), layer=1)[0]
    torch.testing.assert_close(f, ref)
    # errors name the file and the key
    bad = dict(dino_state)
    bad["blocks.3.attn.qkv_w"] = bad.pop("blocks.3.attn.qkv.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(InputError) as e:
        load_dino_vits8(tmp_path / "bad.pth")
    assert "bad.pth" in str(e.value) and "blocks.3.attn.qkv" in str(e.value)
    bad = {k: v for k, v in dino_state.items() if k != "norm.bias"}
    bad["pos_embed"] = torch.zeros(1, 197, 384)
    torch.save(bad, tmp_path / "bad2.pth")
    with pytest.raises(InputError) as e:
        load_dino_vits8(tmp_path / "bad2.pth")
    assert e.value.field in ("norm.bias", "pos_embed")
    with pytest.raises(InputError) as e:
        load_dino_vits8(tmp_path / "missing.pth")
    assert "missing.pth" in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        load_dino_vits8(tmp_path / "junk.pth")


def test_pos_embed_interpolation_keeps_axes():
    """A position embedding that varies only along columns still does so on a 32 x 21 grid."""
    from handcli.nn.vit import vit_small

    model = vit_small(8)
    cols = torch.arange(28, dtype=torch.float32).repeat(28)          # row-major 28 x 28: value = column
    with torch.no_grad():
        model.pos_embed[0, 1:] = cols[:, None] * torch.linspace(-1, 1, 384)
        model.pos_embed[0, 0] = 7.0
    pe = model.interpolate_pos_encoding(32 * 21, 256, 168)
    assert pe.shape == (1, 1 + 32 * 21, 384)
    assert torch.all(pe[0, 0] == 7.0)
    grid = pe[0, 1:, -1].reshape(32, 21)
    torch.testing.assert_close(grid, grid[:1].expand(32, 21))       # constant along rows
    assert torch.all(torch.diff(grid[0, 2:-2]) > 0)                    # increasing along columns
    assert model.interpolate_pos_encoding(28 * 28, 224, 224) is model.pos_embed


def test_dino_batch_pca_cli(small_cache, dino_ckpt, tmp_path):
    """--pca batch fits one basis per group of --batch views, as the official script."""
    out = tmp_path / "dino.h5"
    invoke(["features", small_cache, "-o", out, "--weights", dino_ckpt, "--dim", "16", "--pca", "batch",
            "--batch", "2"])
    t = load_teacher("dino-vits8", dino_ckpt)
    with Cache(small_cache) as c, FeatureTargets(out) as ft:
        assert ft.attrs["teacher"] == "dino-vits8" and ft.attrs["pca"] == "batch" and ft.dim == 16
        assert c.num_views == 4
        vecs = []
        for j in (2, 3):
            v = c.view(j)
            raw = teacher_features(t, masked_image(v["rgb"], v["label"])).numpy()
            vecs.append(l2_normalize(raw.reshape(384, -1).T))
        mean, comps = fit_pca(np.concatenate(vecs), 16)
        ref = l2_normalize(project_pca(vecs[1], mean, comps))
        np.testing.assert_allclose(ft.view(3).reshape(-1, 16), ref, atol=3e-3)


def test_cli_input_errors(small_cache, eff_file, tmp_path):
    with pytest.raises(InputError) as e:
        invoke(["depth", tmp_path / "nope.h5", "-o", tmp_path / "d.h5"])
    assert "nope.h5" in str(e.value)
    with pytest.raises(InputError):   # exists, no --force
        invoke(["features", small_cache, "-o", eff_file])
    with pytest.raises(InputError) as e:
        invoke(["features", small_cache, "-o", tmp_path / "f.h5", "--teacher", "dino-vits8"])
    assert e.value.field == "weights"
    with pytest.raises(InputError) as e:
        invoke(["features", small_cache, "-o", tmp_path / "f.h5", "--weights", tmp_path / "none.pth"])
    assert "none.pth" in str(e.value)
    with pytest.raises(InputError) as e:
        invoke(["features", small_cache, "-o", tmp_path / "f.h5", "--dim", "500"])
    assert e.value.field == "dim"
    with pytest.raises(InputError):
        invoke(["features", eff_file, "-o", tmp_path / "f.h5"])   # not a cache
    assert not list(tmp_path.glob(".f.h5*"))                      # no temporary left behind


def test_cli_subprocess(small_cache, tmp_path):
    """Through the root CLI (``python -m handcli.cli targets ...``)."""
    from handcli import cli

    assert "targets" in {g.name for g in cli.app.registered_groups}
    out = tmp_path / "d.h5"
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "targets", "depth", str(small_cache), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "targets", "depth", str(small_cache), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--force" in r.stderr


def test_inspect_summarises_targets_through_their_reader(depth_file, small_cache):
    import json

    from handcli.cli import app as root_app
    from handcli.targets.store import open_targets

    res = runner.invoke(root_app, ["inspect", str(depth_file), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "targets" and doc["schema"] == "handcli.targets.depth/1"
    with DepthTargets(depth_file) as d:
        assert doc["datasets"]["depth"] == [int(d.offset[-1] + d.height[-1] * d.width[-1])]
    assert open_targets(small_cache) is None  # a cache is not a targets file
