"""Surface normals of the skeleton's capsules: what the colour network sees of the surface's orientation.

A studio (InterHand2.6M's dome, the synthetic studio) lights the hand from directions fixed in the world, so
the skin's shading is a function of the world normal. The colour network's other inputs (coordinates in the
winning bone's frame, that bone's world axes) determine the normal only through a product of the two, which
its ReLU layers learn slowly; the capsule normal gives it directly, without an extra network evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def capsule_normals(local: Tensor, axes: Tensor) -> Tensor:
    """World normals of the capsule around each sample's bone.

    local (R, 3): the sample in its bone's frame, divided by the bone's length (x along the bone, from its start
    at 0 to its end at 1); axes (R, 3, 3): that frame's axes as world columns (mirrored back for left hands).
    Returns unit vectors (R, 3) from the nearest point of the bone's segment to the sample.
    """
    t = local[:, :1].clamp(0.0, 1.0)
    radial = torch.cat([local[:, :1] - t, local[:, 1:]], -1)
    return F.normalize(torch.einsum("rij,rj->ri", axes, radial), dim=-1)
