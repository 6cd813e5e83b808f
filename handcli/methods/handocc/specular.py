"""A white specular highlight on the skin from a few learned lights fixed in the world (``specular`` option).

Skin is a dielectric: its highlight has the lights' colour, not the skin's, and it moves over the surface with
the viewing direction. A studio (InterHand2.6M's dome, the synthetic studio) lights the hand from fixed world
directions. So the highlight at a surface point with normal n seen along the ray direction d is modelled as
Blinn-Phong lobes

    s(n, d) = sum_k w_k max(0, n . h_k)^alpha_k,    h_k = normalize(l_k - d),

with K learned light directions l_k, strengths w_k >= 0 and shininesses alpha_k, added to every colour
channel alike. The normal is the capsule normal of the sample's winning bone (the direction from the bone's
segment to the point), which needs no extra network evaluation. Compared with a view direction fed to the
colour network (``view_dir``), the lobes cannot express a per-camera colour or a smooth brightness change
over the cameras: only a white, peaked term that depends on the surface's orientation to the lights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# the starting light directions: the corners of a tetrahedron (no preferred direction); learned
_TETRAHEDRON = ((1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0))


def capsule_normals(local: Tensor, axes: Tensor) -> Tensor:
    """World normals of the capsule around each sample's bone.

    local (R, 3): the sample in its bone's frame, divided by the bone's length (x along the bone, from its start
    at 0 to its end at 1); axes (R, 3, 3): that frame's axes as world columns (mirrored back for left hands).
    Returns unit vectors (R, 3) from the nearest point of the bone's segment to the sample.
    """
    t = local[:, :1].clamp(0.0, 1.0)
    radial = torch.cat([local[:, :1] - t, local[:, 1:]], -1)
    return F.normalize(torch.einsum("rij,rj->ri", axes, radial), dim=-1)


class SpecularLobes(nn.Module):
    """K Blinn-Phong lobes of learned world lights; ``forward`` gives the white highlight of each sample.

    Strengths start at ``init_strength`` (near 0: a new run starts as without the option), the lights at the
    tetrahedron's corners (K <= 4) or random directions, the shininesses at ``init_shininess``. ``scale`` makes an Adam step
    of the run's learning rate move the parameters by lr·scale (the strengths and shininess in log space).
    """

    def __init__(self, lights: int = 4, init_shininess: float = 16.0, init_strength: float = 0.01,
                 scale: float = 10.0, seed: int = 0):
        super().__init__()
        if lights <= len(_TETRAHEDRON):
            start = torch.tensor(_TETRAHEDRON[:lights])
        else:
            start = torch.randn(lights, 3, generator=torch.Generator().manual_seed(seed))
        self.scale = float(scale)
        self.dirs = nn.Parameter(F.normalize(start, dim=-1) / self.scale)
        self.log_strength = nn.Parameter(torch.full((lights,), math.log(init_strength) / self.scale))
        self.log_shininess = nn.Parameter(torch.full((lights,), math.log(init_shininess) / self.scale))

    def lights(self) -> tuple[Tensor, Tensor, Tensor]:
        """(K, 3) unit light directions (towards the lights), (K,) strengths, (K,) shininess."""
        return (F.normalize(self.dirs * self.scale, dim=-1), torch.exp(self.log_strength * self.scale),
                torch.exp(self.log_shininess * self.scale))

    def forward(self, normals: Tensor, ray_dirs: Tensor) -> Tensor:
        """normals (R, 3) unit world normals, ray_dirs (R, 3) world ray directions (camera to point) -> (R,)."""
        light, strength, alpha = self.lights()
        half = F.normalize(light[None] - F.normalize(ray_dirs, dim=-1)[:, None], dim=-1)  # (R, K, 3)
        cos = torch.einsum("rkc,rc->rk", half, normals).clamp_min(0.0)
        lit = (torch.einsum("kc,rc->rk", light, normals) > 0).to(cos.dtype)  # no highlight from behind the surface
        return (lit * strength * cos.clamp_min(1e-6) ** alpha).sum(-1)

    def summary(self) -> dict[str, float]:
        """Logged values: the largest strength and that lobe's shininess."""
        _, strength, alpha = self.lights()
        k = int(strength.argmax())
        return {"spec_max": float(strength[k]), "spec_alpha": float(alpha[k])}
