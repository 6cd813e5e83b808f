"""HandNeRF (Choi et al., ICRA 2024): a generalizable semantic radiance field of a hand and the object it
holds, from one RGB image, the 3D hand mesh and the 2D object mask (docs/formulas.md#handnerf-choi). Its
baseline ``pixelnerf`` (the paper's ablation M2) uses the pixel-aligned image feature only.

Per scene (one frame seen by one input camera):

1. image encoder on a square crop of the input view: multi-scale maps (ResNet-18 stem/layer1/layer2/layer3
   as in HandNeRF_RELEASE, or a frozen ImageNet EfficientNet-Lite0 in ``fast``); the feature of a point
   is the bilinear sample of every map at its projection, concatenated and projected to ``img_feat_dim``
   (= the reference's upsample-concatenate-1x1-convolution, evaluated at the points);
2. a voxel grid over the hand-object box (``voxel`` m; each dimension rounded up to ``grid_multiple``);
   hand voxels at the 778 posed mesh vertices, object voxels at the grid points whose projection falls in
   the input object mask; each voxel holds [image feature, xyz − wrist, fixed random semantic code] (77
   channels in the paper; vertices sharing a voxel are averaged);
3. a 3D CNN with submanifold semantics (conv0, down0, conv1 → volume 1, down1, conv2 → volume 2, ...;
   BatchNorm over the active voxels only), evaluated densely with masks: a dense convolution whose input
   is zero off the active set, with its output kept on the active set, equals spconv's ``SubMConv3d``; a
   strided convolution's active set is the 3x3x3/2 max-pool of its input's. The four volumes (strides
   2/4/8/16) are sampled trilinearly at a query point, summed, and mapped by Linear + Softplus;
4. an MLP (PE of xyz − wrist, [volume feature], image feature; input re-injected) with a raw density, a
   3-class semantic head (0 background, 1 object, 2 hand) and a view-dependent colour head;
5. coarse (stratified in the box) + fine (importance-sampled, separate MLP) volume rendering of rgb,
   opacity, depth and semantic logits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from handcli.camera import world_to_pixels
from handcli.nn.encoding import encoding_dim, positional_encoding
from handcli.nn.mlp import MLP
from handcli.render.samplers import edges_to_intervals, sample_pdf, stratified_samples
from handcli.render.volume import render_depth, render_features, render_opacity, render_weights

SEMANTIC_CLASSES = ("background", "object", "hand")  # Choi's class order (class weights [1, 2, 1])
ENCODERS = ("resnet18", "efficientnet-lite0")
FEATURE_MODES = ("hand_object", "image")  # handnerf-ho (M5), pixelnerf (M2)
LATENT_SEED = 20240513  # the fixed random semantic codes (a buffer saved with every checkpoint)


@dataclass(frozen=True)
class HandNeRFHOConfig:
    """Hyperparameters. ``paper`` = HandNeRF_RELEASE's config; ``fast`` trains in minutes on 2 CPU cores."""

    features: str = "hand_object"  # "hand_object": HandNeRF; "image": PixelNeRF (ablation M2)
    # input view and image encoder
    input_camera: str | None = "836212060125"  # DexYCB serial of Choi's input view; else the frame's first view
    # input hand of frames the run did not train on: "estimated" = the input view's estimate stored by preprocess
    # --hand-estimates (Choi tests with HandOccNet's), GT where the cache has none; "gt" = always the GT mesh
    test_hand: str = "estimated"
    input_size: int = 256
    crop_scale: float = 1.3
    encoder: str = "resnet18"
    encoder_weights: str | None = None  # torchvision checkpoint (resnet18-f37072fd.pth); None: from scratch
    encoder_trainable: bool = True
    img_feat_dim: int = 64
    # voxel volume and 3D CNN
    voxel: float = 0.005
    box_padding: float = 0.03
    grid_multiple: int = 32
    latent_dim: int = 10
    cnn_channels: int = 64
    conv0_layers: int = 2
    level_layers: tuple = (2, 3, 3, 3)
    level_dilation: tuple = (1, 2, 2, 2)
    volume_feat_dim: int = 32
    # field
    pe_deg: int = 10
    dir_deg: int = 4
    hidden: int = 256
    layers: int = 8
    skips: tuple = (5,)
    color_hidden: int = 128
    # rendering and training
    render_size: int = 256
    n_samples: int = 64
    n_importance: int = 128
    rays_per_step: int = 1024
    object_fraction: float = 0.5
    object_ramp_steps: int = 5000
    input_view_weight: float = 0.8
    w_rgb: float = 1.0
    w_opacity: float = 0.1
    w_semantic: float = 0.4
    class_weights: tuple = (1.0, 2.0, 1.0)
    lr: float = 3e-4
    lr_final: float = 3e-5
    steps: int = 200_000
    chunk: int = 2048  # rays per chunk when rendering whole images
    # meshing
    mesh_voxel: float = 0.002
    mesh_level: float = 10.0
    mesh_masks: str = "all"  # "all": inside every view's mask (Choi); "input": the input view's; "none"
    dust_ratio: float = 0.1
    # out-of-core training (handcli.data.viewpool): training views held in memory at once (<= 0: all),
    # steps between pool refreshes and the fraction of the pool replaced at each
    view_pool: int = 256
    pool_refresh: int = 50
    pool_replace: float = 0.25


PRESETS = {
    "paper": HandNeRFHOConfig(),
    "fast": HandNeRFHOConfig(input_size=128, encoder="efficientnet-lite0", encoder_trainable=False, voxel=0.01,
                             grid_multiple=16, cnn_channels=32, conv0_layers=0, level_layers=(1, 1, 1, 1),
                             volume_feat_dim=16, pe_deg=8, hidden=128, layers=4, skips=(2,), color_hidden=64,
                             render_size=96, n_samples=32, n_importance=0, rays_per_step=512,
                             object_ramp_steps=300, lr=1e-3, lr_final=1e-4, steps=3000, chunk=4096,
                             mesh_voxel=0.004),
}


def preset(name: str, method: str = "handnerf-ho") -> HandNeRFHOConfig:
    cfg = PRESETS[name]
    return replace(cfg, features="image") if method == "pixelnerf" else cfg


def check_config(cfg: HandNeRFHOConfig) -> None:
    """Raise ValueError for settings the model cannot be built with."""
    if cfg.features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}")
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}")
    if len(cfg.level_layers) != 4 or len(cfg.level_dilation) != 4:
        raise ValueError("level_layers and level_dilation need 4 entries (volumes at strides 2, 4, 8, 16)")
    if cfg.test_hand not in ("estimated", "gt"):
        raise ValueError("test_hand must be estimated or gt")
    if cfg.mesh_masks not in ("all", "input", "none"):
        raise ValueError("mesh_masks must be all, input or none")
    if len(cfg.class_weights) != 3:
        raise ValueError("class_weights needs 3 values (background, object, hand)")
    if cfg.voxel <= 0 or cfg.mesh_voxel <= 0 or cfg.input_size % 16 or cfg.input_size < 16 or cfg.render_size < 4:
        raise ValueError("voxel sizes must be positive, input_size a multiple of 16 (the encoder's coarsest "
                         "stride), render_size >= 4")


# ---------------------------------------------------------------------------------------------------------
# Scene inputs


@dataclass
class SceneInput:
    """Everything the network sees of one scene (tensors on the model's device).

    image: (3, S, S) input crop in [0, 1]; K (3, 3), w2c (4, 4): its camera (crop intrinsics);
    box_min (3,), dims (3,) grid points along x, y, z, voxel: the feature grid (point i at box_min + i·voxel);
    box_max (3,): the padded hand-object box (rays are bounded by [box_min, box_max]);
    wrist (3,); hand_verts (V, 3) posed mesh; hand_vox (V,) flat voxel index of each vertex;
    obj_pts (M, 3) object voxel points, obj_vox (M,) their flat indices; side: "right" or "left";
    levels: cached encoder maps (frozen encoder) or None.
    """

    image: Tensor
    K: Tensor
    w2c: Tensor
    box_min: Tensor
    box_max: Tensor
    dims: tuple[int, int, int]
    voxel: float
    wrist: Tensor
    hand_verts: Tensor
    hand_vox: Tensor
    obj_pts: Tensor
    obj_vox: Tensor
    side: str
    levels: list[Tensor] | None = None

    def to(self, device) -> "SceneInput":
        out = {}
        for k, v in self.__dict__.items():
            if torch.is_tensor(v):
                out[k] = v.to(device)
            elif k == "levels" and v is not None:
                out[k] = [x.to(device) for x in v]
            else:
                out[k] = v
        return SceneInput(**out)


def grid_dims(extent: np.ndarray, voxel: float, multiple: int) -> tuple[int, int, int]:
    """Grid points per axis: ceil(extent / voxel) rounded up to the next multiple of ``multiple`` above it.

    HandNeRF_RELEASE's ``(n | 31) + 1``: for a power of two m this is m·(n // m + 1) (32 -> 64, 33 -> 64).
    """
    n = np.ceil(np.asarray(extent) / voxel).astype(int)
    return tuple(int(multiple * (k // multiple + 1)) for k in n)


# ---------------------------------------------------------------------------------------------------------
# Image encoder


class ImageEncoder(nn.Module):
    """Multi-scale image maps of a crop: ``levels(image (B, 3, S, S) in [0, 1]) -> [maps at strides 2..16]``.

    resnet18: stem (64), layer1 (64), layer2 (128), layer3 (256) = 512 channels (HandNeRF_RELEASE);
    efficientnet-lite0: blocks 0 (16, s2), 2 (24, s4), 4 (40, s8), 10 (112, s16) = 192 channels.
    A frozen encoder stays in eval mode and takes no gradient.
    """

    def __init__(self, kind: str, weights: str | None, trainable: bool, load: bool = True):
        super().__init__()
        self.kind = kind
        self.trainable = trainable
        if kind == "resnet18":
            from handcli.nn.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet18, load_resnet18

            self.net = load_resnet18(weights, depth=3) if (weights and load) else ResNet18(depth=3)
            self.channels = self.net.channels
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            from handcli.nn.efficientnet_teacher import LITE0_MEAN, LITE0_STD

            self.net = _EfficientNetLevels(weights, load)
            self.channels = [16, 24, 40, 112]
            mean, std = LITE0_MEAN, LITE0_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if not trainable:
            for p in self.net.parameters():
                p.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        if not self.trainable:
            self.net.eval()
        return self

    def levels(self, image: Tensor) -> list[Tensor]:
        x = (image - self.mean) / self.std
        if self.trainable:
            return self.net.levels(x)
        with torch.no_grad():
            return self.net.levels(x)


class _EfficientNetLevels(nn.Module):
    """EfficientNet-Lite0 stem + blocks 0..10 (the offline ImageNet checkpoint of efficientnet_teacher)."""

    TAPS = (0, 2, 4, 10)

    def __init__(self, weights: str | None, load: bool):
        super().__init__()
        if load:
            from handcli.nn.efficientnet_teacher import load_efficientnet_lite0

            net = load_efficientnet_lite0(weights).net
        else:
            try:
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError:
                from handcli.errors import InputError

                raise InputError("encoder efficientnet-lite0 needs the PyPI package efficientnet-lite-pytorch",
                                 field="encoder") from None
            net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        self.stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(list(net._blocks)[: self.TAPS[-1] + 1])

    def levels(self, x: Tensor) -> list[Tensor]:
        x = self.act(self.bn0(self.stem(x)))
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.TAPS:
                out.append(x)
        return out


def sample_image_features(levels: list[Tensor], uv: Tensor, size: int) -> Tensor:
    """Bilinear samples of every map at pixel positions of the S x S crop: uv (N, 2) -> (N, sum of channels).

    A map at stride s covers the crop exactly (S divisible by s), so the normalised coordinate is the same
    for every level: x = (u + 0.5) / S · 2 − 1 (align_corners=False); outside the crop the feature is 0.
    """
    g = ((uv + 0.5) / size * 2.0 - 1.0).view(1, -1, 1, 2).to(levels[0].dtype)
    return torch.cat([F.grid_sample(m[:1], g, mode="bilinear", padding_mode="zeros", align_corners=False)[0, :, :, 0]
                      for m in levels], dim=0).T


# ---------------------------------------------------------------------------------------------------------
# Sparse-semantics 3D CNN evaluated densely


class MaskedBlock(nn.Module):
    """Conv3d + BatchNorm1d over the active voxels + ReLU, outputs zero off the active set.

    ``stride`` 1 keeps the active set (= spconv SubMConv3d, kernel 3, any dilation); stride 2 is spconv's
    SparseConv3d(kernel 3, stride 2, padding 1): its output voxel j is active when any input voxel 2j−1..2j+1
    is.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride, padding=dilation, dilation=dilation)
        self.bn = nn.BatchNorm1d(cout)
        self.stride = stride

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (1, C, D, H, W) zero off ``mask`` (1, 1, D, H, W) bool -> (y, mask of y)."""
        if self.stride > 1:
            mask = F.max_pool3d(mask.float(), 3, self.stride, 1) > 0
        y = self.conv(x)
        C = y.shape[1]
        idx = torch.nonzero(mask.reshape(-1))[:, 0]
        x_act = y.reshape(C, -1)[:, idx].T  # (n, C)
        if self.training and len(idx) < 2:  # batch statistics need two values; use the running ones
            b = self.bn
            active = F.relu(F.batch_norm(x_act, b.running_mean, b.running_var, b.weight, b.bias, False, 0.0, b.eps))
        else:
            active = F.relu(self.bn(x_act))
        out = torch.zeros(C, y[0, 0].numel(), dtype=y.dtype, device=y.device).index_copy(1, idx, active.T)
        return out.view_as(y), mask


class VolumeEncoder(nn.Module):
    """HandNeRF's SparseConvNet: conv0, down0, conv1 -> out1, down1, conv2 -> out2, ..., conv4 -> out4."""

    def __init__(self, cin: int, cfg: HandNeRFHOConfig):
        super().__init__()
        C = cfg.cnn_channels
        self.conv0 = nn.ModuleList(MaskedBlock(cin if i == 0 else C, C) for i in range(cfg.conv0_layers))
        c_down0 = C if cfg.conv0_layers else cin
        self.down = nn.ModuleList(MaskedBlock(c_down0 if i == 0 else C, C, stride=2) for i in range(4))
        self.levels = nn.ModuleList(
            nn.ModuleList(MaskedBlock(C, C, dilation=cfg.level_dilation[k]) for _ in range(cfg.level_layers[k]))
            for k in range(4))

    def forward(self, x: Tensor, mask: Tensor) -> list[Tensor]:
        """x (1, Cin, D, H, W), mask (1, 1, D, H, W) -> 4 volumes (1, C, ...) at strides 2, 4, 8, 16."""
        for blk in self.conv0:
            x, mask = blk(x, mask)
        outs = []
        for k in range(4):
            x, mask = self.down[k](x, mask)
            for blk in self.levels[k]:
                x, mask = blk(x, mask)
            outs.append(x)
        return outs


def sample_volumes(volumes: list[Tensor], points: Tensor, box_min: Tensor, voxel: float) -> Tensor:
    """Sum of trilinear samples of the stride-2^k volumes at world points (N, 3) -> (N, C).

    Level k's voxel j sits at box_min + j·2^k·voxel (a stride-2 convolution with padding 1 centres output j
    on input 2j), so the align_corners=True coordinate is (x − box_min) / (2^k·voxel) / (n_k − 1) · 2 − 1.
    Outside the grid the feature is 0.
    """
    total = None
    for k, vol in enumerate(volumes):
        n = torch.tensor([vol.shape[4], vol.shape[3], vol.shape[2]], dtype=points.dtype, device=points.device)
        g = (points - box_min) / (voxel * 2 ** (k + 1)) / (n - 1).clamp_min(1) * 2.0 - 1.0
        s = F.grid_sample(vol, g.view(1, -1, 1, 1, 3).to(vol.dtype), mode="bilinear", padding_mode="zeros",
                          align_corners=True)[0, :, :, 0, 0].T
        total = s if total is None else total + s
    return total


# ---------------------------------------------------------------------------------------------------------
# Field


class SemanticField(nn.Module):
    """MLP of [PE(x − wrist), volume feature, image feature] -> raw density, 3 semantic logits, rgb."""

    def __init__(self, in_dim: int, dir_dim: int, cfg: HandNeRFHOConfig):
        super().__init__()
        self.trunk = MLP(in_dim, cfg.hidden, cfg.layers, None, skips=cfg.skips)
        self.density = nn.Linear(cfg.hidden, 1)
        self.semantic = nn.Linear(cfg.hidden, 3)
        self.feature = nn.Linear(cfg.hidden, cfg.hidden)
        self.view = nn.Linear(cfg.hidden + dir_dim, cfg.color_hidden)
        self.rgb = nn.Linear(cfg.color_hidden, 3)

    def forward(self, x: Tensor, dir_enc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, in_dim), dir_enc (N, dir_dim) -> density_raw (N,), logits (N, 3), rgb (N, 3)."""
        h = self.trunk(x)
        rgb = torch.sigmoid(self.rgb(F.relu(self.view(torch.cat([self.feature(h), dir_enc], -1)))))
        return self.density(h)[:, 0], self.semantic(h), rgb


@dataclass
class SceneEncoding:
    """What the field needs at query time: image maps and, for HandNeRF, the feature volumes."""

    scene: SceneInput
    levels: list[Tensor]
    volumes: list[Tensor] | None


class HandNeRFHO(nn.Module):
    """HandNeRF (``features="hand_object"``) or PixelNeRF (``features="image"``) for any number of scenes."""

    def __init__(self, cfg: HandNeRFHOConfig, num_hand_vertices: int = 778, load_encoder: bool = True):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg.encoder, cfg.encoder_weights, cfg.encoder_trainable, load=load_encoder)
        self.img_proj = nn.Linear(sum(self.encoder.channels), cfg.img_feat_dim)
        self.hand_object = cfg.features == "hand_object"
        pos_dim = encoding_dim(3, 0, cfg.pe_deg, True)
        dir_dim = encoding_dim(3, 0, cfg.dir_deg, True)
        in_dim = pos_dim + cfg.img_feat_dim
        if self.hand_object:
            g = torch.Generator().manual_seed(LATENT_SEED)
            self.register_buffer("hand_latent", torch.randn(num_hand_vertices, cfg.latent_dim, generator=g))
            self.register_buffer("object_latent", torch.randn(1, cfg.latent_dim, generator=g))
            self.volume_encoder = VolumeEncoder(cfg.img_feat_dim + 3 + cfg.latent_dim, cfg)
            self.volume_proj = nn.Linear(cfg.cnn_channels, cfg.volume_feat_dim)
            in_dim += cfg.volume_feat_dim
        self.coarse = SemanticField(in_dim, dir_dim, cfg)
        self.fine = SemanticField(in_dim, dir_dim, cfg) if cfg.n_importance > 0 else None

    # -----------------------------------------------------------------------------------------------------
    def encode_levels(self, image: Tensor) -> list[Tensor]:
        """Encoder maps of one input crop (3, S, S) -> list of (1, C, h, w)."""
        return self.encoder.levels(image[None])

    def point_image_features(self, enc: SceneEncoding, points: Tensor) -> Tensor:
        """Pixel-aligned features (N, img_feat_dim) of world points (N, 3) in the input view."""
        s = enc.scene
        uv, z = world_to_pixels(points, s.K, s.w2c, min_depth=1e-8)
        f = sample_image_features(enc.levels, uv, s.image.shape[-1])
        return self.img_proj(f * (z > 0)[:, None])

    def encode(self, scene: SceneInput) -> SceneEncoding:
        """Image maps and, for HandNeRF, the four feature volumes of one scene."""
        levels = scene.levels if scene.levels is not None else self.encode_levels(scene.image)
        enc = SceneEncoding(scene, levels, None)
        if self.hand_object:
            enc.volumes = self.feature_volumes(enc)
        return enc

    def feature_volumes(self, enc: SceneEncoding) -> list[Tensor]:
        """Voxel features [image, xyz − wrist, semantic code] scattered into the grid, through the 3D CNN."""
        s = enc.scene
        nx, ny, nz = s.dims
        hand = torch.cat([self.point_image_features(enc, s.hand_verts), s.hand_verts - s.wrist,
                          self.hand_latent[: len(s.hand_verts)]], dim=-1)
        feats, vox = hand, s.hand_vox
        if len(s.obj_vox):
            obj = torch.cat([self.point_image_features(enc, s.obj_pts), s.obj_pts - s.wrist,
                             self.object_latent.expand(len(s.obj_pts), -1)], dim=-1)
            feats, vox = torch.cat([hand, obj]), torch.cat([s.hand_vox, s.obj_vox])
        C = feats.shape[1]
        n = nx * ny * nz
        summed = torch.zeros(n, C, dtype=feats.dtype, device=feats.device).index_add(0, vox, feats)
        count = torch.zeros(n, dtype=feats.dtype, device=feats.device).index_add(
            0, vox, torch.ones_like(vox, dtype=feats.dtype))
        dense = (summed / count.clamp_min(1)[:, None]).T.reshape(1, C, nz, ny, nx)
        mask = (count > 0).reshape(1, 1, nz, ny, nx)
        return self.volume_encoder(dense, mask)

    def query(self, enc: SceneEncoding, points: Tensor, dirs: Tensor, fine: bool = False
              ) -> tuple[Tensor, Tensor, Tensor]:
        """Field at world points (N, 3) seen along unit dirs (N, 3): sigma (N,), logits (N, 3), rgb (N, 3)."""
        s = enc.scene
        parts = [positional_encoding(points - s.wrist, 0, self.cfg.pe_deg, True)]
        if self.hand_object:
            vf = sample_volumes(enc.volumes, points, s.box_min, s.voxel)
            parts.append(F.softplus(self.volume_proj(vf)))
        parts.append(self.point_image_features(enc, points))
        net = self.fine if fine and self.fine is not None else self.coarse
        raw, logits, rgb = net(torch.cat(parts, -1), positional_encoding(dirs, 0, self.cfg.dir_deg, True))
        return F.relu(raw), logits, rgb

    # -----------------------------------------------------------------------------------------------------
    def _render_pass(self, enc: SceneEncoding, origins: Tensor, dirs: Tensor, t0: Tensor, t1: Tensor,
                     fine: bool) -> dict:
        N, S = t0.shape
        mid = 0.5 * (t0 + t1)
        pts = origins[:, None] + mid[..., None] * dirs[:, None]
        sigma, logits, rgb = self.query(enc, pts.reshape(-1, 3), dirs[:, None].expand(N, S, 3).reshape(-1, 3),
                                        fine)
        w, _, _ = render_weights(sigma.view(N, S), t0, t1)
        return {"rgb": render_features(w, rgb.view(N, S, 3)), "semantic": render_features(w, logits.view(N, S, 3)),
                "opacity": render_opacity(w), "depth": render_depth(w, mid), "weights": w, "evaluated": N * S}

    def render_rays(self, enc: SceneEncoding, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor,
                    perturb: bool = False, gen: torch.Generator | None = None) -> dict:
        """Render N rays (unit dirs) over [near, far] (N,): the final pass's rgb (N, 3), semantic logits (N, 3),
        opacity (N,), depth (N,) (ray distance, not normalised), plus ``coarse`` (the coarse pass) when there is
        a fine pass, and ``evaluated`` (field evaluations)."""
        t0, t1 = stratified_samples(near, far, self.cfg.n_samples, perturb, generator=gen)
        out = self._render_pass(enc, origins, dirs, t0, t1, fine=False)
        if self.fine is None:
            return out
        edges = torch.cat([t0, t1[:, -1:]], dim=-1)
        extra = sample_pdf(edges, out["weights"], self.cfg.n_importance, deterministic=not perturb, generator=gen)
        f0, f1 = edges_to_intervals(torch.sort(torch.cat([edges, extra], -1), dim=-1).values)
        fine = self._render_pass(enc, origins, dirs, f0, f1, fine=True)
        fine["coarse"] = out
        fine["evaluated"] += out["evaluated"]
        return fine

    def density_and_class(self, enc: SceneEncoding, points: Tensor, chunk: int = 65536) -> tuple[Tensor, Tensor]:
        """sigma (N,) and semantic argmax (N,) (0 background, 1 object, 2 hand) of the final (fine) field."""
        sig, cls = [], []
        dummy = torch.tensor([[0.0, 0.0, 1.0]], device=points.device)
        for i in range(0, len(points), chunk):
            p = points[i:i + chunk]
            s, lg, _ = self.query(enc, p, dummy.expand(len(p), 3), fine=self.fine is not None)
            sig.append(s)
            cls.append(lg.argmax(-1))
        if not sig:
            return points.new_zeros(0), torch.zeros(0, dtype=torch.long, device=points.device)
        return torch.cat(sig), torch.cat(cls)


# ---------------------------------------------------------------------------------------------------------
# Losses


def balanced_bce(opacity: Tensor, fg: Tensor, eps: float = 0.01) -> Tensor:
    """BCE of opacity (N,) vs foreground (N,) bool, fg and bg weighted equally (PyTorch3D ``calc_bce``).

    Predictions are clamped to [eps, 1 − eps]; each class's weight is 1/count, renormalised to mean 1.
    """
    p = opacity.clamp(eps, 1.0 - eps)
    y = fg.to(p.dtype)
    w = y / y.sum().clamp_min(1.0) + (1 - y) / (1 - y).sum().clamp_min(1.0)
    w = w * (w.numel() / w.sum().clamp_min(1.0))
    return F.binary_cross_entropy(p, y, weight=w)


def semantic_loss(logits: Tensor, target: Tensor, class_weights: Tensor) -> Tensor:
    """Weighted cross-entropy of rendered semantic logits (N, 3) vs Choi classes (N,) (Semantic-NeRF)."""
    return F.cross_entropy(logits, target, weight=class_weights)


# ---------------------------------------------------------------------------------------------------------
# Meshing


def remove_dust(cube: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the 26-connected components of ``cube > 0`` smaller than ``ratio`` x the occupied voxel count
    (HandNeRF_RELEASE ``remove_dust_from_voxel_cube`` with cc3d.dust; here scipy.ndimage.label)."""
    from scipy import ndimage

    occ = cube > 0
    total = int(occ.sum())
    if total == 0:
        return cube
    labels, n = ndimage.label(occ, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= int(total * ratio + 0.5)
    keep[0] = False
    return np.where(keep[labels], cube, 0.0)


def mesh_from_cube(cube: np.ndarray, level: float, origin: np.ndarray, voxel: float, pad: int = 10):
    """Marching cubes (PyMCubes) on a density cube indexed [ix, iy, iz] with grid point i at origin + i·voxel.

    The cube is padded with ``pad`` zero voxels so surfaces close at the border. Returns a trimesh.Trimesh with
    outward normals (an empty one when nothing exceeds ``level``).
    """
    import mcubes
    import trimesh

    if not (cube > level).any():
        return trimesh.Trimesh()
    v, f = mcubes.marching_cubes(np.pad(cube, pad), float(level))
    mesh = trimesh.Trimesh((v - pad) * voxel + np.asarray(origin), f.astype(np.int64), process=True)
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    return mesh

