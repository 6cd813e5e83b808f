"""Surface normals for the colour network: the skeleton's capsules, optionally with a learned relief.

A studio (InterHand2.6M's dome, the synthetic studio) lights the hand from directions fixed in the world, so
the skin's shading is a function of the world normal. The colour network's other inputs (coordinates in the
winning bone's frame, that bone's world axes) determine the normal only through a product of the two, which
its ReLU layers learn slowly; the capsule normal gives it directly, without an extra network evaluation.

The capsules know nothing of the skin's relief (knuckles, creases, the palm's folds, the bumps a hand model's
surface does not have). That relief is fixed to the hand like its texture, but under lights fixed in the world
it shades differently in every pose. `NormalDetail` learns it as a residual of the capsule normal in the winning
bone's frame, a function of the sample's coordinates there, so the product with the bone's axes is the
function's structure and not something the colour network must learn.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from handcli.hand.skeleton_frames import offset_from_bone
from handcli.nn.encoding import encoding_dim, positional_encoding
from handcli.nn.mlp import MLP


def capsule_normals(local: Tensor, axes: Tensor, residual: Tensor | None = None) -> Tensor:
    """World normals of the capsule around each sample's bone, optionally tilted by a residual.

    local (R, 3): the sample in its bone's frame, divided by the bone's length (x along the bone, from its start
    at 0 to its end at 1); axes (R, 3, 3): that frame's axes as world columns (mirrored back for left hands);
    residual (R, 3) or None: added to the capsule's unit normal in the bone's frame before it is rotated
    (`NormalDetail`). Returns unit vectors (R, 3) in the world frame.
    """
    n = F.normalize(offset_from_bone(local), dim=-1)  # from the nearest point of the bone's segment
    if residual is not None:
        n = n + residual
    return F.normalize(torch.einsum("rij,rj->ri", axes, n), dim=-1)


class NormalDetail(nn.Module):
    """The skin's relief as a residual of the capsule normal: (R, 3) in the bone's frame from PE(local) and the
    bone's embedding. The output layer starts at zero (the capsule normal), so an untrained model shades as
    without it; it is trained by the photometric loss through the colour network only (no geometry)."""

    def __init__(self, num_bones: int, pe_deg: int, hidden: int, part_embed: int = 8):
        super().__init__()
        self.pe_deg = pe_deg
        self.part = nn.Embedding(num_bones, part_embed)
        self.mlp = MLP(encoding_dim(3, 0, pe_deg, True) + part_embed, hidden, 2, 3)
        nn.init.zeros_(self.mlp.out.weight)
        nn.init.zeros_(self.mlp.out.bias)

    def forward(self, local: Tensor, part: Tensor) -> Tensor:
        """local (R, 3) in the winning bone's frame (bone lengths), part (R,) its index -> residual (R, 3)."""
        return self.mlp(torch.cat([positional_encoding(local, 0, self.pe_deg, True), self.part(part)], -1))
