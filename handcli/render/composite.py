"""Composition of several sample sets along the same rays (two hands; hand + object).

As in Guo et al.'s HandNeRF, each part draws its own samples within its own bounds; the sets are merged and
sorted by depth, then volume-rendered together. Each sample keeps its own interval length, so overlapping
intervals of different sets are treated as consecutive (the approximation the HandNeRF code makes).
"""

from __future__ import annotations

import torch
from torch import Tensor


def composite_samples(sets: list[dict]) -> dict:
    """Merge sample sets along the same N rays, sorted by interval mid-point (stable sort).

    Each set: {"t_starts": (N, Si), "t_ends": (N, Si), "sigma": (N, Si), "values": {name: (N, Si, C)},
    optional "valid": (N, Si) bool}. All sets must carry the same value names with the same C.
    Returns {"t_starts", "t_ends", "sigma", "valid": (N, ΣSi), "values": {name: (N, ΣSi, C)},
    "source": (N, ΣSi) long, the index of the set each sample came from}. Ties keep set order.
    """
    if not sets:
        raise ValueError("composite_samples needs at least one sample set")
    names = set(sets[0]["values"])
    for i, s in enumerate(sets):
        if set(s["values"]) != names:
            raise ValueError(f"sample set {i} has values {sorted(s['values'])}, expected {sorted(names)}")

    def cat(key: str) -> Tensor:
        return torch.cat([s[key] for s in sets], dim=-1)

    t_starts, t_ends, sigma = cat("t_starts"), cat("t_ends"), cat("sigma")
    valid = torch.cat([s["valid"] if s.get("valid") is not None
                       else torch.ones_like(s["t_starts"], dtype=torch.bool) for s in sets], dim=-1)
    source = torch.cat([torch.full_like(s["t_starts"], i, dtype=torch.long) for i, s in enumerate(sets)], dim=-1)
    order = torch.sort(0.5 * (t_starts + t_ends), dim=-1, stable=True).indices
    out = {
        "t_starts": t_starts.gather(-1, order),
        "t_ends": t_ends.gather(-1, order),
        "sigma": sigma.gather(-1, order),
        "valid": valid.gather(-1, order),
        "source": source.gather(-1, order),
        "values": {},
    }
    for name in sets[0]["values"]:
        v = torch.cat([s["values"][name] for s in sets], dim=-2)
        out["values"][name] = v.gather(-2, order.unsqueeze(-1).expand(*order.shape, v.shape[-1]))
    return out
