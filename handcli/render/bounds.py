"""Ray bounds: where along each ray a hand or object can be (boxes, skeleton capsules).

Conventions: a ray is o + t·d with t >= `near_plane` (0 by default: nothing behind the camera);
`near`/`far` are in units of t (metres for unit directions). Missed rays get near = far = 0 and hit False.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ray_aabb(origins: Tensor, dirs: Tensor, box_min: Tensor, box_max: Tensor,
             near_plane: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Slab-method ray / axis-aligned box intersection.

    origins, dirs: (N, 3); box_min, box_max: (3,) or (N, 3). All broadcast over leading dimensions, so
    origins[:, None] with boxes (K, 3) gives (N, K) results. Directions need not be unit; zero components
    are handled exactly (the ray is then inside that slab for all t or for none).
    Returns near (...,), far (...,), hit (...,) bool with near >= near_plane; a ray starting inside the box
    gets near = near_plane. A ray that only grazes the box (far == near) is not a hit.
    """
    zero = dirs == 0
    safe = torch.where(zero, torch.ones_like(dirs), dirs)
    ta = (box_min - origins) / safe
    tb = (box_max - origins) / safe
    inside = (origins >= box_min) & (origins <= box_max)
    inf = torch.full_like(ta, float("inf"))
    lo = torch.where(zero, torch.where(inside, -inf, inf), torch.minimum(ta, tb))
    hi = torch.where(zero, torch.where(inside, inf, -inf), torch.maximum(ta, tb))
    near = lo.amax(dim=-1).clamp_min(near_plane)
    far = hi.amin(dim=-1)
    hit = far > near
    zeros = torch.zeros_like(near)
    return torch.where(hit, near, zeros), torch.where(hit, far, zeros), hit


def aabb_from_points(points: Tensor, pad: float = 0.0) -> tuple[Tensor, Tensor]:
    """Axis-aligned box around points (..., P, 3), grown by `pad` on every side: (box_min, box_max) (..., 3)."""
    return points.amin(dim=-2) - pad, points.amax(dim=-2) + pad


def _quadratic_interval(a: Tensor, half_b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Roots of a·t² + 2·half_b·t + c <= 0 for a > 0: (t0, t1, nonempty)."""
    disc = half_b * half_b - a * c
    ok = (disc > 0) & (a > 0)
    sq = torch.sqrt(disc.clamp_min(0))
    a_safe = torch.where(a > 0, a, torch.ones_like(a))
    return (-half_b - sq) / a_safe, (-half_b + sq) / a_safe, ok


def ray_capsules(origins: Tensor, dirs: Tensor, a: Tensor, b: Tensor, radius: Tensor | float,
                 near_plane: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Ray / capsule intersection (capsule = points within `radius` of segment a–b, e.g. one bone).

    origins, dirs: (N, 3); a, b: (K, 3) segment end points; radius: float or (K,).
    Returns near (N, K), far (N, K), hit (N, K). A capsule is convex, so its intersection with a ray is one
    interval: the union of the ray's intervals in the two end spheres and in the cylinder clipped to the
    segment's slab. Degenerate segments (a == b) are spheres.
    """
    o = origins[:, None, :]
    d = dirs[:, None, :]
    r = torch.as_tensor(radius, dtype=origins.dtype, device=origins.device)
    r2 = (r * r).expand(a.shape[:1])  # (K,)
    dd = (d * d).sum(-1)  # (N, 1)

    def sphere(c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        oc = o - c
        return _quadratic_interval(dd.expand(-1, c.shape[0]), (oc * d).sum(-1), (oc * oc).sum(-1) - r2)

    s_a = sphere(a)
    s_b = sphere(b)

    ba = b - a  # (K, 3)
    len2 = (ba * ba).sum(-1)  # (K,)
    has_axis = len2 > 0
    len2_safe = torch.where(has_axis, len2, torch.ones_like(len2))
    oa = o - a
    d_ax = (d * ba).sum(-1) / len2_safe  # axial coordinate rate, (N, K)
    o_ax = (oa * ba).sum(-1) / len2_safe  # axial coordinate at t = 0
    v = d - d_ax[..., None] * ba  # perpendicular parts
    w = oa - o_ax[..., None] * ba
    vv = (v * v).sum(-1)
    cylinder_c = (w * w).sum(-1) - r2
    c0, c1, c_ok = _quadratic_interval(vv, (v * w).sum(-1), cylinder_c)
    # Ray parallel to the axis: inside the infinite cylinder for all t, or never.
    parallel = vv <= 1e-12 * dd
    inf = torch.full_like(c0, float("inf"))
    c0 = torch.where(parallel, -inf, c0)
    c1 = torch.where(parallel, inf, c1)
    c_ok = torch.where(parallel, cylinder_c < 0, c_ok)
    # Clip to the slab 0 <= o_ax + t·d_ax <= 1.
    zero_rate = d_ax == 0
    rate = torch.where(zero_rate, torch.ones_like(d_ax), d_ax)
    sa, sb = (0 - o_ax) / rate, (1 - o_ax) / rate
    in_slab = (o_ax >= 0) & (o_ax <= 1)
    s0 = torch.where(zero_rate, torch.where(in_slab, -inf, inf), torch.minimum(sa, sb))
    s1 = torch.where(zero_rate, torch.where(in_slab, inf, -inf), torch.maximum(sa, sb))
    c0, c1 = torch.maximum(c0, s0), torch.minimum(c1, s1)
    c_ok = c_ok & (c1 > c0) & has_axis

    starts = torch.stack([s_a[0], s_b[0], c0], dim=-1)
    ends = torch.stack([s_a[1], s_b[1], c1], dim=-1)
    ok = torch.stack([s_a[2], s_b[2], c_ok], dim=-1)
    near = torch.where(ok, starts, inf[..., None]).amin(-1).clamp_min(near_plane)
    far = torch.where(ok, ends, -inf[..., None]).amax(-1)
    hit = ok.any(-1) & (far > near)
    zeros = torch.zeros_like(near)
    return torch.where(hit, near, zeros), torch.where(hit, far, zeros), hit
