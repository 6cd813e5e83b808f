"""The method contract (handcli.methods.base.Method) and the one render driver (handcli.render.driver).

- the driver renders each method exactly as the per-method loops it replaced (kept here as references);
- a fourth method is one class plus one registry entry: ``BlobMethod`` below, registered by the test, goes
  through ``handcli train``, ``render``, ``eval`` (and is refused by ``mesh``, a capability it lacks);
- config (de)serialisation turns any bad key or value into an InputError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import torch.nn as nn

from handcli.errors import InputError
from handcli.methods.base import Method, RunFolder, sum_losses
from handcli.render.bounds import ray_aabb
from handcli.render.rays import camera_rays, pixel_grid, pixel_radii
from handcli.render.volume import ray_distance_to_z

# ------------------------------------------------------------------------------------- reference loops
# The three per-method image loops as they were before the shared driver (op > 0.5 in two, >= 0.5 in one).


def reference_handnerf(model, geoms, K, w2c, height, width, frame_code, device, chunk=8192):
    Kt = torch.as_tensor(K, dtype=torch.float32, device=device)
    Wt = torch.as_tensor(w2c, dtype=torch.float32, device=device)
    pix = pixel_grid(height, width, device=device)
    o, d = camera_rays(Kt, Wt, pix)
    hit = torch.zeros(len(pix), dtype=torch.bool, device=device)
    for g in geoms:
        hit |= ray_aabb(o, d, g.box_min, g.box_max)[2]
    idx = torch.nonzero(hit)[:, 0]
    radii = pixel_radii(Kt, Wt, pix[idx])
    rgb = torch.zeros(len(pix), 3, device=device)
    depth = torch.zeros(len(pix), device=device)
    opac = torch.zeros(len(pix), device=device)
    for s in range(0, len(idx), chunk):
        sl = idx[s:s + chunk]
        out = model.render(geoms, o[sl], d[sl], radii[s:s + chunk], frame_code, perturb=False)
        rgb[sl] = out["rgb"]
        op = out["opacity"]
        z = ray_distance_to_z(out["depth"] / op.clamp_min(1e-6), d[sl], Wt)
        depth[sl] = torch.where(op > 0.5, z, torch.zeros_like(z))
        opac[sl] = op
    return {"rgb": rgb.reshape(height, width, 3).clamp(0, 1).numpy(), "depth": depth.reshape(height, width).numpy(),
            "opacity": opac.reshape(height, width).numpy()}


def reference_handocc(model, hands, codes, K, w2c, height, width, device, chunk=8192):
    from handcli.methods.handocc.method import SIDE_LABEL
    from handcli.methods.handocc.model import render_rays

    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device)
    Wt = torch.as_tensor(np.asarray(w2c), dtype=torch.float32, device=device)
    pix = pixel_grid(height, width, device=device)
    o, d = camera_rays(Kt, Wt, pix)
    hit = torch.zeros(len(pix), dtype=torch.bool, device=device)
    for h in hands:
        hit |= ray_aabb(o, d, h.box_min, h.box_max)[2]
    idx = torch.nonzero(hit)[:, 0]
    n = len(pix)
    rgb, depth, opac = torch.zeros(n, 3), torch.zeros(n), torch.zeros(n)
    sem = torch.zeros(n, dtype=torch.uint8)
    labels = torch.tensor([SIDE_LABEL[h.side] for h in hands], dtype=torch.uint8)
    for s in range(0, len(idx), chunk):
        sl = idx[s:s + chunk]
        out = render_rays(model, hands, codes, o[sl], d[sl])
        op = out["opacity"]
        rgb[sl] = out["rgb"]
        z = ray_distance_to_z(out["depth"] / op.clamp_min(1e-6), d[sl], Wt)
        depth[sl] = torch.where(op >= 0.5, z, torch.zeros_like(z))
        opac[sl] = op
        sem[sl] = torch.where(op >= 0.5, labels[out["hand_opacity"].argmax(-1)], torch.zeros_like(sem[sl]))
    return {"rgb": rgb.reshape(height, width, 3).clamp(0, 1).numpy(), "depth": depth.reshape(height, width).numpy(),
            "opacity": opac.reshape(height, width).numpy(), "semantic": sem.reshape(height, width).numpy()}


def reference_handnerf_ho(model, scene, K, w2c, height, width, device, chunk=4096):
    from handcli.methods.handnerf_ho.method import SIDE_LABEL

    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device)
    Wt = torch.as_tensor(np.asarray(w2c), dtype=torch.float32, device=device)
    o, d = camera_rays(Kt, Wt, pixel_grid(height, width, device=device))
    near, far, hit = ray_aabb(o, d, scene.box_min, scene.box_max)
    idx = torch.nonzero(hit)[:, 0]
    P = height * width
    rgb, depth, opac = torch.zeros(P, 3), torch.zeros(P), torch.zeros(P)
    cls = torch.zeros(P, dtype=torch.long)
    with torch.no_grad():
        enc = model.encode(scene)
        for s in range(0, len(idx), chunk):
            sl = idx[s:s + chunk]
            out = model.render_rays(enc, o[sl], d[sl], near[sl], far[sl], perturb=False)
            rgb[sl] = out["rgb"]
            op = out["opacity"]
            z = ray_distance_to_z(out["depth"] / op.clamp_min(1e-6), d[sl], Wt)
            depth[sl] = torch.where(op > 0.5, z, torch.zeros_like(z))
            opac[sl] = op
            cls[sl] = out["semantic"].argmax(-1)
    to_cache = torch.tensor([0, 3, SIDE_LABEL[scene.side]])
    return {"rgb": rgb.reshape(height, width, 3).clamp(0, 1).numpy(), "depth": depth.reshape(height, width).numpy(),
            "opacity": opac.reshape(height, width).clamp(0, 1).numpy(),
            "semantic": to_cache[cls].reshape(height, width).to(torch.uint8).numpy()}


def _camera(cache, j):
    vt = cache.view_table()
    cam = cache.cameras()[int(vt["camera"][j])]
    return int(vt["frame"][j]), cam["K"], cam["world_to_cam"], cam["height"], cam["width"]


def _agree(new: dict, ref: dict) -> None:
    for k, v in ref.items():
        assert new[k].shape == v.shape and new[k].dtype == v.dtype, k
        if v.dtype == np.uint8:
            # labels can differ only where the opacity sits on the threshold (none in practice)
            assert (new[k] != v).mean() < 1e-3, k
        else:
            assert np.abs(new[k] - v).max() <= 1e-4, (k, float(np.abs(new[k] - v).max()))
    assert ref["opacity"].max() > 0.5 and (ref["depth"] > 0).any()  # surfaces on the image: depth compared too


def test_driver_matches_the_handnerf_loop(tiny_cache):
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf.model import preset

    torch.manual_seed(0)
    cfg = replace(preset("fast"), n_samples=12, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4,
                  feat_dim=8, ec_hidden=16, ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01,
                  density_bias=60.0)  # dense enough at initialisation for surfaces (depth) on the image
    m = HandNeRFMethod(cfg, tiny_cache, train_cameras=["400002", "400009"])
    for j in (0, 5):
        frame, K, M, H, W = _camera(m.cache, j)
        new = m.render_camera(frame, K, M, H, W, outputs={"rgb", "depth", "opacity", "feature"})
        with torch.no_grad():
            ref = reference_handnerf(m.model.eval(), m.geoms[frame], K, M, H, W, m.frame_codes.get(frame), m.device)
        _agree(new, ref)
        assert new["feature"].shape == (H, W, cfg.feat_dim) and np.abs(new["feature"]).max() > 0
        assert set(m.render_camera(frame, K, M, H, W)) == {"rgb", "depth", "opacity", "rays", "evaluated"}


def test_driver_matches_the_handocc_loop(tiny_cache, tmp_path):
    from handcli.methods.handocc.method import HandOccMethod
    from handcli.methods.handocc.model import PRESETS
    from handcli.methods.trainer import train

    torch.manual_seed(0)
    cfg = replace(PRESETS["fast"], rays_per_step=128, occ_points=512, pool_points=4096, occ_hidden=16, occ_layers=2,
                  color_hidden=16, color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16,
                  stage="occupancy", lr=3e-3, chunk=700)  # a chunk size that splits the image's rays unevenly
    m = HandOccMethod(cfg, tiny_cache, train_cameras=["400002", "400009"])
    train(m, tmp_path, steps=40, lr=cfg.lr, lr_final=cfg.lr, seed=0,
          resume=False, log_every=40, ckpt_every=10_000)
    for j in (0, 5):
        frame, K, M, H, W = _camera(m.cache, j)
        new = m.render_camera(frame, K, M, H, W)
        m.model.eval()
        with torch.no_grad():
            hands = m.hands(frame)
            ref = reference_handocc(m.model, hands, m.appearance_codes(hands), K, M, H, W, m.device, chunk=700)
        _agree(new, ref)
        assert set(np.unique(new["semantic"])) <= {0, 1, 2} and (new["semantic"] > 0).any()
    only = m.render_camera(frame, K, M, H, W, outputs={"opacity"})
    assert set(only) == {"opacity", "rays", "evaluated", "occ_evals", "color_evals"} and only["color_evals"] == 0
    assert np.array_equal(only["opacity"], new["opacity"])


def test_driver_matches_the_handnerf_ho_loop(dex_cache):
    from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
    from handcli.methods.handnerf_ho.model import preset

    torch.manual_seed(0)
    cfg = replace(preset("fast"), n_samples=8, hidden=32, layers=2, skips=(1,), color_hidden=16, cnn_channels=8,
                  volume_feat_dim=8, img_feat_dim=16, render_size=24, input_size=32, voxel=0.02, grid_multiple=8,
                  pe_deg=4, chunk=333)
    m = HandNeRFHOMethod(cfg, dex_cache)
    with torch.no_grad():  # a dense field at initialisation, so that the image holds surfaces
        for net in (m.model.coarse, m.model.fine):
            if net is not None:
                for name, p in net.named_parameters():
                    if "sigma" in name or "density" in name:
                        p.add_(5.0 if name.endswith("bias") else 0.0)
    for j in (0, 1):
        frame, K, M, H, W = _camera(m.cache, j)
        new = m.render_camera(frame, K, M, H, W)
        m.model.eval()
        ref = reference_handnerf_ho(m.model, m.scene(frame), K, M, H, W, m.device, chunk=333)
        _agree(new, ref)
        assert new["rays"] > 0 and set(np.unique(new["semantic"])) <= {0, 1, 2, 3}


# ------------------------------------------------------------------------------------- a fourth method


@dataclass(frozen=True)
class BlobConfig:
    hidden: int = 16
    n_samples: int = 16
    rays_per_step: int = 256
    fg_fraction: float = 0.5
    lr: float = 1e-2
    lr_final: float = 1e-3
    steps: int = 30
    chunk: int = 4096


class BlobField(nn.Module):
    """A small MLP: world point (relative to the frame's box centre) -> density, rgb."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, x):
        h = self.net(x)
        return nn.functional.softplus(h[..., 0] + 2.0) * 50.0, torch.sigmoid(h[..., 1:])


class BlobMethod(Method):
    """A test-only method: an MLP field in the box around a frame's hands, volume-rendered."""

    Config = BlobConfig
    PRESETS = {"fast": BlobConfig(), "paper": BlobConfig(hidden=64, steps=1000)}
    default_method = "blob"

    def setup_training(self, *, train_cameras=None, train_frames=None, eval_cameras=None, seed=0):
        from handcli.data.raybatch import pick_eval_view, select_views
        from handcli.data.viewpool import ViewPool

        self.frames = self.training_frames(train_frames)
        self.pool = ViewPool(self.cache, select_views(self.cache, train_cameras, self.frames), self.frames,
                             capacity=0, refresh_every=50, replace=0.25, seed=seed)
        self.model = BlobField(self.cfg.hidden).to(self.device)
        self.eval_view = pick_eval_view(self.cache, self.frames[0], train_cameras, eval_cameras)

    def setup_run(self, run: RunFolder, state: dict) -> None:
        self.model = BlobField(self.cfg.hidden).to(self.device)

    def _box(self, frame):
        boxes = [h.box for h in self.cache.frame(frame).hands.values() if h.box is not None]
        if not boxes:
            return None
        b = np.concatenate(boxes)
        return (torch.tensor(b.min(0), dtype=torch.float32, device=self.device),
                torch.tensor(b.max(0), dtype=torch.float32, device=self.device))

    def _render(self, box, o, d, perturb=False, gen=None):
        from handcli.render.samplers import stratified_samples
        from handcli.render.volume import render_weights

        near, far, hit = ray_aabb(o, d, *box)
        t0, t1 = stratified_samples(near, far, self.cfg.n_samples, perturb, generator=gen)
        mid = 0.5 * (t0 + t1)
        sigma, rgb = self.model(o[:, None] + mid[..., None] * d[:, None] - 0.5 * (box[0] + box[1]))
        w, _, _ = render_weights(sigma, t0, t1, hit[:, None].expand_as(t0))
        return {"rgb": (w[..., None] * rgb).sum(1), "opacity": w.sum(1), "depth": (w * mid).sum(1),
                "evaluated": int(t0.numel())}

    def train_step(self, step, gen):
        from handcli.data.raybatch import sample_batch

        views, frame = self.pool.draw(step, gen)
        b = sample_batch(views, frame, self.cfg.rays_per_step, self.cfg.fg_fraction, gen)
        out = self._render(self._box(frame), b["origins"], b["dirs"], perturb=True, gen=gen)
        fg = (b["label"] > 0).float()
        loss, logs = sum_losses({"rgb": ((out["rgb"] - b["rgb"]) ** 2).mean(),
                                 "mask": ((out["opacity"] - fg) ** 2).mean()})
        return loss, {**logs, "rays": len(fg), "samples": out["evaluated"]}

    def render_state(self, frame, outputs):
        box = self._box(frame)
        return box, [box] if box is not None else []

    def render_rays(self, state, origins, dirs, outputs, **extra):
        out = self._render(state, origins, dirs)
        return {**{k: out[k] for k in outputs}, "evaluated": out["evaluated"]}


def test_a_fourth_method_is_a_class_and_a_registry_line(tiny_cache, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from handcli import registry
    from handcli.cli import app

    monkeypatch.setitem(registry.METHODS, "blob", f"{__name__}:BlobMethod")
    cli = CliRunner()
    run, renders, metrics = tmp_path / "run", tmp_path / "renders", tmp_path / "metrics.json"
    res = cli.invoke(app, ["train", str(tiny_cache), "-o", str(run), "--method", "blob", "--steps", "30",
                           "--set", "hidden=24", "--log-every", "10", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads((run / "config.json").read_text())
    assert doc["method"] == "blob" and doc["config"]["hidden"] == 24 and doc["config"]["steps"] == 30
    losses = [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0]
    res = cli.invoke(app, ["render", str(run), str(tiny_cache), "-o", str(renders), "--max-views", "3",
                           "--device", "cpu"])
    assert res.exit_code == 0, res.output
    views = json.loads((renders / "renders.json").read_text())["views"]
    assert len(views) == 3
    res = cli.invoke(app, ["eval", str(renders), str(tiny_cache), "-o", str(metrics)])
    assert res.exit_code == 0, res.output
    mean = json.loads(metrics.read_text())["mean"]
    assert np.isfinite(mean["psnr_full"]) and mean["psnr_full"] > 5
    # a capability the method does not declare is refused before any output
    res = cli.invoke(app, ["mesh", str(run), str(tiny_cache), "--frame", "0", "-o", str(tmp_path / "mesh")])
    assert isinstance(res.exception, InputError) and "no mesh extraction" in str(res.exception)
    assert not (tmp_path / "mesh").exists()
    # the run loads back through from_run with the trained weights
    m = BlobMethod.from_run(run, device="cpu")
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, state[k]) for k, v in m.model.state_dict().items())


# ------------------------------------------------------------------------------------- config


def test_config_from_dict_turns_bad_keys_and_values_into_input_errors(tmp_path):
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
    from handcli.methods.handocc.method import HandOccMethod

    for cls in (HandNeRFMethod, HandOccMethod, HandNeRFHOMethod, BlobMethod):
        cfg = cls.PRESETS["fast"]
        assert cls.config_from_dict(json.loads(json.dumps(cls.config_to_dict(cfg)))) == cfg
        with pytest.raises(InputError, match="unknown config key") as e:
            cls.config_from_dict({"bogus": 1}, path=tmp_path / "config.json")
        assert e.value.field == "config.bogus" and e.value.path == str(tmp_path / "config.json")
        with pytest.raises(InputError) as e:
            cls.config_from_dict({"steps": "many"})
        assert e.value.field == "config.steps"
    with pytest.raises(InputError) as e:
        HandOccMethod.config_from_dict({"stage": "bogus"}, path="c.json")
    assert e.value.field == "config.stage"
    with pytest.raises(InputError) as e:
        HandNeRFHOMethod.config_from_dict({"encoder": "vgg"}, path="c.json")
    assert e.value.field == "config.encoder" and e.value.path == "c.json"
    with pytest.raises(InputError) as e:
        HandNeRFHOMethod.config_from_dict({"voxel": 0.0}, path="c.json")
    assert e.value.field == "config.voxel" and "voxel sizes" in e.value.message


def test_capabilities_are_declared_not_probed():
    from handcli.methods.base import CAPABILITIES, Method
    from handcli.methods.handnerf.method import HandNeRFMethod
    from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
    from handcli.methods.handocc.method import HandOccMethod

    assert HandOccMethod.capabilities == {"mesh", "appearance", "skeleton", "adapt"}
    assert HandNeRFHOMethod.capabilities == {"mesh", "input_view"}
    assert HandNeRFMethod.capabilities == {"adapt"}
    for cls in (HandNeRFMethod, HandOccMethod, HandNeRFHOMethod):
        assert cls.capabilities <= set(CAPABILITIES)
        provided = {"mesh": "extract_meshes", "appearance": "set_appearance_crop", "skeleton": "set_skeletons"}
        for cap, attr in provided.items():
            assert (cap in cls.capabilities) == callable(getattr(cls, attr, None)), (cls, cap)
        assert ("adapt" in cls.capabilities) == (cls.adaptation.__func__ is not Method.adaptation.__func__), cls
