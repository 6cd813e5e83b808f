"""HandOcc's view-dependent colour (``view_dir``): it starts as the colour without a view direction, the fast
render path equals the reference one with it, the colour does depend on the direction once trained, and a
run loads with the colour network it was trained with whatever the default."""

from __future__ import annotations

from dataclasses import replace

import torch
from test_handocc_fast_render import _scene  # the tiny scene those tests render

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, ColorNet, HandOcc, render_rays

FAST = replace(PRESETS["fast"], normal_in=False)  # the view columns last in the first layer


def _pair(tiny_cache, hands: int = 1):
    """A model without and one with view_dir holding the same weights, the latter's view columns as built; the
    output layer randomised so that the colour is not just the reference's mean skin colour."""
    base, hs, o, d = _scene(tiny_cache, hands)
    old = HandOcc(replace(FAST, view_dir=False))
    old.ref_crops.copy_(base.ref_crops)
    n_old = old.color.mlp.layers[0].in_features
    torch.manual_seed(0)
    w0 = HandOcc(replace(FAST, view_dir=True)).color.mlp.layers[0].weight.detach().clone()
    w0[:, :n_old] = old.color.mlp.layers[0].weight.detach()
    assert float(w0[:, n_old:].abs().max()) == 0.0  # the view columns start at zero
    torch.manual_seed(3)
    torch.nn.init.normal_(old.color.mlp.out.weight, std=0.3)
    new = HandOcc(replace(FAST, view_dir=True))
    new.load_state_dict({**old.state_dict(), "color.mlp.layers.0.weight": w0.clone()})
    return old, new, hs, o, d


def test_view_colour_starts_as_the_colour_without_view(tiny_cache):
    old, new, hs, o, d = _pair(tiny_cache)
    for m in (old, new):
        m.eval()
    with torch.no_grad():
        a = render_rays(old, hs, old.default_codes(hs), o, d)
        b = render_rays(new, hs, new.default_codes(hs), o, d)
    assert a["color_evals"] > 100 and float(a["rgb"].std()) > 0.01
    assert torch.allclose(a["rgb"], b["rgb"], atol=1e-6, rtol=0)
    assert torch.equal(a["opacity"], b["opacity"])


def test_view_colour_fast_path_equals_reference_and_depends_on_direction(tiny_cache):
    _, model, hs, o, d = _pair(tiny_cache, hands=2)
    with torch.no_grad():  # a trained view term
        w = model.color.mlp.layers[0].weight
        w[:, -model.color.view_dim:] = torch.randn(w.shape[0], model.color.view_dim,
                                                   generator=torch.Generator().manual_seed(4))
    model.eval()
    with torch.no_grad():
        codes = model.default_codes(hs)
        ref = render_rays(model, hs, codes, o, d, reference=True)
        fast = render_rays(model, hs, codes, o, d)
    assert torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    # training path: same gradients, the view columns included
    model.train()
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:600]
    grads = []
    for reference in (True, False):
        model.zero_grad()
        out = render_rays(model, hs, model.default_codes(hs), o[rows], d[rows], perturb=True,
                          gen=torch.Generator().manual_seed(2), train=True, reference=reference)
        out["rgb"].square().sum().backward()
        grads.append(model.color.mlp.layers[0].weight.grad.clone())
    assert float(grads[0][:, -model.color.view_dim:].abs().max()) > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * float(grads[0].abs().max()), rtol=0)
    # the same samples seen along two directions get different colours
    net = model.color
    g = torch.Generator().manual_seed(5)
    R = 64
    args = (torch.rand(R, 3, generator=g), torch.randint(20, (R,), generator=g),
            torch.randn(R, FAST.occ_hidden, generator=g), torch.rand(R, generator=g), torch.randn(R, 9, generator=g),
            torch.rand(R, net.app_dim, generator=g))
    with torch.no_grad():
        c1 = net(*args, torch.tensor([[0.0, 0.0, 1.0]]).expand(R, 3))
        c2 = net(*args, torch.tensor([[1.0, 0.0, 0.0]]).expand(R, 3))
    assert float((c1 - c2).abs().mean()) > 1e-3


def test_run_loads_with_the_colour_network_it_was_trained_with():
    for trained in (False, True):
        state = HandOcc(replace(FAST, view_dir=trained)).state_dict()
        for default in (False, True):
            cfg = config_for_state(replace(FAST, view_dir=default), state)
            assert cfg.view_dir is trained
            HandOcc(cfg).load_state_dict(state)  # loads without a shape mismatch
    assert config_for_state(FAST, {}) is FAST


def test_view_encoding_uses_unit_directions():
    net = ColorNet(replace(FAST, view_dir=True), 19)
    d = torch.tensor([[0.0, 3.0, 4.0]])
    assert torch.allclose(net.view_encoding(d), net.view_encoding(d / 5.0))
    assert net.view_encoding(d).shape == (1, net.view_dim) and net.view_dim == 15
