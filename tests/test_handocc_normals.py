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
from handcli.methods.handocc.normals import NormalDetail, capsule_normals

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
    base.load_state_dict({**{k: v for k, v in model.state_dict().items() if not k.startswith("normal_detail.")},
                          "color.mlp.layers.0.weight": w.detach()[:, :-3].clone()})  # no relief without the normal
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
        p = torch.arange(len(x))
        with torch.no_grad():  # the model's learned relief starts at zero: these are the capsule normals
            q = model.occ(hand, x)
            n = _normals(model, q, p, hand.world_axes())
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


def test_capsule_normals_tilted_by_a_residual_by_hand():
    local = torch.tensor([[0.5, 0.2, 0.0]])  # the capsule normal is local y
    up = torch.tensor([[0.0, 0.0, 1.0]])  # a residual along local z: 45 degrees towards it
    s = 0.5 ** 0.5
    assert torch.allclose(capsule_normals(local, torch.eye(3)[None], up), torch.tensor([[0.0, s, s]]), atol=1e-6)
    turn = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # local y = world -x
    assert torch.allclose(capsule_normals(local, turn, up), torch.tensor([[-s, 0.0, s]]), atol=1e-6)
    assert torch.allclose(capsule_normals(local, turn, torch.zeros(1, 3)), capsule_normals(local, turn))


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(seed)))
    return q * torch.linalg.det(q)[:, None, None]  # proper rotations


def test_normal_detail_learns_a_relief_that_turns_with_the_bone():
    """Shading under a light fixed in the world, of a relief fixed in the bone's frame, seen in 8 bone rotations:
    the learned residual must predict the shading in rotations it has not seen, where the capsule normal cannot."""
    g = torch.Generator().manual_seed(0)
    x, th = torch.rand(512, generator=g), 2 * torch.pi * torch.rand(512, generator=g)
    local = torch.stack([x, 0.3 * th.cos(), 0.3 * th.sin()], -1)  # a shell around the bone
    relief = 0.4 * torch.stack([torch.sin(6 * x + th), torch.zeros_like(x), torch.cos(3 * th + 4 * x)], -1)
    light = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)

    def shade(axes: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:  # (K, R) half-Lambert
        return torch.stack([0.5 + 0.5 * capsule_normals(local, a.expand(len(local), 3, 3), residual) @ light
                            for a in axes])

    seen, unseen = _random_rotations(8, 1), _random_rotations(8, 2)
    target_seen, target_unseen = shade(seen, relief), shade(unseen, relief)
    torch.manual_seed(0)
    detail = NormalDetail(1, FAST.normal_pe_deg, FAST.normal_hidden)
    part = torch.zeros(len(local), dtype=torch.long)
    assert float(detail(local, part).detach().abs().max()) == 0.0  # starts as the capsule normal
    opt = torch.optim.Adam(detail.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        (shade(seen, detail(local, part)) - target_seen).square().mean().backward()
        opt.step()
    with torch.no_grad():
        capsule_err = (shade(unseen, None) - target_unseen).square().mean()
        learned_err = (shade(unseen, detail(local, part)) - target_unseen).square().mean()
    assert float(learned_err) < 0.1 * float(capsule_err), (float(learned_err), float(capsule_err))


def test_normal_detail_starts_as_without_fast_path_equals_reference_and_loads(tiny_cache):
    from handcli.methods.handocc.model import _normals

    scene, hs, o, d = _scene(tiny_cache, 2)
    model = HandOcc(replace(FAST, normal_detail=True))
    model.load_state_dict({**scene.state_dict(), **{k: v for k, v in model.state_dict().items()
                                                    if k.startswith("normal_detail.")}})
    base = HandOcc(replace(FAST, normal_detail=False))
    torch.manual_seed(8)
    with torch.no_grad():  # a colour that depends on the normal
        torch.nn.init.normal_(model.color.mlp.out.weight, std=0.3)
        model.color.mlp.layers[0].weight[:, -3:] = torch.randn(model.color.mlp.layers[0].weight.shape[0], 3)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normal_detail.")})
    for m in (base, model):
        m.eval()
    with torch.no_grad():
        before = render_rays(base, hs, base.default_codes(hs), o, d)
        assert torch.allclose(render_rays(model, hs, model.default_codes(hs), o, d)["rgb"], before["rgb"], atol=1e-6)
        torch.nn.init.normal_(model.normal_detail.mlp.out.weight, std=0.5)  # a relief
        ref = render_rays(model, hs, model.default_codes(hs), o, d, reference=True)
        fast = render_rays(model, hs, model.default_codes(hs), o, d)
        hand = hs[0]
        q = model.occ(hand, hand.box_min + (hand.box_max - hand.box_min) * torch.rand(100, 3))
        p = torch.arange(100)
        tilt = (_normals(model, q, p, hand.world_axes()) * _normals(base, q, p, hand.world_axes())).sum(-1)
    assert torch.allclose(fast["rgb"], ref["rgb"], atol=1e-4, rtol=0)
    assert float((fast["rgb"] - before["rgb"]).abs().max()) > 0.02  # the relief changes the colour
    assert float(tilt.min()) < 0.99  # the relief tilts the normals
    # a run loads with the module it was trained with, whatever the default
    assert config_for_state(FAST, model.state_dict()).normal_detail
    assert not config_for_state(replace(FAST, normal_detail=True), base.state_dict()).normal_detail
    HandOcc(config_for_state(FAST, model.state_dict())).load_state_dict(model.state_dict())


def test_normal_detail_has_no_module_without_the_normal_input():
    assert not hasattr(HandOcc(replace(FAST, normal_in=False)), "normal_detail")  # the default with normal_in off
    assert hasattr(HandOcc(FAST), "normal_detail")
