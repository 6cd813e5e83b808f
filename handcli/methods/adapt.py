"""HandNeRF pose adaptation (Guo §3.4): fine-tune only the deformation field on novel poses.

(HandOcc's adaptation, which refines the novel frames' skeletons, is ``handcli.methods.handocc.adapt``; both
are reached through the method classes' ``adaptation`` and share `handcli.methods.base.freeze_all_but`.)

A trained run is rebuilt on the novel frames with depth-only supervision (no RGB is needed); every frame
gets the mean of the trained appearance codes, and every parameter except the deformation field (the
error-correction network ``ec`` and its pose encoder ``pose_net``) is frozen, so the canonical NeRF and the
appearance stay bit-identical and only the warp adapts to the new poses. The ``adapt`` command parses its
options, calls :func:`prepare_adaptation`, trains with :func:`handcli.methods.trainer.train` and writes
the run folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from handcli.errors import InputError
from handcli.methods.base import freeze_all_but
from handcli.methods.handnerf.method import HandNeRFMethod

ADAPTED_PREFIXES = ("ec.", "pose_net.")  # the deformation field: error-correction MLP and its pose encoder


def check_adaptable(config: dict, config_path: Path) -> None:
    """Raise InputError unless a run's method config (config.json "config") has a deformation to adapt."""
    if config.get("deform") != "lbs" or not config.get("error_correction", False):
        raise InputError("pose adaptation needs a HandNeRF run with the error-correction network",
                         path=config_path, field="config.deform")


def prepare_adaptation(trained: HandNeRFMethod, cache: Path, *, depth_path: Path, frames: list[int] | None,
                       steps: int, lr: float, seed: int = 0, device: str | torch.device = "cpu",
                       method: str = "handnerf", cameras: list[str] | None = None) -> tuple[HandNeRFMethod, list[str]]:
    """The method to train for pose adaptation, and the names of the parameters it adapts.

    Args:
        trained: the trained HandNeRF run (``HandNeRFMethod.from_run``); its weights are copied, not modified.
        cache: cache (or shard directory) of the novel poses; ``frames`` selects some of its frames and
            ``cameras`` some of its cameras (None: all).
        depth_path: pseudo-depth targets of ``cache`` (the only image supervision).
        steps, lr: schedule of the fine-tuning (constant learning rate).
    Returns:
        (method, adapted): a depth-only :class:`HandNeRFMethod` on the novel frames whose latent codes
        (F, latent_dim) all equal the trained codes' mean, with every parameter frozen but the
        deformation field's; ``adapted`` lists the trainable parameter names.
    """
    cfg = replace(trained.cfg, steps=steps, lr=lr, lr_final=lr)
    m = HandNeRFMethod(cfg, cache, method=method, train_frames=frames, train_cameras=cameras, depth_path=depth_path,
                       device=str(device), depth_only=True, seed=seed)
    state = {k: v.to(m.device) for k, v in trained.model.state_dict().items()}
    n = m.model.latent.weight.shape[0]
    state["latent.weight"] = state["latent.weight"].mean(0, keepdim=True).expand(n, -1).clone()
    m.model.load_state_dict(state)
    return m, freeze_all_but(m.model, ADAPTED_PREFIXES)
