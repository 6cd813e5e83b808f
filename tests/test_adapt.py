"""HandNeRF pose adaptation (handcli.methods.adapt): what is frozen stays bit-identical, the deformation
field changes, and the depth error on the novel frames drops."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from handcli.data.raybatch import sample_batch
from handcli.errors import InputError
from handcli.methods.adapt import ADAPTED_PREFIXES, check_adaptable, freeze_all_but, prepare_adaptation
from handcli.methods.handnerf.method import HandNeRFMethod
from handcli.methods.handnerf.model import preset
from handcli.methods.trainer import train

TINY = dict(rays_per_step=96, n_samples=12, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4,
            feat_dim=8, ec_hidden=16, ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01)
BASE_FRAMES, NOVEL_FRAMES = [0, 1, 3], [2, 4, 5]


def depth_error(m: HandNeRFMethod, n: int = 512) -> float:
    """Mean depth loss (without its weight's schedule) over fixed rays of every training frame of ``m``."""
    errs = []
    with torch.no_grad():
        for f in m.frames:
            b = sample_batch(m.pool.at(0), f, n, m.cfg.fg_fraction, torch.Generator().manual_seed(f))
            b = {k: v.to(m.device) if torch.is_tensor(v) else v for k, v in b.items()}
            out = m.model.render(m.geoms[f], b["origins"], b["dirs"], b["radii"], m.frame_codes[f], perturb=False)
            errs.append(m.losses(out, b, 0)[1]["depth"])
    return sum(errs) / len(errs)


@pytest.fixture(scope="module")
def trained(tiny_cache, tiny_depth, tmp_path_factory):
    """A tiny HandNeRF trained (60 steps) on three frames; the other three are the novel poses."""
    torch.manual_seed(0)
    cfg = replace(preset("fast", "handnerf"), **TINY, steps=60)
    m = HandNeRFMethod(cfg, tiny_cache, depth_path=tiny_depth, train_frames=BASE_FRAMES)
    assert m.cache.num_frames >= 6
    train(m, tmp_path_factory.mktemp("base"), steps=60, lr=3e-3, lr_final=1e-3, seed=0, resume=False,
          ckpt_every=10 ** 6)
    return m


def test_adaptation_freezes_the_nerf_and_lowers_the_depth_error(trained, tiny_cache, tiny_depth, tmp_path):
    trained_state = {k: v.clone() for k, v in trained.model.state_dict().items()}
    m, adapted = prepare_adaptation(trained, tiny_cache, depth_path=tiny_depth, frames=NOVEL_FRAMES, steps=40,
                                    lr=1e-2, seed=0)
    assert m.frames == NOVEL_FRAMES and m.depth_only
    assert adapted and all(n.startswith(ADAPTED_PREFIXES) for n in adapted)
    assert any(n.startswith("ec.") for n in adapted) and any(n.startswith("pose_net.") for n in adapted)
    params = dict(m.model.named_parameters())
    frozen = sorted(set(params) - set(adapted))
    assert any(n.startswith("field.") for n in frozen) and "latent.weight" in frozen
    # novel frames all start from the mean of the trained appearance codes
    mean_code = trained_state["latent.weight"].mean(0)
    assert params["latent.weight"].shape[0] == len(NOVEL_FRAMES)
    assert torch.equal(params["latent.weight"], mean_code.expand(len(NOVEL_FRAMES), -1))
    before = {n: p.detach().clone() for n, p in params.items()}
    err_before = depth_error(m)

    train(m, tmp_path, steps=40, lr=1e-2, lr_final=1e-2, seed=0, resume=False, ckpt_every=10 ** 6)

    changed = [n for n in frozen if not torch.equal(params[n].detach(), before[n])]
    assert not changed, f"frozen parameters changed: {changed}"
    assert all(not torch.equal(params[n].detach(), before[n]) for n in adapted)
    err_after = depth_error(m)
    assert err_after < 0.9 * err_before, (err_before, err_after)
    # the trained run itself is untouched (its weights were copied)
    assert all(torch.equal(v, trained_state[k]) for k, v in trained.model.state_dict().items())


def test_adaptation_uses_only_the_given_cameras(trained, tiny_cache, tiny_depth):
    m, _ = prepare_adaptation(trained, tiny_cache, depth_path=tiny_depth, frames=NOVEL_FRAMES, steps=2, lr=1e-2,
                              seed=0, cameras=["400004"])
    names = [c["name"] for c in m.cache.cameras()]
    assert {names[int(m.cache.view_table()["camera"][j])] for j in m.pool.view_ids} == {"400004"}
    everything, _ = prepare_adaptation(trained, tiny_cache, depth_path=tiny_depth, frames=NOVEL_FRAMES, steps=2,
                                       lr=1e-2, seed=0)
    assert len(everything.pool.view_ids) > len(m.pool.view_ids)


def test_freeze_all_but_names_what_trains():
    net = torch.nn.ModuleDict({"ec": torch.nn.Linear(2, 2), "field": torch.nn.Linear(2, 2)})
    assert freeze_all_but(net, ("ec.",)) == ["ec.bias", "ec.weight"]
    assert [p.requires_grad for p in net["field"].parameters()] == [False, False]
    with pytest.raises(ValueError):
        freeze_all_but(net, ("nothing.",))


def test_runs_without_a_deformation_field_are_refused(tmp_path):
    check_adaptable({"deform": "lbs", "error_correction": True}, tmp_path / "config.json")
    for cfg in ({"deform": "none", "error_correction": False}, {"deform": "lbs", "error_correction": False}):
        with pytest.raises(InputError) as e:
            check_adaptable(cfg, tmp_path / "config.json")
        assert e.value.field == "config.deform"
