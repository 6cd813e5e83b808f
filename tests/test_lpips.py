"""LPIPS-alex and the AlexNet features, with random-weight checkpoints in the official key formats."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from handcli.errors import InputError
from handcli.eval import lpips as lpips_mod
from handcli.eval.lpips import LPIPS, layer_distance, load_lpips, normalize_channels
from handcli.nn.alexnet import AlexNetFeatures

# torchvision alexnet state_dict layout (alexnet-owt-7be5be79.pth), written out independently of the module
TV_FEATURES = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
}
# the real classifier is (4096, 9216), (4096, 4096), (1000, 4096); it is ignored, so small stand-ins do
TV_CLASSIFIER = {
    "classifier.1.weight": (8, 16), "classifier.1.bias": (8,),
    "classifier.4.weight": (8, 8), "classifier.4.bias": (8,),
    "classifier.6.weight": (4, 8), "classifier.6.bias": (4,),
}
LIN = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}


def _random_state(shapes: dict, seed: int, positive: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
        t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        out[key] = t.abs() if positive else t
    return out


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    backbone = {**_random_state(TV_FEATURES, 0), **_random_state(TV_CLASSIFIER, 1)}
    lin = _random_state(LIN, 2, positive=True)  # the released heads are non-negative
    torch.save(backbone, folder / "alexnet-owt-7be5be79.pth")
    torch.save(lin, folder / "alex.pth")
    return folder, backbone, lin


@pytest.fixture(scope="module")
def model(ckpts):
    folder, _, _ = ckpts
    m, info = load_lpips(folder / "alexnet-owt-7be5be79.pth", folder / "alex.pth")
    assert m is not None and "alex.pth" in info
    return m


def _reference_lpips(x0, x1, backbone, lin):
    """LPIPS v0.1 alex written with torch.nn.functional straight from the raw state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(x):
        x = ((2 * x - 1) - shift) / scale
        b = backbone
        r1 = F.relu(F.conv2d(x, b["features.0.weight"], b["features.0.bias"], stride=4, padding=2))
        r2 = F.relu(F.conv2d(F.max_pool2d(r1, 3, 2), b["features.3.weight"], b["features.3.bias"], padding=2))
        r3 = F.relu(F.conv2d(F.max_pool2d(r2, 3, 2), b["features.6.weight"], b["features.6.bias"], padding=1))
        r4 = F.relu(F.conv2d(r3, b["features.8.weight"], b["features.8.bias"], padding=1))
        r5 = F.relu(F.conv2d(r4, b["features.10.weight"], b["features.10.bias"], padding=1))
        return [r1, r2, r3, r4, r5]

    total = 0.0
    for k, (a, b) in enumerate(zip(taps(x0), taps(x1))):
        na = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        nb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total = total + ((na - nb) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    return total


def _images(seed: int, n: int = 1, h: int = 64, w: int = 48):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([torch.sin(7 * xx + 2 * yy), torch.cos(5 * yy), xx * yy], 0) * 0.4 + 0.5
    return (base[None] + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)


def test_alexnet_keys_and_tap_shapes_match_torchvision():
    net = AlexNetFeatures()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == TV_FEATURES
    taps = net(torch.zeros(1, 3, 224, 224))
    assert [tuple(t.shape) for t in taps] == [(1, 64, 55, 55), (1, 192, 27, 27), (1, 384, 13, 13),
                                              (1, 256, 13, 13), (1, 256, 13, 13)]
    # the trailing MaxPool stays in the layout (index 12) but is not part of any tap
    assert isinstance(net.features[12], torch.nn.MaxPool2d) and len(net.features) == 13


def test_checkpoints_load_into_the_official_keys(ckpts, model):
    _, backbone, lin = ckpts
    state = model.state_dict()
    for key in TV_FEATURES:
        assert torch.equal(state[f"net.{key}"], backbone[key])
    for key in LIN:
        assert torch.equal(state[key], lin[key])


def test_lpips_matches_functional_reference(ckpts, model):
    _, backbone, lin = ckpts
    x0, x1 = _images(0, n=2), _images(1, n=2)
    ours = model(x0, x1)
    ref = _reference_lpips(x0, x1, backbone, lin)
    assert ours.shape == (2,)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    # normalize=False takes [-1, 1] inputs
    torch.testing.assert_close(model(2 * x0 - 1, 2 * x1 - 1, normalize=False), ours)


def test_lpips_zero_symmetric_positive_and_monotone(model):
    x = _images(3)[0].permute(1, 2, 0).numpy()
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(x.shape, generator=g).numpy()
    assert model.distance(x, x) == 0.0
    y = (x + 0.1 * noise).clip(0, 1)
    assert model.distance(x, y) > 0
    assert model.distance(x, y) == pytest.approx(model.distance(y, x), rel=1e-6)
    dists = [model.distance(x, (x + s * noise).clip(0, 1)) for s in (0.02, 0.08, 0.3)]
    assert dists[0] < dists[1] < dists[2]


def test_normalise_and_diff_hand_computed():
    # constant maps: f0 = (3, 4) -> (0.6, 0.8); f1 = (5, 0) -> (1, 0); squared diff (0.16, 0.64)
    f0 = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 3, 5)
    f1 = torch.tensor([5.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 3, 5)
    w = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    assert float(layer_distance(f0, f1, w)) == pytest.approx(0.16 * 1 + 0.64 * 2, abs=1e-6)
    # scale invariance per pixel, and all-zero features stay zero thanks to eps
    assert float(layer_distance(7 * f0, f1, w)) == pytest.approx(1.44, abs=1e-6)
    assert torch.equal(normalize_channels(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))
    n = normalize_channels(torch.randn(2, 6, 3, 3))
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2, 3, 3))


def test_missing_weights_give_none_and_reason(tmp_path, monkeypatch, ckpts):
    folder, _, _ = ckpts
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model, reason = load_lpips(None, folder / "alex.pth")
    assert model is None
    assert "AlexNet backbone weights not found" in reason and str(tmp_path / "torch") in reason
    monkeypatch.setattr(lpips_mod, "bundled_lin_path", lambda: None)
    model, reason = load_lpips(folder / "alexnet-owt-7be5be79.pth", None)
    assert model is None and "linear heads not found" in reason


def test_default_locations_torch_hub_and_lpips_package(tmp_path, monkeypatch, ckpts):
    folder, backbone, lin = ckpts
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(backbone, hub / "alexnet-owt-7be5be79.pth")
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('lpips must not be imported')\n")
    torch.save(lin, pkg / "weights" / "v0.1" / "alex.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    model, info = load_lpips()
    assert model is not None
    assert str(hub) in info and str(pkg / "weights" / "v0.1" / "alex.pth") in info
    assert "lpips" not in sys.modules
    assert torch.equal(model.lin2.model[1].weight, lin["lin2.model.1.weight"])


def test_bad_checkpoints_raise_input_error(tmp_path, ckpts):
    folder, backbone, lin = ckpts
    good_b, good_l = folder / "alexnet-owt-7be5be79.pth", folder / "alex.pth"

    renamed = dict(backbone)
    renamed["features.4.weight"] = renamed.pop("features.3.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(InputError) as err:
        load_lpips(tmp_path / "renamed.pth", good_l)
    assert err.value.field == "features.4.weight" and "renamed.pth" in str(err.value)

    missing = {k: v for k, v in backbone.items() if k != "features.10.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(InputError, match="missing key") as err:
        load_lpips(tmp_path / "missing.pth", good_l)
    assert err.value.field == "features.10.bias"

    prefixed = {f"module.{k}": v for k, v in backbone.items()}
    torch.save(prefixed, tmp_path / "prefixed.pth")
    with pytest.raises(InputError, match="unexpected key"):
        load_lpips(tmp_path / "prefixed.pth", good_l)

    bad_lin = dict(lin)
    bad_lin["lin3.model.1.weight"] = torch.ones(1, 128, 1, 1)
    torch.save(bad_lin, tmp_path / "bad_lin.pth")
    with pytest.raises(InputError, match=r"shape \(1, 128, 1, 1\)") as err:
        load_lpips(good_b, tmp_path / "bad_lin.pth")
    assert err.value.field == "lin3.model.1.weight" and "bad_lin.pth" in str(err.value)

    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="cannot read checkpoint") as err:
        load_lpips(tmp_path / "corrupt.pth", good_l)
    assert "corrupt.pth" in str(err.value)

    with pytest.raises(InputError, match="not found"):
        load_lpips(tmp_path / "nope.pth", good_l)


def test_distance_input_checks(model):
    x = torch.rand(30, 40, 3).numpy()
    with pytest.raises(InputError, match="too small"):
        model.distance(x, x)
    with pytest.raises(InputError, match="one shape"):
        model.distance(torch.rand(40, 40, 3).numpy(), torch.rand(40, 41, 3).numpy())


def test_fresh_lpips_is_frozen_and_gradients_reach_inputs():
    m = LPIPS()
    assert not any(p.requires_grad for p in m.parameters())
    x0 = _images(5, h=40, w=40).requires_grad_(True)
    m(x0, _images(6, h=40, w=40)).sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()
