"""HandOcc's samplers: capsule-bounded, occupancy-guided ray samples, and labelled points for occupancy.

Ray samples (the speed claim): each bone of the skeleton is wrapped in a capsule whose radius safely
bounds the hand's flesh around it (radii measured on training meshes, relative to the hand's size, and
dilated). A ray only gets samples inside the union of its capsule intervals, at a fixed step; the
occupancy network is evaluated there, and the radiance network only where the occupancy is above a
threshold (dilated by one sample along the ray) and the sample is still visible.

Occupancy supervision: points near the surface and uniformly in the box, labelled inside/outside by the
generalised winding number of a closed mesh along random lines (signed ray crossings, vectorised
Möller-Trumbore). It works for either face orientation and for self-intersecting meshes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from handcli.hand.skeleton_frames import BONE_END, BONE_START, hand_size, segment_distance
from handcli.render.bounds import ray_aabb, ray_capsules
from handcli.render.samplers import interval_samples_from_hits, stratified_samples

# Bone capsule radii / hand size (sum of bone lengths), measured on the open hand model over its named poses
# (flat, mean, fist, spread, grasp): every mesh vertex lies within its capsule. Used when no training mesh
# is available (silhouette-only supervision); runs with meshes measure their own.
DEFAULT_RELATIVE_RADII = (0.0342, 0.0261, 0.0127, 0.0117, 0.0272, 0.0157, 0.0104, 0.0097, 0.0209, 0.0165,
                          0.0106, 0.0102, 0.0209, 0.0159, 0.0100, 0.0094, 0.0335, 0.0165, 0.0088, 0.0084)


# ---------------------------------------------------------------------------------------------------------
# Capsule radii


def grow_relative_radii(rel: Tensor | None, vertices: Tensor, joints: Tensor) -> Tensor:
    """Smallest growth of per-bone relative radii (20,) so that every vertex of a posed mesh is covered.

    vertices (V, 3) and joints (21, 3) of the same hand (either side, any frame). With ``rel`` None each
    vertex is assigned to its nearest bone; otherwise uncovered vertices grow the radius of the bone whose
    capsule they are closest to. Returns new relative radii (20,) = radius / hand size.
    """
    d = segment_distance(vertices, joints[BONE_START], joints[BONE_END]) / hand_size(joints)
    if rel is None:
        return torch.zeros(20, dtype=d.dtype, device=d.device).scatter_reduce(0, d.argmin(1), d.amin(1),
                                                                              reduce="amax")
    sd = d - rel
    bad = sd.amin(1) > 0
    nb = sd.argmin(1)[bad]
    return rel.scatter_reduce(0, nb, d[bad].gather(1, nb[:, None])[:, 0], reduce="amax")


def capsule_radii(joints: Tensor, rel: Tensor, dilation: float, margin: float) -> Tensor:
    """Absolute radii (20,) for a skeleton (21, 3): rel · hand size · dilation + margin (metres)."""
    return rel * hand_size(joints) * dilation + margin


def inside_capsules(x: Tensor, start: Tensor, end: Tensor, radii: Tensor) -> Tensor:
    """Whether points (P, 3) lie in the union of capsules (start/end (20, 3), radii (20,)): (P,) bool."""
    return (segment_distance(x, start, end) - radii).amin(-1) <= 0


def capsule_box(start: Tensor, end: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """Axis-aligned box (min (3,), max (3,)) of a union of capsules."""
    pts = torch.cat([start, end])
    r = torch.cat([radii, radii])[:, None]
    return (pts - r).amin(0), (pts + r).amax(0)


# ---------------------------------------------------------------------------------------------------------
# Ray samples


def capsule_samples(origins: Tensor, dirs: Tensor, start: Tensor, end: Tensor, radii: Tensor, step: float,
                    max_samples: int) -> tuple[Tensor, Tensor, Tensor]:
    """Samples inside the union of a skeleton's bone capsules, about ``step`` apart.

    origins, dirs (N, 3) unit; start/end (20, 3) bone segments; radii (20,). Every ray uses
    min(max_samples, ceil(covered length / step)) samples (0 when it misses every capsule).
    Returns t_starts, t_ends (N, S), valid (N, S) with S = max_samples (unused samples are empty intervals
    after the used ones).
    """
    if not len(origins) or not bool((origins == origins[:1]).all()):
        near, far, hit = ray_capsules(origins, dirs, start, end, radii)
        return interval_samples_from_hits(near, far, hit, max_samples, step)
    # Rays of one camera (an image chunk): the exact intersections only for the capsules that some ray passes
    # near and the rays that pass near some capsule (a chunk of image rows sees a few bones). The dropped
    # capsules are misses for every kept ray and the dropped rays miss them all, so the samples are those of
    # all rays x all capsules. "Near" is a conservative test against each capsule's bounding sphere, with 1 mm
    # to spare for float32 rounding.
    o = origins[:1]
    m = 0.5 * (start + end) - o  # (K, 3) sphere centres relative to the common origin
    r = 0.5 * (end - start).norm(dim=-1) + radii + 1e-3
    proj = dirs @ m.T  # (N, K)
    perp2 = (m * m).sum(-1) - proj * proj / (dirs * dirs).sum(-1, keepdim=True)
    close = perp2 <= r * r
    cols = torch.nonzero(close.any(0))[:, 0]
    rows = torch.nonzero(close[:, cols].any(1))[:, 0]
    N = len(origins)
    if len(rows) == N:
        near, far, hit = ray_capsules(o, dirs, start[cols], end[cols], radii[cols])
        return interval_samples_from_hits(near, far, hit, max_samples, step)
    t0 = origins.new_zeros(N, max_samples)
    t1 = origins.new_zeros(N, max_samples)
    valid = torch.zeros(N, max_samples, dtype=torch.bool, device=origins.device)
    if len(rows):
        # origins broadcast: the one origin (1, 3) against the kept rays' directions
        near, far, hit = ray_capsules(o, dirs[rows], start[cols], end[cols], radii[cols])
        s0, s1, sv = interval_samples_from_hits(near, far, hit, max_samples, step)
        t0[rows], t1[rows], valid[rows] = s0, s1, sv
    return t0, t1, valid


def box_samples(origins: Tensor, dirs: Tensor, box_min: Tensor, box_max: Tensor, n_samples: int,
                perturb: bool = False, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The uniform baseline: ``n_samples`` stratified samples between the ray's entry and exit of a box.

    Returns t_starts, t_ends, valid (N, S); rays that miss the box have all samples invalid.
    """
    near, far, hit = ray_aabb(origins, dirs, box_min, box_max)
    t0, t1 = stratified_samples(near, far, n_samples, perturb, generator=gen)
    return t0, t1, hit[:, None].expand_as(t0).clone()


def sample_positions(t_starts: Tensor, t_ends: Tensor, perturb: bool, gen: torch.Generator | None = None
                     ) -> Tensor:
    """Where to evaluate each interval: its mid-point, or a uniform point inside it when ``perturb``."""
    if not perturb:
        return 0.5 * (t_starts + t_ends)
    dev = gen.device if gen is not None else t_starts.device
    u = torch.rand(t_starts.shape, generator=gen, device=dev, dtype=t_starts.dtype).to(t_starts.device)
    return t_starts + u * (t_ends - t_starts)


def dilate_along_ray(mask: Tensor, valid: Tensor) -> Tensor:
    """Grow a per-sample mask (N, S) by one sample towards both neighbours, within ``valid``."""
    m = mask.clone()
    m[:, 1:] |= mask[:, :-1]
    m[:, :-1] |= mask[:, 1:]
    return m & valid


# ---------------------------------------------------------------------------------------------------------
# Inside/outside labels of a closed mesh


def line_crossings(origins: Tensor, dirs: Tensor, tris: Tensor, max_hits: int = 32, chunk: int = 384
                   ) -> tuple[Tensor, Tensor]:
    """Crossings of infinite lines o + t·d (t of any sign) with a triangle mesh (Möller-Trumbore).

    origins, dirs (R, 3); tris (F, 3, 3). Returns t (R, H) sorted (misses +inf) and sign (R, H): +1 where
    the line leaves through the face's front (d·n > 0), -1 where it enters, 0 for misses; H = max_hits.
    Möller-Trumbore's triple products are rewritten as (R, 3) x (3, F) matrix products, in coordinates
    relative to the mesh's centre (t does not change).
    """
    centre = tris.reshape(-1, 3).mean(0)
    tris, origins = tris - centre, origins - centre
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    n = torch.cross(e1, e2, dim=-1)
    e2xv0 = torch.cross(e2, v0, dim=-1)
    v0xe1 = torch.cross(v0, e1, dim=-1)
    n_v0 = (n * v0).sum(-1)
    h = min(max_hits, len(tris))
    out_t, out_s = [], []
    for s in range(0, len(origins), chunk):
        o, d = origins[s:s + chunk], dirs[s:s + chunk]
        oxd = torch.cross(o, d, dim=-1)
        dn = d @ n.T  # = -det
        ok = dn.abs() > 1e-14
        inv = -1.0 / torch.where(ok, dn, torch.ones_like(dn))
        u = (oxd @ e2.T - d @ e2xv0.T) * inv
        v = (-(oxd @ e1.T) - d @ v0xe1.T) * inv
        t = (o @ n.T - n_v0) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1)
        t = torch.where(hit, t, torch.full_like(t, math.inf))
        t, order = torch.topk(t, h, dim=-1, largest=False, sorted=True)
        out_t.append(t)
        out_s.append(torch.where(torch.isfinite(t), torch.sign(dn.gather(1, order)), torch.zeros_like(t)))
    return torch.cat(out_t), torch.cat(out_s)


def winding_on_lines(t_query: Tensor, t_hits: Tensor, signs: Tensor) -> Tensor:
    """Winding number of points o + t·d on lines: sum of the signs of the crossings beyond each point.

    t_query (R, Q); t_hits, signs (R, H) from `line_crossings`. Returns (R, Q); non-zero = inside.
    """
    beyond = t_hits[:, None, :] > t_query[..., None]
    return (signs[:, None, :] * beyond).sum(-1)


def inside_mesh_on_rays(origins: Tensor, dirs: Tensor, t_query: Tensor, vertices: Tensor, faces: Tensor
                        ) -> Tensor:
    """Inside/outside of points o + t·d of a closed mesh: t_query (R, Q) -> (R, Q) bool (float64 maths)."""
    tris = vertices.double()[faces.long()]
    th, sg = line_crossings(origins.double(), dirs.double(), tris)
    return winding_on_lines(t_query.double(), th, sg) != 0


def inside_mesh(points: Tensor, vertices: Tensor, faces: Tensor, gen: torch.Generator | None = None,
                tries: int = 4) -> Tensor:
    """Inside/outside of arbitrary points (P, 3) of a closed mesh: the winding number along a random line
    through each point (a line whose crossings do not sum to zero is redrawn). Returns (P,) bool."""
    tris = vertices.double()[faces.long()]
    p = points.double()
    out = torch.zeros(len(p), dtype=torch.bool)
    todo = torch.arange(len(p))
    for _ in range(tries):
        d = torch.randn(len(todo), 3, generator=gen, dtype=torch.float64)
        d = d / d.norm(dim=-1, keepdim=True)
        th, sg = line_crossings(p[todo], d, tris)
        w = winding_on_lines(torch.zeros(len(todo), 1, dtype=torch.float64), th, sg)[:, 0]
        ok = sg.sum(-1) == 0
        out[todo[ok]] = w[ok] != 0
        todo = todo[~ok]
        if not len(todo):
            break
    return out.to(points.device)


def surface_samples(tris: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """``n`` points uniform on the surface of triangles ``tris`` (F, 3, 3) float64 (area-weighted faces, uniform
    barycentric coordinates) -> (n, 3) float64."""
    area = torch.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0], dim=-1).norm(dim=-1)
    f = torch.multinomial(area, n, replacement=True, generator=gen)
    ab = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    ab = torch.where(ab.sum(-1, keepdim=True) > 1, 1 - ab, ab)
    return tris[f, 0] + ab[:, :1] * (tris[f, 1] - tris[f, 0]) + ab[:, 1:] * (tris[f, 2] - tris[f, 0])


def labelled_points(vertices: Tensor, faces: Tensor, n: int, gen: torch.Generator, pad: float = 0.02,
                    sigma: float = 0.004, per_line: int = 16) -> tuple[Tensor, Tensor]:
    """``n`` points around a closed mesh with exact inside/outside labels.

    Random lines pass through points near the surface (surface samples + N(0, 1 cm)) or uniform in the
    mesh box padded by ``pad``; along each line, half the points are drawn around a random crossing
    (N(0, sigma)) and half uniformly across the padded box. Lines whose crossings do not sum to zero (a
    numerically grazed edge) are discarded. Returns points (n', 3) float32 and labels (n',) bool, n' <= n.
    """
    V = vertices.double()
    tris = V[faces.long()]
    n_lines = math.ceil(n / per_line)
    lo, hi = V.amin(0) - pad, V.amax(0) + pad
    n_surf = n_lines // 2
    surf = surface_samples(tris, n_surf, gen)
    surf = surf + 0.01 * torch.randn(n_surf, 3, generator=gen, dtype=torch.float64)
    unif = lo + (hi - lo) * torch.rand(n_lines - n_surf, 3, generator=gen, dtype=torch.float64)
    anchors = torch.cat([surf, unif])
    d = torch.randn(n_lines, 3, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    th, sg = line_crossings(anchors, d, tris)
    closed = sg.sum(-1) == 0
    near, far, _ = ray_aabb(anchors, d, lo, hi, near_plane=-1e9)
    n_near = per_line // 2
    hits = torch.isfinite(th).sum(-1)
    pick = (torch.rand(n_lines, n_near, generator=gen, dtype=torch.float64) * hits.clamp_min(1)[:, None]).long()
    t_near = th.gather(1, pick.clamp_max(th.shape[1] - 1)) + sigma * torch.randn(n_lines, n_near, generator=gen,
                                                                                 dtype=torch.float64)
    t_unif = near[:, None] + (far - near)[:, None] * torch.rand(n_lines, per_line, generator=gen,
                                                                   dtype=torch.float64)
    tq = torch.where((hits > 0)[:, None], torch.cat([t_near, t_unif[:, n_near:]], dim=1), t_unif)
    inside = winding_on_lines(tq, th, sg) != 0
    pts = anchors[:, None, :] + tq[..., None] * d[:, None, :]
    keep = closed[:, None].expand_as(inside)
    return pts[keep][:n].float(), inside[keep][:n]


def outside_margin(points: Tensor, vertices: Tensor, faces: Tensor, margin: float, gen: torch.Generator,
                   n_surface: int = 32768) -> Tensor:
    """(P,) bool: the points (P, 3) farther than ``margin`` (metres) from the mesh surface (V, 3) / (F, 3).

    The distance is the one to ``n_surface`` area-weighted samples of the surface (scipy cKDTree), an
    overestimate by at most about half their spacing (~0.7 mm on a hand at the default count). Used to leave
    the labels of an annotated mesh out where its own error could flip them (``label_margin``).
    """
    from scipy.spatial import cKDTree

    surf = surface_samples(vertices.double().cpu()[faces.long().cpu()], n_surface, gen)
    d, _ = cKDTree(surf.numpy()).query(points.detach().double().cpu().numpy())
    return torch.as_tensor(d >= margin, device=points.device)
