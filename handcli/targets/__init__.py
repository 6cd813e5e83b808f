"""Training targets computed from a cache (``handcli targets``): pseudo-depth maps and 2D teacher features.

- `handcli.targets.depth`: z-depth maps rendered from the posed hand meshes (``handcli.targets.depth/1``);
- `handcli.targets.features`: PCA-reduced teacher features at the teacher's stride
  (``handcli.targets.features/1``);
- `handcli.targets.store`: the readers training uses (`DepthTargets`, `FeatureTargets`, `sample_features`).

See docs/targets.md. Names are imported lazily so that ``import handcli.targets`` stays cheap.
"""

from __future__ import annotations

_LAZY = {
    "DepthTargets": "handcli.targets.store",
    "FeatureTargets": "handcli.targets.store",
    "sample_features": "handcli.targets.store",
    "compute_depth": "handcli.targets.depth",
    "z_to_ray_distance": "handcli.targets.depth",
    "compute_features": "handcli.targets.features",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'handcli.targets' has no attribute {name!r}")
