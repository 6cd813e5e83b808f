"""HandOcc's specular highlight (``specular``): hand-computed lobe and capsule-normal values, lights recovered
from highlights they made, the render's fast path equal to the reference one with it, and a run loading with
the option it was trained with."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_handocc_fast_render import _scene  # the tiny scene those tests render
from torch.nn import functional as F

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, HandOcc, render_rays
from handcli.methods.handocc.specular import SpecularLobes, capsule_normals

FAST = PRESETS["fast"]


def _lobes(dirs, strengths, shininess: float) -> SpecularLobes:
    m = SpecularLobes(len(dirs))
    with torch.no_grad():
        m.dirs.copy_(F.normalize(torch.tensor(dirs), dim=-1) / m.scale)
        m.log_strength.copy_(torch.tensor(strengths).log() / m.scale)
        m.log_shininess.fill_(math.log(shininess) / m.scale)
    return m


def test_capsule_normals_by_hand():
    local = torch.tensor([[0.5, 0.2, 0.0],  # beside the segment: straight out along local y
                          [1.5, 0.0, 0.0],  # past the end: along the bone
                          [-0.2, 0.0, 0.2]])  # before the start, off to local z: 45 degrees back
    axes = torch.eye(3).expand(3, 3, 3)
    assert torch.allclose(capsule_normals(local, axes),
                          torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [-0.5 ** 0.5, 0.0, 0.5 ** 0.5]]), atol=1e-6)
    # a frame turned 90 degrees about z (local x = world y, local y = world -x) turns the normals with it
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).expand(3, 3, 3)
    assert torch.allclose(capsule_normals(local, turn)[0], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)


def test_lobe_values_by_hand():
    m = _lobes([(0.0, 0.0, 1.0)], [0.3], 8.0)
    n = torch.tensor([[0.0, 0.0, 1.0]] * 3)
    d = torch.tensor([[0.0, 0.0, -1.0],  # looking straight down the light's direction: h = n, cos 1
                      [-1.0, 0.0, 0.0],  # seen from the side: h at 45 degrees, cos^8 = (1/sqrt 2)^8 = 1/16
                      [0.0, 0.0, -1.0]])
    n[2] = torch.tensor([0.0, 0.0, -1.0])  # a surface facing away from the light: no highlight
    s = m(n, d)
    assert torch.allclose(s, torch.tensor([0.3, 0.3 / 16, 0.0]), atol=1e-6)


def test_lobes_recover_the_light_from_its_highlights():
    """Highlights of one light (strength 0.25, shininess 20) on random normals and views: four lobes fitted by
    Adam at the trainer's learning rate move onto that light (within 5 degrees) with its strength and shininess."""
    g = torch.Generator().manual_seed(0)
    light = F.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)
    n = F.normalize(torch.randn(4000, 3, generator=g), dim=-1)
    d = F.normalize(torch.randn(4000, 3, generator=g), dim=-1)
    target = _lobes([light.tolist()], [0.25], 20.0)(n, d).detach()
    assert float(target.max()) > 0.2  # some samples see the highlight
    fit = SpecularLobes(4)
    opt = torch.optim.Adam(fit.parameters(), lr=2e-3)
    with torch.no_grad():
        before = float((fit(n, d) - target).square().mean())
    for _ in range(600):
        opt.zero_grad()
        loss = (fit(n, d) - target).square().mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * before
    with torch.no_grad():
        dirs, strength, alpha = fit.lights()
    near = torch.rad2deg(torch.acos((dirs @ light).clamp(-1, 1))) < 5.0  # lobes that moved onto the light
    assert bool(near[strength.argmax()])
    assert abs(float(strength[near].sum()) - 0.25) < 0.02 and bool(((alpha[near] - 20.0).abs() < 2.0).all())


def _model_with_highlight(tiny_cache, hands: int):
    base, hs, o, d = _scene(tiny_cache, hands)
    torch.manual_seed(0)
    model = HandOcc(replace(FAST, specular=True, spec_lights=2))
    model.load_state_dict({**base.state_dict(), **{f"specular.{k}": v for k, v in
                                                   _lobes([(0.0, 0.0, -1.0), (0.5, 0.5, -1.0)], [0.3, 0.2],
                                                          6.0).state_dict().items()}}, strict=False)
    return base, model, hs, o, d


@pytest.mark.parametrize("hands", [1, 2])
def test_highlight_fast_path_equals_reference_and_adds_white(tiny_cache, hands):
    base, model, hs, o, d = _model_with_highlight(tiny_cache, hands)
    model.eval()
    base.eval()
    with torch.no_grad():
        codes = model.default_codes(hs)
        ref = render_rays(model, hs, codes, o, d, reference=True)
        fast = render_rays(model, hs, codes, o, d)
        plain = render_rays(base, hs, base.default_codes(hs), o, d)
    assert torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    assert torch.equal(fast["opacity"], plain["opacity"])  # the highlight is colour only
    added = fast["rgb"] - plain["rgb"]
    assert float(added.min()) > -1e-5 and float(added.max()) > 0.02  # only adds, and somewhere visibly
    assert torch.allclose(added[:, 0], added[:, 1], atol=1e-5) and torch.allclose(added[:, 0], added[:, 2], atol=1e-5)
    # training path: the same gradients reach the lights
    model.train()
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:600]
    grads = []
    for reference in (True, False):
        model.zero_grad()
        out = render_rays(model, hs, model.default_codes(hs), o[rows], d[rows], perturb=True,
                          gen=torch.Generator().manual_seed(2), train=True, reference=reference)
        out["rgb"].square().sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.specular.parameters()]))
    assert float(grads[0].abs().max()) > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * float(grads[0].abs().max()), rtol=0)


def test_run_loads_with_the_highlight_it_was_trained_with():
    with_spec = HandOcc(replace(FAST, specular=True, spec_lights=3)).state_dict()
    cfg = config_for_state(replace(FAST, specular=False), with_spec)
    assert cfg.specular and cfg.spec_lights == 3
    HandOcc(cfg).load_state_dict(with_spec)  # strict: every tensor has its place
    assert not config_for_state(replace(FAST, specular=True), HandOcc(FAST).state_dict()).specular


def test_normal_input_starts_as_without_and_fast_path_equals_reference(tiny_cache):
    base, hs, o, d = _scene(tiny_cache, 2)
    torch.manual_seed(3)
    torch.nn.init.normal_(base.color.mlp.out.weight, std=0.3)  # a colour that is not just the skin tone
    model = HandOcc(replace(FAST, normal_in=True))
    w = model.color.mlp.layers[0].weight
    assert float(w[:, -3:].abs().max()) == 0.0  # the normal's columns start at zero
    model.load_state_dict({**base.state_dict(), "color.mlp.layers.0.weight":
                           torch.cat([base.color.mlp.layers[0].weight, w[:, -3:]], 1)})
    for m in (base, model):
        m.eval()
    with torch.no_grad():
        before = render_rays(base, hs, base.default_codes(hs), o, d)
        same = render_rays(model, hs, model.default_codes(hs), o, d)
        assert torch.allclose(before["rgb"], same["rgb"], atol=1e-6, rtol=0)
        model.color.mlp.layers[0].weight[:, -3:] = torch.randn(w.shape[0], 3, generator=torch.Generator().manual_seed(4))
        ref = render_rays(model, hs, model.default_codes(hs), o, d, reference=True)
        fast = render_rays(model, hs, model.default_codes(hs), o, d)
    assert torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    assert float((fast["rgb"] - before["rgb"]).abs().max()) > 0.02  # the normal now changes the colour
    cfg = config_for_state(FAST, model.state_dict())
    assert cfg.normal_in and not cfg.view_dir
