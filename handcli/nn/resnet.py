"""ResNet-18 with torchvision's exact parameter names, as a multi-scale image encoder.

The module tree (``conv1``, ``bn1``, ``layer1``..``layer4`` of ``BasicBlock``s with ``conv1/bn1/conv2/bn2`` and
``downsample.0/.1``, ``fc``) reproduces ``torchvision.models.resnet18`` key for key, so an ImageNet
checkpoint such as ``resnet18-f37072fd.pth`` loads from a local file without torchvision.

As an encoder (HandNeRF, Choi et al. ICRA'24, ``common/nets/resnet.py`` of HandNeRF_RELEASE) it returns the
maps after the stem ReLU (64 ch, stride 2), ``layer1`` (64, s4), ``layer2`` (128, s8) and ``layer3``
(256, s16); the reference upsamples them to stride 2, concatenates (512 ch) and projects to 64 channels
with a 1x1 convolution. ``layer4`` and ``fc`` are only built for a complete classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_LEVELS = ("stem relu (64 ch, stride 2)", "layer1 (64 ch, stride 4)", "layer2 (128 ch, stride 8)",
                   "layer3 (256 ch, stride 16)")
_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 convolutions with BatchNorm and an identity/projection shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 truncated after ``layer{depth}`` (depth 1..4); ``classifier`` adds avgpool + ``fc`` (depth 4).

    ``levels(x)``: (B, 3, H, W) ImageNet-normalised -> [stem ReLU map, layer1, ..., layer{depth}] at strides
    2, 4, 8, 16, 32 (``channels`` gives their widths).
    """

    def __init__(self, depth: int = 3, classifier: bool = False, num_classes: int = 1000):
        super().__init__()
        if not 1 <= depth <= 4 or (classifier and depth != 4):
            raise ValueError("depth must be 1..4 (4 for a classifier)")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i in range(depth):
            planes = _WIDTHS[i]
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                          BasicBlock(planes, planes)))
            inplanes = planes
        self.fc = nn.Linear(512, num_classes) if classifier else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def channels(self) -> list[int]:
        return [64] + list(_WIDTHS[: self.depth])

    def levels(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x]
        x = self.maxpool(x)
        for i in range(self.depth):
            x = getattr(self, f"layer{i + 1}")(x)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes) for a classifier, else the last level's map."""
        feats = self.levels(x)
        if self.fc is None:
            return feats[-1]
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(feats[-1], 1), 1))


def state_dict_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes by key, without BatchNorm's ``num_batches_tracked`` counters."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_resnet18(path: str | Path, depth: int = 3) -> ResNet18:
    """A ResNet18 truncated after ``layer{depth}`` with weights from a torchvision-format checkpoint.

    Keys of the dropped layers (``layer{depth+1..4}``, ``fc``) are ignored; any other unknown key, a
    missing key, a wrong shape or a non-finite value raises InputError naming the file and the key.
    """
    from handcli.nn.alexnet import check_state_dict, read_state_dict

    model = ResNet18(depth)
    state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    ignore = ("fc.",) + tuple(f"layer{i}." for i in range(depth + 1, 5))
    model.load_state_dict(check_state_dict(state, state_dict_shapes(model), path, ignore_prefixes=ignore),
                          strict=False)
    return model
