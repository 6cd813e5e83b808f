"""HandOcc's learned radial scale of the occupancy labels about their bones (``label_thickness``): the move by
hand, and a scale found by the occupancy loss alone against a field thicker than the labels."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from handcli.methods.handocc.label_align import LabelThickness


def _bone(side: str = "right") -> SimpleNamespace:  # one bone along x from 0 to 0.04 m, capsule radius 8 mm
    return SimpleNamespace(side=side, start=torch.zeros(1, 3), end=torch.tensor([[0.04, 0.0, 0.0]]),
                           radii=torch.tensor([0.008]))


def test_thickness_moves_points_radially_by_hand():
    m = LabelThickness(scale=0.1, num_bones=1)
    x = torch.tensor([[0.02, 0.01, 0.0],  # beside the bone: 10 mm out along y
                      [0.05, 0.0, 0.0],  # past its end: 10 mm along the bone from the end
                      [0.0, 0.0, 0.0]])  # on the segment: stays
    assert torch.equal(m.apply(_bone(), x), x)  # starts as the identity
    with torch.no_grad():
        m.p[0, 0] = 2.0  # radial scale 1.2 on the right hand
    assert torch.allclose(m.apply(_bone(), x), torch.tensor([[0.02, 0.012, 0.0], [0.052, 0.0, 0.0], [0.0, 0.0, 0.0]]),
                          atol=1e-7)
    assert torch.equal(m.apply(_bone("left"), x), x)  # the left hand's scale is its own
    assert abs(float(m.penalty(["right"], 1.0)) - 4.0) < 1e-5  # (0.2 x 10 mm)^2
    assert abs(m.percent() - 10.0) < 1e-5  # 20 % on the right, 0 on the left


def test_thickness_found_by_the_occupancy_loss_against_a_thicker_field():
    """Labels from a capsule of 8 mm against a fixed field of 9.6 mm: the scale that lowers the BCE is 1.2."""
    g = torch.Generator().manual_seed(0)
    t = torch.rand(4096, generator=g) * 0.04
    direction = F.normalize(torch.randn(4096, 2, generator=g), dim=-1)
    r = 0.008 + 0.004 * torch.randn(4096, generator=g).clamp(-2.0, 2.0)  # around the labels' surface
    x = torch.stack([t, r.abs() * direction[:, 0], r.abs() * direction[:, 1]], -1)
    y = (r.abs() < 0.008).float()  # inside the 8 mm capsule

    def field(p: torch.Tensor) -> torch.Tensor:  # occupancy of a 9.6 mm capsule, soft over 0.3 mm
        return torch.sigmoid((0.0096 - p[:, 1:].norm(dim=-1)) / 0.0003)

    m = LabelThickness(scale=0.1, num_bones=1)
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    for _ in range(300):
        opt.zero_grad()
        (F.binary_cross_entropy(field(m.apply(_bone(), x)).clamp(1e-5, 1 - 1e-5), y)
         + m.penalty(["right"], 1e-4)).backward()
        opt.step()
    assert abs(float(m.factors("right")[0]) - 1.2) < 0.02, float(m.factors("right")[0])
