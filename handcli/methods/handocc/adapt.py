"""HandOcc pose adaptation: refine the skeletons of novel frames against their images, network frozen.

HandOcc renders a frame from its skeleton alone, so a novel pose needs no training of the networks; what an
annotation error costs (docs/methods/handocc.md#skeleton-refinement) is repaired by the same per-frame
joint offsets (``refine.py``) that training learns for its own frames. Adaptation builds a HandOcc method on
the novel frames of a cache, copies the trained weights, freezes every parameter but the new frames'
offsets (started at the trained hands' common offset, as the run renders an unseen frame) and trains them
with the photometric and mask losses of those frames' views (the occupancy labels
are off: they come from the annotated mesh, no evidence for the correction), through the field the adapted run
renders (the density calibration only where the run renders with it, ``cal_render``). The adapted run renders the
novel frames with their refined skeletons; its networks are bit-identical to the trained run's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from handcli.methods.base import freeze_all_but
from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.refine import SIDES

ADAPTED_PREFIXES = ("refine.",)  # the per-frame joint offsets of the novel hands


def prepare_adaptation(trained: HandOccMethod, cache: Path, *, frames: list[int] | None, steps: int, lr: float,
                       seed: int = 0, device: str | torch.device = "cpu",
                       cameras: list[str] | None = None) -> tuple[HandOccMethod, list[str]]:
    """The method to train for pose adaptation, and the names of the parameters it adapts.

    Args:
        trained: the trained HandOcc run (``HandOccMethod.from_run``); its weights are copied, not modified.
        cache: cache (or shard directory) of the novel poses, with images and hand masks; ``frames`` selects
            some of its frames and ``cameras`` some of its cameras.
        steps, lr: schedule of the refinement (constant learning rate; an Adam step moves a joint by about
            ``lr * refine_scale``).
    Returns:
        (method, adapted): a :class:`HandOccMethod` on the novel frames with the trained networks, zero joint
        offsets for every novel hand and every parameter frozen but those offsets (``adapted``: their names).
    """
    cfg = replace(trained.cfg, steps=steps, lr=lr, lr_final=lr, stage="full", refine=True, refine_start=0.0,
                  w_occ=0.0, w_occ_final=0.0, w_int=0.0, camera_colour=False, align_labels=False,
                  label_hull="off", cal_train=trained.cfg.cal_render)
    m = HandOccMethod(cfg, cache, method=trained.method, train_frames=frames, train_cameras=cameras,
                      device=str(device), seed=seed)
    state = {k: v.to(m.device) for k, v in trained.model.state_dict().items()
             if not k.startswith(("refine.", "colour.", "label_align."))}  # the trained frames' own modules
    missing, unexpected = m.model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("refine.") for k in missing):
        raise ValueError(f"trained HandOcc weights do not fit: missing {missing}, unexpected {unexpected}")
    start_from_transfer(m.model.refine, getattr(trained.model, "refine", None))
    m.learn_thickness = False
    return m, freeze_all_but(m.model, ADAPTED_PREFIXES)


def start_from_transfer(novel, trained) -> None:
    """Start the novel hands' offsets (``novel``: their SkeletonRefinement) where the trained run renders them
    before adaptation: at the trained hands' common offset (``SkeletonRefinement.transfer``); zero without a
    trained refinement."""
    if trained is None or not len(novel.keys):
        return
    with torch.no_grad():
        for k, side in enumerate(SIDES):  # all hands of a side at once (the common offset is computed once)
            rows = novel.keys[:, 1] == k
            if bool(rows.any()):
                anchor = novel.anchor[rows]
                novel.offsets[rows] = (trained.transfer(side, anchor) - anchor) / novel.scale
