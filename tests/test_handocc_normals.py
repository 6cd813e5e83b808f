"""HandOcc's capsule normals and the colour network's normal input (``normal_in``): hand-computed normals, the
colour without the input's trained columns equal to the colour without the input, the fast render path equal
to the reference one with it, and a run loading with the colour network it was trained with."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_handocc_fast_render import _scene  # the tiny scene those tests render

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, HandOcc, render_rays
from handcli.methods.handocc.normals import capsule_normals

FAST = PRESETS["fast"]


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


def test_normal_input_starts_as_without_and_fast_path_equals_reference(tiny_cache):
    model, hs, o, d = _scene(tiny_cache, 2)  # the fast preset: normal_in on
    assert model.cfg.normal_in
    assert float(HandOcc(FAST).color.mlp.layers[0].weight.detach()[:, -3:].abs().max()) == 0.0  # the columns start at zero
    torch.manual_seed(3)
    torch.nn.init.normal_(model.color.mlp.out.weight, std=0.3)  # a colour that is not just the skin tone
    w = model.color.mlp.layers[0].weight
    with torch.no_grad():
        w[:, -3:] = 0.0
    base = HandOcc(replace(FAST, normal_in=False))
    base.load_state_dict({**model.state_dict(), "color.mlp.layers.0.weight": w.detach()[:, :-3].clone()})
    for m in (base, model):
        m.eval()
    with torch.no_grad():
        before = render_rays(base, hs, base.default_codes(hs), o, d)
        same = render_rays(model, hs, model.default_codes(hs), o, d)
        assert torch.allclose(before["rgb"], same["rgb"], atol=1e-6, rtol=0)
        w[:, -3:] = torch.randn(w.shape[0], 3, generator=torch.Generator().manual_seed(4))
        ref = render_rays(model, hs, model.default_codes(hs), o, d, reference=True)
        fast = render_rays(model, hs, model.default_codes(hs), o, d)
    assert torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    assert float((fast["rgb"] - before["rgb"]).abs().max()) > 0.02  # the normal now changes the colour
    # a run loads with the colour network it was trained with, whatever the default
    assert config_for_state(replace(FAST, normal_in=False), model.state_dict()).normal_in
    assert not config_for_state(FAST, base.state_dict()).normal_in
    HandOcc(config_for_state(FAST, base.state_dict())).load_state_dict(base.state_dict())


def test_view_and_normal_inputs_together_fast_path_equals_reference(tiny_cache):
    base, hs, o, d = _scene(tiny_cache, 1)
    torch.manual_seed(5)
    model = HandOcc(replace(FAST, view_dir=True, normal_in=True))
    model.ref_crops.copy_(base.ref_crops)
    with torch.no_grad():  # trained view and normal columns, a colour that is not just the skin tone
        w = model.color.mlp.layers[0].weight
        n = model.color.view_dim + model.color.normal_dim
        w[:, -n:] = torch.randn(w.shape[0], n, generator=torch.Generator().manual_seed(6))
        torch.nn.init.normal_(model.color.mlp.out.weight, std=0.3)
    model.eval()
    with torch.no_grad():
        ref = render_rays(model, hs, model.default_codes(hs), o, d, reference=True)
        fast = render_rays(model, hs, model.default_codes(hs), o, d)
    assert ref["color_evals"] > 100 and torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    assert config_for_state(FAST, model.state_dict()).view_dir and config_for_state(FAST, model.state_dict()).normal_in


def test_capsule_normals_of_both_hands_point_away_from_their_world_bones(tiny_cache):
    """Left hands are modelled mirrored: their normals, through the mirrored-back axes, must still point from
    the bone's world segment to the world sample."""
    from handcli.methods.handocc.model import _normals

    model, hs, _, _ = _scene(tiny_cache, 2)
    assert {h.side for h in hs} == {"left", "right"}
    for hand in hs:
        g = torch.Generator().manual_seed(7)
        x = hand.box_min + (hand.box_max - hand.box_min) * torch.rand(4000, 3, generator=g)
        with torch.no_grad():
            q = model.occ(hand, x)
        p = torch.arange(len(x))
        n = _normals(q, p, hand.world_axes())
        a, b = hand.start[q["part"]], hand.end[q["part"]]
        t = (((x - a) * (b - a)).sum(-1) / (b - a).square().sum(-1)).clamp(0, 1)
        away = torch.nn.functional.normalize(x - (a + t[:, None] * (b - a)), dim=-1)
        assert float((n * away).sum(-1).min()) > 0.999, hand.side


def test_a_colour_network_of_another_width_is_named_on_load():
    state = HandOcc(FAST).state_dict()
    w = state["color.mlp.layers.0.weight"]
    state["color.mlp.layers.0.weight"] = torch.zeros(w.shape[0], w.shape[1] + 5)  # no known input set is this wide
    cfg = config_for_state(FAST, state)
    assert (cfg.view_dir, cfg.normal_in) == (FAST.view_dir, FAST.normal_in)
    with pytest.raises(RuntimeError, match="color.mlp.layers.0.weight"):
        HandOcc(cfg).load_state_dict(state)
