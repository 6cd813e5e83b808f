"""AlexNet convolutional features, laid out exactly as torchvision's `alexnet().features`.

The state_dict keys (`features.0.weight`, `features.3.weight`, ...) match torchvision's, so the official
ImageNet checkpoint `alexnet-owt-7be5be79.pth` loads directly (its `classifier.*` keys are ignored).
torchvision itself cannot be imported on this CPU torch build, hence this copy of the layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from handcli.errors import InputError

ALEXNET_CHECKPOINT_NAME = "alexnet-owt-7be5be79.pth"

# indices in `features` of the ReLUs whose outputs LPIPS taps (relu1 .. relu5)
ALEXNET_TAPS = (1, 4, 7, 9, 11)
ALEXNET_TAP_CHANNELS = (64, 192, 384, 256, 256)

ALEXNET_FEATURE_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
}

# smallest input side for which relu5 is non-empty (conv1 k11 s4 p2, then two 3x3 stride-2 pools)
ALEXNET_MIN_SIDE = 31


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet `features`; forward returns the five ReLU outputs LPIPS uses.

    Input (N, 3, H, W), H and W >= 31. Outputs for a 224 x 224 input: (N, 64, 55, 55), (N, 192, 27, 27),
    (N, 384, 13, 13), (N, 256, 13, 13), (N, 256, 13, 13).
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features[: ALEXNET_TAPS[-1] + 1]):
            x = layer(x)
            if i in ALEXNET_TAPS:
                taps.append(x)
        return taps


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint that must be a flat dict of tensors (no pickled code is executed).

    Raises InputError naming the file when it is missing, unreadable or not such a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         path=path) from exc
    if not isinstance(state, dict):
        raise InputError(f"checkpoint is a {type(state).__name__}, expected a state_dict", path=path)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"entry is a {type(value).__name__}, expected a tensor", path=path, field=str(key))
    return state


def check_state_dict(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], path: str | Path,
                     ignore_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Keep the keys of `shapes` from `state`, checking that each exists with its shape and finite values.

    Keys starting with one of `ignore_prefixes` are dropped; any other unknown key is an InputError, as
    is a missing key or a wrong shape (the message names the file and the key).
    """
    for key in state:
        if key not in shapes and not key.startswith(ignore_prefixes):
            raise InputError(f"unexpected key (expected only {', '.join(sorted(shapes))})", path=path, field=key)
    out = {}
    for key, shape in shapes.items():
        if key not in state:
            raise InputError("missing key", path=path, field=key)
        value = state[key]
        if tuple(value.shape) != shape:
            raise InputError(f"shape {tuple(value.shape)}, expected {shape}", path=path, field=key)
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise InputError("must hold finite floating-point values", path=path, field=key)
        out[key] = value.float()
    return out


def load_alexnet_features(path: str | Path) -> AlexNetFeatures:
    """AlexNetFeatures with weights from a torchvision-format checkpoint (e.g. alexnet-owt-7be5be79.pth)."""
    state = check_state_dict(read_state_dict(path), ALEXNET_FEATURE_SHAPES, path, ignore_prefixes=("classifier.",))
    net = AlexNetFeatures()
    net.load_state_dict(state)
    return net
