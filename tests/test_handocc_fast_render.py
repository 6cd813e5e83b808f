"""HandOcc's fast paths (occupancy inputs built for all pairs at once, per-part weights split once,
in-place wave writes, colour's constant inputs folded into a per-part table) equal the reference paths they
replaced: renders of one and two hands, and the gradients of a training step."""

from __future__ import annotations

import pytest
import torch

from handcli.data.cache import Cache
from handcli.methods.handocc.method import frame_joints
from handcli.methods.handocc.model import PRESETS, HandOcc, render_rays
from handcli.render.rays import camera_rays, pixel_grid


def _scene(cache_path, hands: int, preset: str = "fast"):
    cache = Cache(cache_path)
    vt, cams = cache.view_table(), cache.cameras()
    torch.manual_seed(0)
    model = HandOcc(PRESETS[preset])
    torch.manual_seed(1)
    model.ref_crops.uniform_(0.2, 0.9)
    for j in range(len(vt["frame"])):
        sk = frame_joints(cache, int(vt["frame"][j]))
        if len(sk) == hands:
            cam = cams[int(vt["camera"][j])]
            o, d = camera_rays(torch.as_tensor(cam["K"]).float(), torch.as_tensor(cam["world_to_cam"]).float(),
                               pixel_grid(cam["height"], cam["width"]))
            return model, [model.hand(torch.as_tensor(jn), s) for s, jn in sk], o, d
    raise AssertionError(f"no {hands}-hand frame in the tiny cache")


@pytest.mark.parametrize("hands", [1, 2])
@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_fast_render_equals_reference(tiny_cache, hands, preset):
    model, hs, o, d = _scene(tiny_cache, hands, preset)
    model.eval()
    with torch.no_grad():
        codes = model.default_codes(hs)
        ref = render_rays(model, hs, codes, o, d, reference=True)
        fast = render_rays(model, hs, codes, o, d)
    assert float(ref["opacity"].max()) > 0.9 and ref["color_evals"] > 100  # opaque hands, colour evaluated
    for k in ("rgb", "depth", "opacity", "hand_opacity", "weights"):
        assert torch.allclose(fast[k], ref[k], atol=1e-4, rtol=0), k
    for k in ("occ_evals", "color_evals", "samples"):
        assert fast[k] == ref[k], k


@pytest.mark.parametrize("hands", [1, 2])
def test_fast_training_step_has_reference_gradients(tiny_cache, hands):
    model, hs, o, d = _scene(tiny_cache, hands)
    model.train()
    rows = torch.randperm(len(o), generator=torch.Generator().manual_seed(0))[:600]
    x = hs[0].box_min + (hs[0].box_max - hs[0].box_min) * torch.rand(500, 3, generator=torch.Generator().manual_seed(1))
    grads = []
    for reference in (True, False):
        model.zero_grad()
        codes = model.default_codes(hs)
        out = render_rays(model, hs, codes, o[rows], d[rows], perturb=True, gen=torch.Generator().manual_seed(2),
                          train=True, reference=reference)
        occ = model.occ(hs[0], x, soft=True, reference=reference)["occ"]
        loss = out["rgb"].square().sum() + out["hand_opacity"].square().sum() + out["depth"].sum() + occ.square().sum()
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    ref, fast = grads
    assert ref.keys() == fast.keys()
    assert {"occ.parts.w0", "occ.parts.wh", "occ.parts.wo", "occ.pose_w", "color.mlp.layers.0.weight",
            "color.part.weight", "app.head.weight"} <= set(ref)
    for k in ref:
        scale = float(ref[k].abs().max())
        assert float((fast[k] - ref[k]).abs().max()) <= 1e-4 * max(scale, 1e-6), (k, scale)


def test_fast_occupancy_has_reference_joint_gradients(tiny_cache):
    """Skeleton refinement differentiates the occupancy with respect to the joints: both paths agree."""
    model, hs, _, _ = _scene(tiny_cache, 1)
    joints = hs[0].joints.clone().requires_grad_(True)
    x = hs[0].box_min + (hs[0].box_max - hs[0].box_min) * torch.rand(800, 3, generator=torch.Generator().manual_seed(4))
    grads = []
    for reference in (True, False):
        hand = model.hand(joints, hs[0].side)
        occ = model.occ(hand, x, soft=True, reference=reference)["occ"]
        (g,) = torch.autograd.grad(occ.square().sum(), joints)
        grads.append(g)
    assert float(grads[0].abs().max()) > 0
    assert float((grads[1] - grads[0]).abs().max()) <= 1e-4 * float(grads[0].abs().max())


@pytest.mark.parametrize("hands", [1, 2])
def test_one_camera_capsule_samples_equal_all_capsules(tiny_cache, hands):
    """Rays of one camera skip the capsules and rays that pass near none: the samples are those of every ray
    against every capsule, bit for bit (chunks of image rows, as the render driver sends them)."""
    from handcli.methods.handocc.sampler import capsule_samples
    from handcli.render.bounds import ray_capsules
    from handcli.render.samplers import interval_samples_from_hits

    _, hs, o, d = _scene(tiny_cache, hands)
    assert bool((o == o[:1]).all())  # the culled path is the one under test
    culled = 0
    for h in hs:
        for s in range(0, len(o), 2048):
            oc, dc = o[s:s + 2048], d[s:s + 2048]
            fast = capsule_samples(oc, dc, h.start, h.end, h.radii, 0.002, 80)
            near, far, hit = ray_capsules(oc, dc, h.start, h.end, h.radii)
            full = interval_samples_from_hits(near, far, hit, 80, 0.002)
            for a, b in zip(fast, full):
                assert torch.equal(a, b)
            if full[2].any():
                culled += int((~hit.any(0)).sum())
    assert culled > 0  # some chunk with samples sees only part of the hand
