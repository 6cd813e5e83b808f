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

Where the annotation is right there is nothing to repair, and the offsets fit what the networks render wrongly in
the fitted cameras instead (a novel pose is rendered less well than a trained one): every fifth fitting camera is
held back (``check_cameras``), and a frame keeps its adapted skeletons only if they fit those cameras' images
better than the start did (``keep_checked``); the others return to the start.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from handcli.data.raybatch import select_views
from handcli.errors import InputError
from handcli.methods.base import freeze_all_but
from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.refine import SIDES
from handcli.methods.handocc.view_fit import frame_errors, pooled_psnr
from handcli.progress import log

ADAPTED_PREFIXES = ("refine.",)  # the per-frame joint offsets of the novel hands
CHECK_EVERY = 5  # by default every fifth fitting camera is held back to check the fit (none with fewer cameras)


def split_check_cameras(cache: Path, cameras: list[str] | None, frames: list[int] | None,
                        check: list[str] | None) -> tuple[list[str] | None, list[str]]:
    """(fitting cameras, check cameras) of the novel frames' views.

    cameras: the cameras adaptation may use (None: every camera of the cache); check: the ones held back to check
    the fit (None: every ``CHECK_EVERY``-th of the cameras that have views of ``frames``, in cache order, none with
    fewer than ``CHECK_EVERY``; []: none). Check cameras must be cache cameras; they are taken out of the fit.
    """
    from handcli.data.shards import open_cache

    with open_cache(cache) as c:
        names = [cam["name"] for cam in c.cameras()]
        seen = {names[int(k)] for k in c.view_table()["camera"][select_views(c, cameras, frames)]}
    usable = [n for n in names if n in seen]
    if check is None:
        check = usable[CHECK_EVERY - 1::CHECK_EVERY] if len(usable) >= CHECK_EVERY else []
    unknown = sorted(set(check) - set(names))
    if unknown:
        raise InputError(f"check cameras not in the cache: {unknown}", path=cache, field="check_cameras")
    if not check:
        return cameras, []
    fit = [n for n in usable if n not in check]
    if not fit:
        raise InputError("every camera of the novel frames is a check camera: none is left to fit", path=cache,
                         field="check_cameras")
    return fit, list(check)


def prepare_adaptation(trained: HandOccMethod, cache: Path, *, frames: list[int] | None, steps: int, lr: float,
                       seed: int = 0, device: str | torch.device = "cpu", cameras: list[str] | None = None,
                       check_cameras: list[str] | None = None) -> tuple[HandOccMethod, list[str]]:
    """The method to train for pose adaptation, and the names of the parameters it adapts.

    Args:
        trained: the trained HandOcc run (``HandOccMethod.from_run``); its weights are copied, not modified.
        cache: cache (or shard directory) of the novel poses, with images and hand masks; ``frames`` selects
            some of its frames and ``cameras`` some of its cameras.
        steps, lr: schedule of the refinement (constant learning rate; an Adam step moves a joint by about
            ``lr * refine_scale``).
        check_cameras: cameras held back from the fit to check it (``split_check_cameras``; None: every fifth, []:
            none); ``keep_checked`` reads them from ``method.check_cameras`` after training.
    Returns:
        (method, adapted): a :class:`HandOccMethod` on the novel frames with the trained networks, the novel
        hands' joint offsets at the trained run's common offset and every parameter frozen but those offsets
        (``adapted``: their names).
    """
    cameras, check = split_check_cameras(cache, cameras, frames, check_cameras)
    cfg = replace(trained.cfg, steps=steps, lr=lr, lr_final=lr, stage="full", refine=True, refine_start=0.0,
                  w_occ=0.0, w_occ_final=0.0, w_int=0.0, camera_colour=False, align_labels=False,
                  label_hull="off", cal_train=trained.model.rendered_calibration(train=False) is not None)
    m = HandOccMethod(cfg, cache, method=trained.method, train_frames=frames, train_cameras=cameras,
                      device=str(device), seed=seed)
    state = {k: v.to(m.device) for k, v in trained.model.state_dict().items()
             if not k.startswith(("refine.", "colour.", "label_align."))}  # the trained frames' own modules
    missing, unexpected = m.model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("refine.") for k in missing):
        raise ValueError(f"trained HandOcc weights do not fit: missing {missing}, unexpected {unexpected}")
    start_from_transfer(m.model.refine, getattr(trained.model, "refine", None))
    cal = getattr(m.model, "density_cal", None)
    if cfg.cal_train and cal is not None and cfg.cal_render == "auto" and int(cal.in_render) == 2:
        with torch.no_grad():  # training renders through p: make it the calibration the run renders (frozen here)
            cal.p.copy_(cal.fitted / cal.scale)
    m.frozen_networks = True
    m.fit_cameras, m.check_cameras, m.adapt_start = cameras, check, m.model.refine.offsets.detach().clone()
    return m, freeze_all_but(m.model, ADAPTED_PREFIXES)


def keep_checked(m: HandOccMethod) -> dict | None:
    """After adaptation: return each novel frame whose adapted skeletons fit its check cameras' images worse than
    the start to the start (``m.adapt_start``), in place. The fit is the squared colour error of the frame's
    check views, rendered whole, against their images with the background black (``view_fit.frame_errors``).
    Returns None without check cameras, else {"check_cameras", "kept", "reverted" (frame indices),
    "check_psnr_start", "check_psnr"} (the check views' PSNR with the start's skeletons and with the ones kept)."""
    if not m.check_cameras:
        return None
    refine = m.model.refine
    adapted = refine.offsets.detach().clone()
    views = select_views(m.cache, m.check_cameras, m.frames)

    def errors(offsets: torch.Tensor) -> dict[int, tuple[float, int]]:
        with torch.no_grad():
            refine.offsets.copy_(offsets)
        return frame_errors(m, views)

    start, after = errors(m.adapt_start), errors(adapted)
    reverted = sorted(f for f in after if after[f][0] > start[f][0])
    with torch.no_grad():
        refine.offsets.copy_(adapted)
        for f in reverted:
            rows = refine.keys[:, 0] == f
            refine.offsets[rows] = m.adapt_start[rows]
    kept = {f: (start if f in reverted else after)[f] for f in after}
    out = {"check_cameras": list(m.check_cameras), "kept": sorted(set(after) - set(reverted)), "reverted": reverted,
           "check_psnr_start": pooled_psnr(start), "check_psnr": pooled_psnr(kept)}
    log(f"checked on cameras {','.join(out['check_cameras'])}: {len(out['kept'])} frames kept their adapted "
        f"skeletons, {len(reverted)} went back to the start (check PSNR {out['check_psnr_start']:.2f} -> "
        f"{out['check_psnr']:.2f} dB)")
    return out


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
