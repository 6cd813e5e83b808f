"""NeRF-style MLPs: a plain MLP with input re-injection, and the NeRF / Mip-NeRF radiance-field layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "softplus": F.softplus,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
}


def _activation(name: str | None) -> Callable[[Tensor], Tensor] | None:
    if name is None:
        return None
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class MLP(nn.Module):
    """`n_layers` hidden layers of width `hidden`, then an optional linear output layer.

    skips: 0-based indices of hidden layers whose input is [previous features, network input]. Mip-NeRF's
    "skip every 4" is skips=(4,); the original NeRF code's `skips=[4]` (concatenate *after* layer 4) is
    skips=(5,) here. With out_dim None or 0 the last hidden features are returned.
    Input (..., in_dim) -> (..., out_dim or hidden).
    """

    def __init__(self, in_dim: int, hidden: int, n_layers: int, out_dim: int | None = None,
                 skips: Sequence[int] = (), activation: str = "relu", out_activation: str | None = None):
        super().__init__()
        self.skips = tuple(int(s) for s in skips)
        if any(s <= 0 or s >= n_layers for s in self.skips):
            raise ValueError(f"skip indices {self.skips} must be in 1..{n_layers - 1}")
        self.layers = nn.ModuleList(
            nn.Linear((in_dim if i == 0 else hidden) + (in_dim if i in self.skips else 0), hidden)
            for i in range(n_layers))
        self.out = nn.Linear(hidden, out_dim) if out_dim else None
        self.act = _activation(activation)
        self.out_act = _activation(out_activation)
        self.out_dim = out_dim if out_dim else hidden

    def forward(self, x: Tensor | Sequence[Tensor], shared: Sequence[Tensor] = ()) -> Tensor:
        """x (..., in_dim), or the input's column blocks [(..., d_1), (..., d_2), ...] followed by ``shared``
        blocks (d_j,) that are the same for every row; the blocks are never concatenated (`linear_cat`)."""
        parts = [x] if isinstance(x, Tensor) else list(x)
        lead = parts[0].shape[:-1]
        parts = [p.reshape(-1, p.shape[-1]) for p in parts]
        h = None
        for i, layer in enumerate(self.layers):
            if i == 0 or i in self.skips:  # layers that read the network input
                h = linear_cat(layer.weight, layer.bias, parts if i == 0 else [h] + parts, shared)
            else:
                h = layer(h)
            h = self._activate(h)
        return self.finish(h).reshape(*lead, self.out_dim)

    def forward_reference(self, x: Tensor) -> Tensor:
        """`forward` as first written: the skip inputs concatenated. x (..., in_dim) -> (..., out_dim)."""
        h = x
        for i, layer in enumerate(self.layers):
            if i in self.skips:
                h = torch.cat([h, x], dim=-1)
            h = self.act(layer(h))
        return self.finish(h)

    def finish(self, h: Tensor) -> Tensor:
        """The output layer (and its activation) on the last hidden features (..., hidden)."""
        if self.out is not None:
            h = self.out(h)
            if self.out_act is not None:
                h = self.out_act(h)
        return h

    def _activate(self, h: Tensor) -> Tensor:
        # in place for ReLU: h is a fresh layer output that nothing else holds (its backward needs only the result)
        return F.relu_(h) if self.act is F.relu else self.act(h)


def linear_cat(weight: Tensor, bias: Tensor, parts: Sequence[Tensor], shared: Sequence[Tensor] = ()) -> Tensor:
    """``F.linear(cat(parts + [s.expand(N, -1) for s in shared], -1), weight, bias)`` without building the
    concatenation. weight (out, in), bias (out,).

    parts: (N, d_i) blocks of the input's first columns, in order; shared: (d_j,) blocks of its last
    columns that every row has (a frame's latent code): their product with the weights is folded into the
    bias once. Returns (N, out). One matrix product per block replaces a copy of the whole input.
    """
    w, col = weight, 0
    width = sum(p.shape[-1] for p in parts)
    for s in shared:
        bias = torch.addmv(bias, w[:, width + col:width + col + s.shape[-1]], s)
        col += s.shape[-1]
    if width + col != w.shape[1]:
        raise ValueError(f"linear_cat: blocks of {width + col} columns for a layer of {w.shape[1]} inputs")
    col, out = 0, None
    for p in parts:
        d = p.shape[-1]
        blk = w[:, col:col + d]
        out = F.linear(p, blk, bias) if out is None else out.addmm_(p, blk.t())
        col += d
    return out


def density_activation(raw: Tensor, kind: str = "softplus", bias: float = -1.0) -> Tensor:
    """σ from the raw density output: softplus(raw + bias) (Mip-NeRF: bias −1) or relu(raw + bias)."""
    if kind == "softplus":
        return F.softplus(raw + bias)
    if kind == "relu":
        return F.relu(raw + bias)
    raise ValueError(f"unknown density activation {kind!r}; choose 'softplus' or 'relu'")


class NeRFField(nn.Module):
    """Radiance field with the NeRF / Mip-NeRF layout.

    trunk = MLP([pos_enc, cond]) (8 × 256, skips); density_raw = Linear(trunk); rgb = sigmoid of
    Linear(ReLU(Linear([Linear(trunk), dir_enc]) → view_hidden)), padded to (−rgb_padding, 1 + rgb_padding)
    as in Mip-NeRF. Extra heads (e.g. {"feature": 256, "semantic": 3}) are linear maps of the trunk
    features, returned raw. The conditioning vector, if any, is part of the trunk input, so it is also
    re-injected at the skips.
    forward(pos_enc (..., pos_dim), dir_enc (..., dir_dim) or None, cond (..., cond_dim) or None) ->
    {"density_raw": (...,), "rgb": (..., rgb_dim), name: (..., C) for each extra head}.
    """

    def __init__(self, pos_dim: int, dir_dim: int = 0, hidden: int = 256, n_layers: int = 8,
                 skips: Sequence[int] = (4,), cond_dim: int = 0, view_hidden: int = 128, rgb_dim: int = 3,
                 extra_heads: dict[str, int] | None = None, rgb_padding: float = 0.001):
        super().__init__()
        self.dir_dim = dir_dim
        self.cond_dim = cond_dim
        self.rgb_padding = rgb_padding
        self.trunk = MLP(pos_dim + cond_dim, hidden, n_layers, None, skips=skips)
        self.density = nn.Linear(hidden, 1)
        self.bottleneck = nn.Linear(hidden, hidden)
        self.view = nn.Linear(hidden + dir_dim, view_hidden)
        self.rgb = nn.Linear(view_hidden, rgb_dim)
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, c) for k, c in (extra_heads or {}).items()})

    def forward(self, pos_enc: Tensor, dir_enc: Tensor | None = None, cond: Tensor | None = None) -> dict:
        x = pos_enc
        if self.cond_dim:
            if cond is None:
                raise ValueError("this field was built with cond_dim > 0 and needs `cond`")
            x = torch.cat([x, cond.expand(*pos_enc.shape[:-1], self.cond_dim)], dim=-1)
        h = self.trunk(x)
        out = {"density_raw": self.density(h).squeeze(-1)}
        b = self.bottleneck(h)
        if self.dir_dim:
            if dir_enc is None:
                raise ValueError("this field was built with dir_dim > 0 and needs `dir_enc`")
            b = torch.cat([b, dir_enc.expand(*pos_enc.shape[:-1], self.dir_dim)], dim=-1)
        rgb = torch.sigmoid(self.rgb(F.relu(self.view(b))))
        out["rgb"] = rgb * (1.0 + 2.0 * self.rgb_padding) - self.rgb_padding
        for name, head in self.heads.items():
            out[name] = head(h)
        return out


def chunked_apply(fn: Callable[..., Tensor | dict | tuple], *inputs: Tensor, chunk_size: int = 4096):
    """Apply `fn` to inputs sliced along dimension 0 in chunks and concatenate the results.

    Outputs may be a tensor, a tuple of tensors or a dict of tensors (concatenated along dimension 0).
    Bounds peak memory (DESIGN: evaluate fields in ~4k-point chunks on CPU).
    """
    n = inputs[0].shape[0]
    outs = [fn(*(x[i:i + chunk_size] for x in inputs)) for i in range(0, n, chunk_size)]
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.cat(outs, dim=0)
    if isinstance(first, dict):
        return {k: torch.cat([o[k] for o in outs], dim=0) for k in first}
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))
