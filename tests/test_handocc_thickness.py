"""The learned bone thickness (`thickness.py`): hand-computed coordinates, identity at the start, the fast and
reference paths agree, the mask loss reaches it, the labels do not, the root bones keep scale 1, and a run loads
with the module it had."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from handcli.methods.handocc.method import config_for_state
from handcli.methods.handocc.model import PRESETS, HandOcc, render_rays
from handcli.methods.handocc.thickness import thicken
from tests.test_handocc_fast_render import _scene


def test_thicken_by_hand():
    # bone of length 0.05 m; a point beside its middle at radius 0.2 (1 cm) and one 0.1 past its end
    local = torch.tensor([[0.5, 0.2, 0.0], [1.1, 0.0, 0.3], [-0.2, 0.0, 0.0]])
    length = torch.full((3,), 0.05)
    log_scale = torch.full((3,), math.log(2.0))  # twice as thick: coordinates halved radially
    u, d = thicken(local, length, log_scale)
    assert torch.allclose(u, torch.tensor([[0.5, 0.1, 0.0], [1.1, 0.0, 0.15], [-0.2, 0.0, 0.0]]))
    assert torch.allclose(d, torch.tensor([0.005, 0.05 * math.hypot(0.1, 0.15), 0.01]))
    u0, d0 = thicken(local, length, torch.zeros(3))  # scale 1: the capsule distance itself
    assert torch.equal(u0, local)
    assert torch.allclose(d0, torch.tensor([0.01, 0.05 * math.hypot(0.1, 0.3), 0.01]))


def _tube_field(model: HandOcc, radius_cm: float = 0.5) -> None:
    """Make every part's occupancy a tube about its bone: logit 4 (radius - distance) in cm."""
    parts = model.occ.parts
    with torch.no_grad():
        for t in (parts.w0, parts.b0, parts.wh, parts.bh, parts.wo, model.occ.pose_w, model.occ.pose_b):
            t.zero_()
        parts.w0[:, parts.in_dim - 1, 0] = 1.0  # the first hidden unit is the distance (cm; the last input)
        parts.wo[:, 0] = -4.0
        parts.bo.fill_(4.0 * radius_cm)


def _thick_scene(tiny_cache, hands):
    model, hs, o, d = _scene(tiny_cache, hands)
    _tube_field(model)
    thick = HandOcc(replace(PRESETS["fast"], bone_thickness=True))
    thick.load_state_dict({**model.state_dict(), "thickness.p": torch.zeros(2, 20)})
    return model, thick, hs, o, d


def test_thickness_starts_as_identity_and_fast_equals_reference(tiny_cache):
    model, thick, hs, o, d = _thick_scene(tiny_cache, 2)
    for m in (model, thick):
        m.eval()
    with torch.no_grad():
        base = render_rays(model, hs, model.default_codes(hs), o, d)
        same = render_rays(thick, hs, thick.default_codes(hs), o, d)
        assert float((same["rgb"] - base["rgb"]).abs().max()) < 1e-4
        thick.thickness.p[0].fill_(0.1)  # right hand 1.22x thicker, left 0.82x
        thick.thickness.p[1].fill_(-0.1)
        ref = render_rays(thick, hs, thick.default_codes(hs), o, d, reference=True)
        fast = render_rays(thick, hs, thick.default_codes(hs), o, d)
    for k in ("rgb", "depth", "opacity", "hand_opacity"):
        assert torch.allclose(fast[k], ref[k], atol=1e-4, rtol=0), k
    side = [h.side for h in hs]
    right, left = base["hand_opacity"][:, side.index("right")], base["hand_opacity"][:, side.index("left")]
    t_right, t_left = fast["hand_opacity"][:, side.index("right")], fast["hand_opacity"][:, side.index("left")]
    # a thicker right hand covers more of the image, a thinner left one less
    assert float(t_right.sum()) > 1.05 * float(right.sum())
    assert float(t_left.sum()) < 0.95 * float(left.sum())


def test_mask_loss_reaches_thickness_and_labels_do_not(tiny_cache):
    _, thick, hs, o, d = _thick_scene(tiny_cache, 1)
    thick.train()
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:800]
    out = render_rays(thick, hs, None, o[rows], d[rows], perturb=True, gen=torch.Generator().manual_seed(2),
                      train=True)
    # a mask that wants more hand everywhere the render sees some: thicker
    target = (out["hand_opacity"].detach() > 0.01).float()
    loss = torch.nn.functional.binary_cross_entropy(out["hand_opacity"].clamp(1e-5, 1 - 1e-5), target)
    (g,) = torch.autograd.grad(loss, thick.thickness.p)
    side = 0 if hs[0].side == "right" else 1
    assert float(g[side].sum()) < 0  # gradient descent raises the scale
    assert float(g[1 - side].abs().max()) == 0
    x = hs[0].box_min + (hs[0].box_max - hs[0].box_min) * torch.rand(500, 3, generator=torch.Generator().manual_seed(1))
    occ = thick.occ(hs[0], x, soft=True)["occ"]  # what the occupancy labels supervise
    assert torch.autograd.grad(occ.sum(), thick.thickness.p, allow_unused=True)[0] is None


def test_run_loads_with_its_thickness():
    cfg = PRESETS["fast"]
    with_it = HandOcc(replace(cfg, bone_thickness=True)).state_dict()
    without = HandOcc(replace(cfg, bone_thickness=False)).state_dict()
    assert config_for_state(replace(cfg, bone_thickness=False), with_it).bone_thickness
    assert not config_for_state(replace(cfg, bone_thickness=True), without).bone_thickness


def test_root_bones_keep_their_thickness():
    from handcli.hand.skeleton_frames import ROOT_BONES
    from handcli.methods.handocc.thickness import BoneThickness

    t = BoneThickness()
    with torch.no_grad():
        t.p.fill_(0.1)
    s = t.log_scale("left")
    fingers = [b for b in range(20) if b not in ROOT_BONES]
    assert torch.allclose(s[fingers], torch.full((15,), 0.2))
    assert torch.equal(s[ROOT_BONES], torch.zeros(5))
    assert abs(t.mean_scale() - math.exp(0.2)) < 1e-6


def test_thickness_is_learned_from_refine_start(tiny_cache):
    """Before ``refine_start`` a training step leaves the scales without a gradient (Adam skips them); after it the
    rendering losses reach them."""
    from tests.test_handocc import _full

    torch.manual_seed(0)
    m = _full(tiny_cache, steps=10, refine_start=0.5, bone_thickness=True)
    p = m.model.thickness.p
    for step, learned in ((0, False), (6, True)):
        m.model.zero_grad(set_to_none=True)
        loss, _ = m.train_step(step, torch.Generator().manual_seed(0))
        loss.backward()
        assert (p.grad is not None and float(p.grad.abs().sum()) > 0) is learned, step
