"""Vision Transformer laid out as DINO's `vision_transformer.py`, for the ViT-S/8 teacher of HandNeRF.

The module and parameter names match the official DINO backbone checkpoint `dino_deitsmall8_pretrain.pth`
(`cls_token`, `pos_embed` (1, 1 + 28*28, 384), `patch_embed.proj.*` (384, 3, 8, 8), `blocks.{i}.norm1.*`,
`blocks.{i}.attn.qkv.*` (1152, 384), `blocks.{i}.attn.proj.*`, `blocks.{i}.norm2.*`, `blocks.{i}.mlp.fc1.*`
(1536, 384), `blocks.{i}.mlp.fc2.*`, `norm.*`), so that file loads directly. timm cannot be installed on this
CPU torch build, hence this copy of the layout. Pretrained weights are read only from a local file.

Positional embeddings are interpolated to the input's patch grid exactly as DINO's
`interpolate_pos_encoding` (bicubic, with its +0.1 scale-factor offset). Inputs whose sides are not
multiples of the patch size lose the remainder in the strided patch convolution (as in DINO); the feature
extractor in `handcli.targets.features` pads instead, so every pixel belongs to a patch.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from handcli.nn.alexnet import check_state_dict, read_state_dict

DINO_VITS8_CHECKPOINT_NAME = "dino_deitsmall8_pretrain.pth"
# ImageNet statistics used by DINO's training and feature-extraction transforms.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C); softmax(q k^T / sqrt(C / heads)) v per head, as DINO."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])      # (B, heads, N, C / heads)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, (H // p) * (W // p), dim), row-major over the patch grid."""
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINO's VisionTransformer backbone (no head). `img_size` is the pretraining size of `pos_embed`."""

    def __init__(self, patch_size: int = 8, dim: int = 384, depth: int = 12, heads: int = 6,
                 mlp_ratio: float = 4.0, img_size: int = 224, eps: float = 1e-6):
        super().__init__()
        self.patch_size = patch_size
        self.dim = dim
        self.patch_embed = PatchEmbed(patch_size, dim)
        n = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)

    def interpolate_pos_encoding(self, npatch: int, h: int, w: int) -> torch.Tensor:
        """Positional embedding (1, 1 + npatch, dim) for an (h, w)-pixel input (DINO's recipe)."""
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        side = int(math.sqrt(N))
        h0, w0 = h // self.patch_size + 0.1, w // self.patch_size + 0.1   # +0.1: DINO issue #8
        grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(h0 / math.sqrt(N), w0 / math.sqrt(N)), mode="bicubic")
        if grid.shape[-2:] != (int(h0), int(w0)):
            raise ValueError(f"positional embedding interpolated to {tuple(grid.shape[-2:])}, expected "
                             f"{(int(h0), int(w0))}")
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, self.dim)], dim=1)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> tokens (B, 1 + N, dim) with the CLS token first and positions added."""
        B, _, H, W = x.shape
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(B, -1, -1), t], dim=1)
        return t + self.interpolate_pos_encoding(t.shape[1] - 1, H, W)

    def get_intermediate_layers(self, x: torch.Tensor, layer_indices: list[int]) -> list[torch.Tensor]:
        """Tokens (B, 1 + N, dim) after each requested block, passed through the final LayerNorm.

        Runs only the blocks up to the deepest requested one (index 1 = the second block).
        """
        if not layer_indices or min(layer_indices) < 0 or max(layer_indices) >= len(self.blocks):
            raise ValueError(f"layer indices {layer_indices} out of range [0, {len(self.blocks) - 1}]")
        t = self.prepare_tokens(x)
        out = {}
        for i, blk in enumerate(self.blocks[: max(layer_indices) + 1]):
            t = blk(t)
            if i in layer_indices:
                out[i] = self.norm(t)
        return [out[i] for i in layer_indices]

    def patch_features(self, x: torch.Tensor, layer: int = 1) -> torch.Tensor:
        """Patch-token features of one layer as a map: (B, 3, H, W) -> (B, dim, H // p, W // p) (CLS dropped)."""
        B, _, H, W = x.shape
        t = self.get_intermediate_layers(x, [layer])[0][:, 1:]
        return t.transpose(1, 2).reshape(B, self.dim, H // self.patch_size, W // self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """CLS embedding after the last block and the final LayerNorm: (B, dim)."""
        return self.get_intermediate_layers(x, [len(self.blocks) - 1])[0][:, 0]


def vit_small(patch_size: int = 8) -> VisionTransformer:
    """ViT-S: 384 wide, 12 blocks, 6 heads, MLP ratio 4, LayerNorm eps 1e-6 (DINO's `vit_small`)."""
    return VisionTransformer(patch_size=patch_size, dim=384, depth=12, heads=6)


def state_dict_shapes(model: VisionTransformer) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every parameter (the official checkpoint's keys)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_dino_vits8(path: str | Path) -> VisionTransformer:
    """ViT-S/8 with weights from a local DINO checkpoint in the official key format (eval mode).

    A missing or unreadable file, a missing or unknown key, a wrong shape or non-finite values raise
    InputError naming the file and the key. Keys of a classification head (`head.*`) are ignored.
    """
    model = vit_small(8)
    state = check_state_dict(read_state_dict(path), state_dict_shapes(model), path, ignore_prefixes=("head.",))
    model.load_state_dict(state)
    return model.eval()
