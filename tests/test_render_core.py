"""Rays, bounds, samplers, volume rendering and composition against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch

from handcli.render.bounds import aabb_from_points, ray_aabb, ray_capsules
from handcli.render.composite import composite_samples
from handcli.render.rays import camera_rays, pixel_grid, pixel_radii
from handcli.render.samplers import (
    blur_weights,
    edges_to_intervals,
    interval_samples_from_hits,
    midpoints,
    sample_pdf,
    stratified_samples,
)
from handcli.render.volume import (
    ray_distance_to_z,
    render_depth,
    render_features,
    render_opacity,
    render_rgb,
    render_weights,
    weights_from_alpha,
)

DT = torch.float64


def _rot(axis: str, deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=DT)


def _camera(device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    K = torch.tensor([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]], dtype=DT)
    w2c = torch.eye(4, dtype=DT)
    w2c[:3, :3] = _rot("y", 20) @ _rot("x", -10)
    w2c[:3, 3] = torch.tensor([0.1, -0.05, 0.7], dtype=DT)
    return K.to(device), w2c.to(device)


def _on(device, outs):
    """Check that every tensor of ``outs`` is on ``device``; return them on the CPU (for comparisons)."""
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert all(o.device.type == torch.device(device).type for o in outs), [o.device for o in outs]
    return tuple(o.cpu() for o in outs) if len(outs) > 1 else outs[0].cpu()


# ---------------------------------------------------------------- rays

def test_pixel_grid_order_and_centres(device):
    g = _on(device, pixel_grid(2, 3, device=device))
    assert g.shape == (6, 2)
    assert g.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]


def test_camera_rays_project_back_to_pixel(device):
    pix = torch.tensor([[0.0, 0.0], [320.0, 240.0], [639.0, 479.0], [12.5, 300.0]], dtype=DT)
    o, d = _on(device, camera_rays(*_camera(device), pix.to(device)))
    K, w2c = _camera()
    assert torch.allclose(d.norm(dim=-1), torch.ones(4, dtype=DT))
    # camera centre maps to the camera-frame origin
    assert torch.allclose(w2c[:3, :3] @ o[0] + w2c[:3, 3], torch.zeros(3, dtype=DT), atol=1e-12)
    for t in (0.3, 2.0):
        x_cam = (o + t * d) @ w2c[:3, :3].T + w2c[:3, 3]
        assert (x_cam[:, 2] > 0).all()  # OpenCV: in front of the camera is +z
        uv = (x_cam @ K.T)[:, :2] / x_cam[:, 2:]
        assert torch.allclose(uv, pix, atol=1e-9)


def test_camera_rays_principal_point_is_optical_axis_and_batching():
    K, w2c = _camera()
    _, d = camera_rays(K, w2c, torch.tensor([[320.0, 240.0]], dtype=DT))
    assert torch.allclose(d[0], w2c[2, :3], atol=1e-12)  # camera +z axis in world
    w2c_b = torch.stack([w2c, torch.eye(4, dtype=DT)])
    pix = pixel_grid(3, 4, dtype=DT)
    ob, db = camera_rays(K, w2c_b, pix)
    assert ob.shape == db.shape == (2, 12, 3)
    o1, d1 = camera_rays(K, torch.eye(4, dtype=DT), pix)
    assert torch.allclose(db[1], d1) and torch.allclose(ob[1], o1)


def test_pixel_radii_match_mipnerf_finite_difference(device):
    K = torch.tensor([[400.0, 0.0, 8.0], [0.0, 400.0, 6.0], [0.0, 0.0, 1.0]], dtype=DT, device=device)
    w2c = torch.eye(4, dtype=DT, device=device)
    w2c[:3, :3] = _rot("z", 30)
    r = _on(device, pixel_radii(K, w2c, torch.tensor([[8.0, 6.0]], dtype=DT, device=device)))
    # At the principal point the neighbour's unit direction is at angle atan(1/f).
    expected = 2 * math.sin(math.atan(1 / 400) / 2) * 2 / math.sqrt(12)
    assert r.item() == pytest.approx(expected, rel=1e-9)
    # Away from the centre: compare with distances between unit directions on an explicit grid.
    H, W = 12, 16
    _, d = camera_rays(K, w2c, pixel_grid(H + 1, W + 1, dtype=DT, device=device))
    d = d.reshape(H + 1, W + 1, 3)
    du = (d[:-1, 1:] - d[:-1, :-1]).norm(dim=-1)
    dv = (d[1:, :-1] - d[:-1, :-1]).norm(dim=-1)
    ref = torch.sqrt(du * dv).reshape(-1) * 2 / math.sqrt(12)
    r = _on(device, pixel_radii(K, w2c, pixel_grid(H, W, dtype=DT, device=device)))
    assert torch.allclose(r, ref.cpu(), rtol=1e-9)


# ---------------------------------------------------------------- bounds

def test_ray_aabb_hand_computed(device):
    bmin = torch.tensor([-1.0, -1.0, -1.0])
    bmax = torch.tensor([1.0, 1.0, 1.0])
    o = torch.tensor([[-5.0, 0, 0], [0, 0, -3], [0, 0, 0], [-5, 2, 0], [5, 0, 0], [-3, -3, 0],
                      [-5.0, 1.0, 0]])
    d = torch.tensor([[1.0, 0, 0], [0, 0, 2], [0, 1, 0], [1, 0, 0], [1, 0, 0],
                      [1 / math.sqrt(2), 1 / math.sqrt(2), 0], [1.0, 0, 0]])
    near, far, hit = _on(device, ray_aabb(o.to(device), d.to(device), bmin.to(device), bmax.to(device)))
    assert hit.tolist() == [True, True, True, False, False, True, True]
    # axis-aligned; unnormalised direction (t in units of d); start inside; parallel miss; box behind
    assert near[:3].tolist() == pytest.approx([4.0, 1.0, 0.0])
    assert far[:3].tolist() == pytest.approx([6.0, 2.0, 1.0])
    assert near[3] == far[3] == 0
    # diagonal through the corner region: enters at (-1,-1), leaves at (1,1)
    assert near[5].item() == pytest.approx(2 * math.sqrt(2), rel=1e-6)
    assert far[5].item() == pytest.approx(4 * math.sqrt(2), rel=1e-6)
    # zero direction component with origin on the box face counts as inside that slab
    assert (near[6].item(), far[6].item()) == pytest.approx((4.0, 6.0))
    assert torch.isfinite(near).all() and torch.isfinite(far).all()


def test_ray_aabb_per_ray_boxes_and_multiple_boxes():
    o = torch.zeros(2, 3)
    d = torch.tensor([[0.0, 0, 1], [0, 0, 1]])
    bmin = torch.tensor([[-1.0, -1, 2], [-1, -1, 5]])
    bmax = torch.tensor([[1.0, 1, 3], [1, 1, 7]])
    near, far, hit = ray_aabb(o, d, bmin, bmax)
    assert near.tolist() == [2.0, 5.0] and far.tolist() == [3.0, 7.0] and hit.all()
    near, far, hit = ray_aabb(o[:, None], d[:, None], bmin, bmax)  # (N, K)
    assert near.shape == (2, 2) and near[1].tolist() == [2.0, 5.0]


def test_aabb_from_points():
    p = torch.tensor([[[0.0, 1, 2], [3, -1, 0]], [[1, 1, 1], [1, 1, 1]]])
    lo, hi = aabb_from_points(p, pad=0.5)
    assert lo.tolist() == [[-0.5, -1.5, -0.5], [0.5, 0.5, 0.5]]
    assert hi.tolist() == [[3.5, 1.5, 2.5], [1.5, 1.5, 1.5]]


def _segment_distance(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """p (N, T, 3), a/b (K, 3) -> (N, K, T)."""
    ba = b - a
    ap = p[:, None] - a[None, :, None]
    s = ((ap * ba[None, :, None]).sum(-1) / (ba * ba).sum(-1).clamp_min(1e-12)[None, :, None]).clamp(0, 1)
    return (ap - s[..., None] * ba[None, :, None]).norm(dim=-1)


def test_ray_capsules_against_brute_force(device):
    g = torch.Generator().manual_seed(0)
    K, N, T = 5, 400, 4001
    a = torch.rand(K, 3, generator=g, dtype=DT) - 0.5
    b = a + 0.4 * (torch.rand(K, 3, generator=g, dtype=DT) - 0.5)
    b[0] = a[0]  # degenerate capsule = sphere
    b[1] = a[1] + torch.tensor([0.0, 0.0, 0.3], dtype=DT)  # axis along z, hit by rays parallel to it
    radius = torch.tensor([0.08, 0.05, 0.1, 0.06, 0.07], dtype=DT)
    o = 2.0 * (torch.rand(N, 3, generator=g, dtype=DT) - 0.5)
    o[:, 2] -= 1.5
    target = a[torch.arange(N) % K] + 0.15 * (torch.rand(N, 3, generator=g, dtype=DT) - 0.5)
    d = target - o
    d[:20] = torch.tensor([0.0, 0.0, 1.0], dtype=DT)  # parallel to capsule 1's axis
    o[:20, :2] = a[1, :2] + 0.06 * (torch.rand(20, 2, generator=g, dtype=DT) - 0.5)
    o[20:30] = a[2] + 0.3 * (b[2] - a[2])  # rays starting inside capsule 2
    d = d / d.norm(dim=-1, keepdim=True)
    near, far, hit = _on(device, ray_capsules(o.to(device), d.to(device), a.to(device), b.to(device),
                                              radius.to(device)))

    t = torch.linspace(0, 4, T, dtype=DT)
    p = o[:, None] + t[None, :, None] * d[:, None]
    inside = _segment_distance(p, a, b) <= radius[None, :, None]
    step = 4 / (T - 1)
    bf_hit = inside.any(-1)
    idx = torch.arange(T)
    first = torch.where(inside, idx, T).amin(-1)
    last = torch.where(inside, idx, -1).amax(-1)
    # sampled hits are hits; analytic hits missed by sampling must be thinner than one step
    assert (hit | ~bf_hit).all()
    assert ((far - near)[hit & ~bf_hit] < 2 * step).all()
    both = hit & bf_hit
    assert both[:20, 1].all() and both[20:30, 2].all()
    assert (near[20:30, 2] == 0).all()
    assert torch.allclose(near[both], t[first[both]], atol=1.01 * step)
    assert torch.allclose(far[both], t[last[both]], atol=1.01 * step)
    # capsule convexity: every sample strictly inside [near, far] is inside the capsule
    tn = 0.5 * (near + far)
    pm = o[:, None] + tn[..., None] * d[:, None]
    dist = (pm - a) - (((pm - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1).clamp_min(1e-12)).clamp(0, 1)[
        ..., None] * (b - a)
    assert (dist.norm(dim=-1)[hit] <= radius.expand(N, K)[hit] + 1e-9).all()


# ---------------------------------------------------------------- samplers

def test_stratified_covers_without_gaps(device):
    near = torch.tensor([0.5, 2.0, 1.0], device=device)
    far = torch.tensor([1.5, 6.0, 1.0 + 1e-3], device=device)
    for perturb in (False, True):  # a CPU generator draws for tensors on any device
        ts, te = stratified_samples(near, far, 16, perturb, generator=torch.Generator().manual_seed(1))
        assert ts.device == te.device == near.device
        assert ts.shape == te.shape == (3, 16)
        assert torch.equal(ts[:, 0], near) and torch.equal(te[:, -1], far)
        assert torch.equal(ts[:, 1:], te[:, :-1])  # contiguous
        assert (te > ts).all()
    ts, te = stratified_samples(near, far, 4, False)
    assert ts[1].tolist() == [2.0, 3.0, 4.0, 5.0]
    a = stratified_samples(near, far, 8, True, generator=torch.Generator().manual_seed(3))
    b = stratified_samples(near, far, 8, True, generator=torch.Generator().manual_seed(3))
    c = stratified_samples(near, far, 8, True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], stratified_samples(near, far, 8, False)[0])


def test_blur_weights_hand_computed():
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0]])
    # padded [0,0,1,0,0,2,2]; pairwise maxes [0,1,1,0,2,2]; averages [.5,1,.5,1,2]
    assert blur_weights(w, pad=0.01).tolist() == [pytest.approx([0.51, 1.01, 0.51, 1.01, 2.01])]


def test_sample_pdf_concentrates_and_is_reproducible(device):
    bins = torch.linspace(0, 1, 11).expand(3, 11).contiguous()
    w = torch.zeros(3, 10)
    w[0, 3] = 1.0  # delta-like
    w[1] = 1.0  # uniform
    w[2, 7] = 3.0
    w[2, 1] = 1.0
    t = _on(device, sample_pdf(bins.to(device), w.to(device), 64, deterministic=True))
    assert t.shape == (3, 64)
    assert (t[:, 1:] >= t[:, :-1]).all()
    assert ((t[0] >= 0.3) & (t[0] <= 0.4)).all()
    assert torch.allclose(t[1], torch.linspace(0, 1, 64), atol=1e-5)
    in7 = ((t[2] >= 0.7) & (t[2] <= 0.8)).float().mean()
    in1 = ((t[2] >= 0.1) & (t[2] <= 0.2)).float().mean()
    assert in7.item() == pytest.approx(0.75, abs=0.03) and in1.item() == pytest.approx(0.25, abs=0.03)
    assert torch.equal(t, sample_pdf(bins.to(device), w.to(device), 64, deterministic=True).cpu())
    r1 = _on(device, sample_pdf(bins.to(device), w.to(device), 64, False, generator=torch.Generator().manual_seed(0)))
    r2 = _on(device, sample_pdf(bins.to(device), w.to(device), 64, False, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(r1, r2) and not torch.equal(r1, t)
    assert ((r1[0] >= 0.3) & (r1[0] <= 0.4)).all() and (r1[:, 1:] >= r1[:, :-1]).all()
    # all-zero weights fall back to uniform instead of NaN
    z = sample_pdf(bins[:1], torch.zeros(1, 10), 5, deterministic=True)
    assert torch.isfinite(z).all() and torch.allclose(z[0], torch.linspace(0, 1, 5), atol=1e-5)
    ts, te = edges_to_intervals(t)
    assert ts.shape == (3, 63) and torch.equal(ts[:, 1:], te[:, :-1])


def test_interval_samples_from_hits_union(device):
    near = torch.tensor([[1.0, 1.5, 4.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    far = torch.tensor([[2.0, 3.0, 5.0], [0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [2.0, 4.0, 0.0]])
    hit = torch.tensor([[True, True, True], [False, False, False], [True, False, False],
                        [True, True, False]])
    ts, te, valid = _on(device, interval_samples_from_hits(near.to(device), far.to(device), hit.to(device), 6))
    # ray 0: union [1, 3] ∪ [4, 5], length 3 -> 4 samples in the first segment, 2 in the second
    assert valid[0].all()
    assert ts[0].tolist() == pytest.approx([1.0, 1.5, 2.0, 2.5, 4.0, 4.5])
    assert te[0].tolist() == pytest.approx([1.5, 2.0, 2.5, 3.0, 4.5, 5.0])
    assert not valid[1].any() and (ts[1] == 0).all() and (te[1] == 0).all()
    assert ts[2].tolist() == pytest.approx([2 + i / 12 for i in range(6)])
    # a capped sample count: step 0.5 on a covered length of 2 -> 4 samples, 2 per segment
    ts, te, valid = _on(device, interval_samples_from_hits(near.to(device), far.to(device), hit.to(device), 6,
                                                           step=0.5))
    assert valid.sum(-1).tolist() == [6, 0, 1, 4]
    assert ts[3, :4].tolist() == pytest.approx([1.0, 1.5, 3.0, 3.5])
    assert (ts[3, 4:] == 4.0).all() and (te[3, 4:] == 4.0).all()  # unused: zero length at the end
    # every used sample lies inside some hit interval
    m = midpoints(ts, te)
    inside = ((m[..., None] >= near[:, None]) & (m[..., None] <= far[:, None]) & hit[:, None]).any(-1)
    assert inside[valid].all()


# ---------------------------------------------------------------- volume rendering

def test_render_weights_hand_computed(device):
    sigma = torch.tensor([[0.0, math.log(2.0), 1e4]], dtype=DT, device=device)
    ts = torch.tensor([[0.0, 1.0, 2.0]], dtype=DT, device=device)
    te = ts + 1
    w, T, a = render_weights(sigma, ts, te)
    assert w.device == T.device == a.device == sigma.device
    assert a[0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert T[0].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert w[0].tolist() == pytest.approx([0.0, 0.5, 0.5])
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=DT, device=device)
    assert render_rgb(w, rgb)[0].tolist() == pytest.approx([0.0, 0.5, 0.5])
    assert render_rgb(w, rgb, 1.0).device == sigma.device  # a scalar background is moved to the rays' device
    assert render_opacity(w).item() == pytest.approx(1.0)
    assert render_depth(w, midpoints(ts, te)).item() == pytest.approx(0.5 * 1.5 + 0.5 * 2.5)
    # infinite density saturates without NaN
    w_inf, T_inf, _ = render_weights(torch.tensor([[float("inf"), 1.0]], device=device), ts[:, :2].float(),
                                     te[:, :2].float())
    assert w_inf.tolist() == [[1.0, 0.0]] and torch.isfinite(T_inf).all()


def test_render_weights_invalid_and_background():
    sigma = torch.tensor([[math.log(2.0), 100.0, math.log(2.0)]], dtype=DT)
    ts = torch.tensor([[0.0, 1.0, 2.0]], dtype=DT)
    te = ts + 1
    valid = torch.tensor([[True, False, True]])
    w, T, a = render_weights(sigma, ts, te, valid)
    assert a[0].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert w[0].tolist() == pytest.approx([0.5, 0.0, 0.25])
    rgb = torch.tensor([[[1.0, 1, 1], [5, 5, 5], [0, 0, 0]]], dtype=DT)
    bg = torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    assert render_rgb(w, rgb, bg)[0].tolist() == pytest.approx([0.5, 0.5, 0.75])
    assert render_rgb(w, rgb, 1.0)[0].tolist() == pytest.approx([0.75, 0.75, 0.75])
    assert render_rgb(w, rgb, bg[None].expand(1, 3))[0].tolist() == pytest.approx([0.5, 0.5, 0.75])
    assert render_depth(w, midpoints(ts, te), normalize=True).item() == pytest.approx(
        (0.5 * 0.5 + 0.25 * 2.5) / 0.75)
    f = render_features(w, torch.arange(6, dtype=DT).reshape(1, 3, 2))
    assert f[0].tolist() == pytest.approx([0.5 * 0 + 0.25 * 4, 0.5 * 1 + 0.25 * 5])


def test_weights_from_alpha_matches_density_path():
    g = torch.Generator().manual_seed(0)
    sigma = 5 * torch.rand(4, 16, generator=g, dtype=DT)
    ts, te = stratified_samples(torch.zeros(4, dtype=DT), torch.ones(4, dtype=DT), 16, True, generator=g)
    w, T, a = render_weights(sigma, ts, te)
    w2, T2 = weights_from_alpha(a)
    assert torch.allclose(w, w2) and torch.allclose(T, T2)
    # total weight = 1 − exp(−∫σ)
    assert torch.allclose(render_opacity(w), 1 - torch.exp(-(sigma * (te - ts)).sum(-1)))


def test_ray_distance_to_z():
    K, w2c = _camera()
    pix = torch.tensor([[320.0, 240.0], [0.0, 0.0]], dtype=DT)
    o, d = camera_rays(K, w2c, pix)
    z = ray_distance_to_z(torch.tensor([2.0, 2.0], dtype=DT), d, w2c)
    assert z[0].item() == pytest.approx(2.0)
    # oblique ray: cosine to the optical axis, from the pixel's camera-frame direction
    dc = torch.tensor([(0 - 320) / 500.0, (0 - 240) / 480.0, 1.0], dtype=DT)
    assert z[1].item() == pytest.approx(2.0 / dc.norm().item())
    x_cam = w2c[:3, :3] @ (o[1] + 2.0 * d[1]) + w2c[:3, 3]
    assert z[1].item() == pytest.approx(x_cam[2].item())
    zb = ray_distance_to_z(torch.full((2, 2), 2.0, dtype=DT), d.expand(2, 2, 3), w2c.expand(2, 4, 4))
    assert torch.allclose(zb, z.expand(2, 2))


# ---------------------------------------------------------------- composition

def _to(s: dict, device) -> dict:
    """A sample set (nested dict of tensors) on ``device``."""
    return {k: _to(v, device) if isinstance(v, dict) else v.to(device) if torch.is_tensor(v) else v
            for k, v in s.items()}


def _render_set(s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    w, _, _ = render_weights(s["sigma"], s["t_starts"], s["t_ends"], s.get("valid"))
    return render_rgb(w, s["values"]["rgb"]), w


def test_composite_matches_brute_force_sort(device):
    g = torch.Generator().manual_seed(0)
    N = 5

    def make(lo, hi, S, color):
        ts, te = stratified_samples(torch.full((N,), lo, dtype=DT), torch.full((N,), hi, dtype=DT), S, True,
                                    generator=g)
        sigma = 3 * torch.rand(N, S, generator=g, dtype=DT)
        rgb = torch.tensor(color, dtype=DT).expand(N, S, 3)
        return {"t_starts": ts, "t_ends": te, "sigma": sigma, "values": {"rgb": rgb}}

    right, left = make(1.0, 2.0, 8, [1, 0, 0]), make(1.5, 2.5, 6, [0, 0, 1])
    left["valid"] = torch.rand(N, 6, generator=g) > 0.3
    m = composite_samples([_to(right, device), _to(left, device)])
    assert m["t_starts"].device.type == m["values"]["rgb"].device.type == torch.device(device).type
    m = _to(m, "cpu")
    assert m["t_starts"].shape == (N, 14) and m["values"]["rgb"].shape == (N, 14, 3)
    mids = midpoints(m["t_starts"], m["t_ends"])
    assert (mids[:, 1:] >= mids[:, :-1]).all()
    assert (m["source"] == 0).sum(-1).tolist() == [8] * N
    # brute force: per ray, python-sort the union of samples and render
    ref = []
    for n in range(N):
        items = [(float(midpoints(s["t_starts"], s["t_ends"])[n, i]), k, i) for k, s in enumerate([right, left])
                 for i in range(s["t_starts"].shape[1])]
        items.sort(key=lambda x: x[0])
        sets = [right, left]
        ts = torch.tensor([[float(sets[k]["t_starts"][n, i]) for _, k, i in items]], dtype=DT)
        te = torch.tensor([[float(sets[k]["t_ends"][n, i]) for _, k, i in items]], dtype=DT)
        sg = torch.tensor([[float(sets[k]["sigma"][n, i]) for _, k, i in items]], dtype=DT)
        vd = torch.tensor([[bool(sets[k].get("valid", torch.ones(N, 8, dtype=torch.bool))[n, i])
                            for _, k, i in items]])
        col = torch.stack([sets[k]["values"]["rgb"][n, i] for _, k, i in items])[None]
        w, _, _ = render_weights(sg, ts, te, vd)
        ref.append(render_rgb(w, col)[0])
    rgb, w = _render_set(m)
    assert torch.allclose(rgb, torch.stack(ref))
    # per-set contributions via `source` add up to the total
    red_share = (w * (m["source"] == 0)).sum(-1)
    assert torch.allclose(red_share, rgb[:, 0])


def test_composite_opaque_near_hand_hides_far_hand():
    ts_far, te_far = torch.tensor([[3.0, 3.5]]), torch.tensor([[3.5, 4.0]])
    ts_near, te_near = torch.tensor([[1.0, 1.5]]), torch.tensor([[1.5, 2.0]])
    far_set = {"t_starts": ts_far, "t_ends": te_far, "sigma": torch.full((1, 2), 50.0),
               "values": {"rgb": torch.tensor([[[0.0, 0, 1], [0, 0, 1]]])}}
    near_set = {"t_starts": ts_near, "t_ends": te_near, "sigma": torch.full((1, 2), 1e3),
                "values": {"rgb": torch.tensor([[[1.0, 0, 0], [1, 0, 0]]])}}
    m = composite_samples([far_set, near_set])  # listed far first: order must come from depth
    assert m["source"].tolist() == [[1, 1, 0, 0]]
    rgb, _ = _render_set(m)
    assert rgb[0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    with pytest.raises(ValueError):
        composite_samples([far_set, {**near_set, "values": {"semantic": torch.zeros(1, 2, 3)}}])
