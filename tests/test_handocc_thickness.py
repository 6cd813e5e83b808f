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
    from handcli.methods.handocc.model import migrate_config

    cfg = PRESETS["fast"]
    with_it = HandOcc(replace(cfg, bone_thickness="on")).state_dict()
    without = HandOcc(replace(cfg, bone_thickness="off")).state_dict()
    assert "thickness.p" in HandOcc(replace(cfg, bone_thickness="auto")).state_dict()
    assert config_for_state(replace(cfg, bone_thickness="off"), with_it).bone_thickness == "on"
    assert config_for_state(replace(cfg, bone_thickness="auto"), with_it).bone_thickness == "auto"
    for value in ("on", "auto"):
        assert config_for_state(replace(cfg, bone_thickness=value), without).bone_thickness == "off"
    # runs saved before "auto" wrote a bool, runs before the option nothing
    done = {"occ_anneal": "auto", "anneal_missed": 0.005, "cal_render": False}
    assert migrate_config({**done, "bone_thickness": True})["bone_thickness"] == "on"
    assert migrate_config({**done, "bone_thickness": False})["bone_thickness"] == "off"
    assert migrate_config(done)["bone_thickness"] == "off"
    assert migrate_config({**done, "bone_thickness": "auto"})["bone_thickness"] == "auto"


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
    m = _full(tiny_cache, steps=10, refine_start=0.5, bone_thickness="on")
    p = m.model.thickness.p
    for step, learned in ((0, False), (6, True)):
        m.model.zero_grad(set_to_none=True)
        loss, _ = m.train_step(step, torch.Generator().manual_seed(0))
        loss.backward()
        assert (p.grad is not None and float(p.grad.abs().sum()) > 0) is learned, step


def test_auto_thickness_and_label_pose_follow_the_labels_anneal(tiny_cache):
    """``bone_thickness`` and ``labels_pose`` "auto": the thickness is learned and the labels posed on the refined
    skeleton only where the labels are annealed (here forced with ``occ_anneal``)."""
    from tests.test_handocc import _full

    for anneal, learned in (("off", False), ("on", True)):
        torch.manual_seed(0)
        m = _full(tiny_cache, steps=10, refine_start=0.5, occ_anneal=anneal)
        assert (m.cfg.bone_thickness, m.cfg.labels_pose) == ("auto", "auto")
        assert m.thickness_learned() is learned and m.labels_pose() == ("refined" if learned else "joints")
        loss, _ = m.train_step(6, torch.Generator().manual_seed(0))
        loss.backward()
        p = m.model.thickness.p
        assert (p.grad is not None and float(p.grad.abs().sum()) > 0) is learned, anneal


def test_auto_on_data_the_labels_fit_trains_as_off(tiny_cache, tmp_path):
    """Where the anneal's check does not fire (the ideal tiny set), "auto" trains bit for bit as "off" / "joints"
    and renders without the (never learned) thickness."""
    from handcli.methods.trainer import train
    from tests.test_handocc import _full

    states = []
    for k, kw in enumerate(({}, {"bone_thickness": "off", "labels_pose": "joints"})):
        torch.manual_seed(0)
        m = _full(tiny_cache, steps=12, refine_start=0.5, occ_anneal_start=0.25, occ_anneal_end=0.5, **kw)
        (tmp_path / str(k)).mkdir()
        train(m, tmp_path / str(k), steps=12, lr=5e-3, lr_final=1e-3, seed=0, resume=False, ckpt_every=10 ** 6)
        assert not m.labels_annealed()
        states.append(m.model.state_dict())
    auto, off = states
    assert not bool(auto.pop("thickness.p").any()) and auto.keys() == off.keys()
    changed = [k for k in off if not torch.equal(auto[k], off[k])]
    assert not changed, changed
