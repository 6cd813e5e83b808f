"""Samples along rays as intervals (nerfacc style): sample i of ray n covers [t_starts[n, i], t_ends[n, i]].

Mip-NeRF needs the interval ends (conical frustums); point-sampled fields use the mid-points.
No gradient flows through sample positions (as in NeRF / Mip-NeRF).
"""

from __future__ import annotations

import torch
from torch import Tensor


def midpoints(t_starts: Tensor, t_ends: Tensor) -> Tensor:
    """Interval mid-points (N, S)."""
    return 0.5 * (t_starts + t_ends)


def edges_to_intervals(edges: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted edges (N, S+1) -> (t_starts, t_ends), each (N, S)."""
    return edges[..., :-1], edges[..., 1:]


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's device, then move: a CPU generator works for CUDA tensors too.
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def stratified_samples(near: Tensor, far: Tensor, n_samples: int, perturb: bool,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Split [near, far] of each ray into `n_samples` contiguous intervals.

    near, far: (N,). Without `perturb` the intervals are equal; with it every interior edge is drawn
    uniformly between the mid-points of its neighbouring equal intervals, so the intervals stay ordered,
    contiguous and still cover exactly [near, far] (first start = near, last end = far).
    Returns t_starts, t_ends: (N, S).
    """
    near = near.detach()
    far = far.detach()
    u = torch.linspace(0.0, 1.0, n_samples + 1, device=near.device, dtype=near.dtype)
    edges = near[..., None] + (far - near)[..., None] * u  # (N, S+1)
    if perturb and n_samples > 1:
        mids = 0.5 * (edges[..., 1:] + edges[..., :-1])  # (N, S)
        lower, upper = mids[..., :-1], mids[..., 1:]  # strata of the S-1 interior edges
        r = _uniform(tuple(lower.shape), lower, generator)
        edges = torch.cat([edges[..., :1], lower + (upper - lower) * r, edges[..., -1:]], dim=-1)
    return edges_to_intervals(edges)


def blur_weights(weights: Tensor, pad: float = 0.01) -> Tensor:
    """Mip-NeRF weight blur before resampling: w'_k = ½(max(w_{k−1}, w_k) + max(w_k, w_{k+1})) + pad.

    weights: (N, S); the ends are padded by replication. Returns (N, S).
    """
    wp = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)
    maxes = torch.maximum(wp[..., :-1], wp[..., 1:])
    return 0.5 * (maxes[..., :-1] + maxes[..., 1:]) + pad


def sample_pdf(bins: Tensor, weights: Tensor, n_samples: int, deterministic: bool,
               generator: torch.Generator | None = None, eps: float = 1e-5) -> Tensor:
    """Inverse-CDF sampling of the piecewise-constant pdf given by `weights` on `bins` (NeRF hierarchical
    sampling, Mip-NeRF `sorted_piecewise_constant_pdf`).

    bins: (N, S+1) sorted edges; weights: (N, S) >= 0. Deterministic mode uses evenly spaced CDF levels
    linspace(0, 1 − ε); otherwise one uniform level per stratum [k/n, (k+1)/n). Rays whose weights sum to
    less than `eps` are padded towards a uniform pdf. Returns sorted t (N, n_samples), detached.
    For Mip-NeRF resampling ask for S+1 values and use them as edges (`edges_to_intervals`).
    """
    bins = bins.detach()
    weights = weights.detach()
    w_sum = weights.sum(-1, keepdim=True)
    weights = weights + (eps - w_sum).clamp_min(0) / weights.shape[-1]
    w_sum = weights.sum(-1, keepdim=True)
    pdf = weights / w_sum
    cdf = torch.cumsum(pdf, dim=-1).clamp_max(1.0)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf[..., :-1], torch.ones_like(cdf[..., :1])], dim=-1)

    lead = bins.shape[:-1]
    if deterministic:
        u = torch.linspace(0.0, 1.0 - torch.finfo(bins.dtype).eps, n_samples, device=bins.device,
                           dtype=bins.dtype).expand(*lead, n_samples)
    else:
        step = 1.0 / n_samples
        k = torch.arange(n_samples, device=bins.device, dtype=bins.dtype) * step
        u = k + _uniform((*lead, n_samples), bins, generator) * (step - torch.finfo(bins.dtype).eps)
    u = u.contiguous()

    idx = torch.searchsorted(cdf.contiguous(), u, right=True)  # first edge with cdf > u
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf0, cdf1 = cdf.gather(-1, below), cdf.gather(-1, above)
    b0, b1 = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf1 - cdf0
    frac = torch.where(denom > 0, (u - cdf0) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                       torch.zeros_like(denom))
    t = b0 + frac.clamp(0, 1) * (b1 - b0)
    # Monotone in u already; sorting only removes float ties' jitter.
    return torch.sort(t, dim=-1).values


def interval_samples_from_hits(near: Tensor, far: Tensor, hit: Tensor, n_samples: int,
                               step: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Geometry-guided sampling: put a ray's samples only inside the union of its hit intervals.

    near, far, hit: (N, K), e.g. one column per box or per skeleton capsule. Overlapping intervals are
    merged; the covered length L is split evenly in "covered-length" coordinates and each merged segment
    is cut into equal intervals (so no sample interval straddles a gap of empty space).
    Every hit ray uses `n_samples` samples, or with `step` only min(n_samples, ceil(L / step)) of them.
    Returns t_starts, t_ends (N, S) sorted along the ray, and valid (N, S) bool; valid.sum(-1) is the
    number of samples each ray really uses. Unused samples are zero-length intervals at the ray's last far
    (0 for rays that hit nothing), so they render with alpha 0 and sort after the used ones.
    """
    near, far, hit = near.detach(), far.detach(), hit & (far > near)
    N, K = near.shape
    inf = torch.full_like(near, float("inf"))
    key = torch.where(hit, near, inf)
    key, order = torch.sort(key, dim=-1, stable=True)
    far_s = torch.where(hit, far, -inf).gather(-1, order)
    hit_s = hit.gather(-1, order)
    run_max = torch.cummax(far_s, dim=-1).values
    prev_max = torch.cat([torch.full_like(run_max[:, :1], float("-inf")), run_max[:, :-1]], dim=-1)
    new_seg = hit_s & (key > prev_max)
    seg_id = torch.cumsum(new_seg.long(), dim=-1) - 1
    seg_id = torch.where(hit_s, seg_id, torch.full_like(seg_id, K))  # misses go to a dump column
    seg_start = torch.zeros(N, K + 1, dtype=near.dtype, device=near.device)
    seg_start = seg_start.scatter(-1, torch.where(new_seg, seg_id, torch.full_like(seg_id, K)),
                                  torch.where(new_seg, key, torch.zeros_like(key)))[:, :K]
    seg_end = torch.full((N, K + 1), float("-inf"), dtype=near.dtype, device=near.device)
    seg_end = seg_end.scatter_reduce(-1, seg_id, far_s, reduce="amax")[:, :K]
    n_segs = new_seg.sum(-1, keepdim=True)
    seg_valid = torch.arange(K, device=near.device) < n_segs
    seg_len = torch.where(seg_valid, seg_end - seg_start, torch.zeros_like(seg_start))
    cum_len = torch.cumsum(seg_len, dim=-1)
    total = cum_len[:, -1]

    if step is None:
        n_used = torch.full_like(total, n_samples, dtype=torch.long)
    else:
        n_used = torch.ceil(total / step).long().clamp(1, n_samples)
    n_used = torch.where(total > 0, n_used, torch.zeros_like(n_used))

    # only the first max(n_used) samples need the per-sample work: later ones are unused on every ray
    n_eff = int(n_used.max()) if N else 0
    s = torch.arange(n_eff, device=near.device)
    valid = s < n_used[:, None]
    n_safe = n_used.clamp_min(1).to(near.dtype)[:, None]
    c = (s.to(near.dtype) + 0.5) * total[:, None] / n_safe  # covered-length coordinate of each mid-point
    k = torch.searchsorted(cum_len.contiguous(), c.contiguous(), right=True).clamp_max(K - 1)
    counts = torch.zeros(N, K, dtype=torch.long, device=near.device).scatter_add(-1, k, valid.long())
    first = torch.cumsum(counts, dim=-1) - counts  # index of each segment's first sample
    j = (s - first.gather(-1, k)).to(near.dtype)
    n_k = counts.gather(-1, k).clamp_min(1).to(near.dtype)
    start_k, len_k = seg_start.gather(-1, k), seg_len.gather(-1, k)
    t_starts = start_k + len_k * j / n_k
    t_ends = start_k + len_k * (j + 1) / n_k
    last = torch.where(n_segs[:, 0] > 0, seg_end.gather(-1, (n_segs - 1).clamp_min(0))[:, 0],
                       torch.zeros_like(total))[:, None]
    t_starts = torch.where(valid, t_starts, last)
    t_ends = torch.where(valid, t_ends, last)
    if n_eff < n_samples:
        pad = last.expand(N, n_samples - n_eff)
        t_starts, t_ends = torch.cat([t_starts, pad], -1), torch.cat([t_ends, pad], -1)
        valid = torch.cat([valid, valid.new_zeros(N, n_samples - n_eff)], -1)
    return t_starts, t_ends, valid
