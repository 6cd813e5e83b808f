"""Fit a hand model to 3D joints (used to pose the open hand model on real datasets)."""

from __future__ import annotations

import numpy as np
import torch

from handcli.errors import InputError
from handcli.hand.model import HandModel

PALM_JOINTS = [0, 1, 5, 9, 13, 17]  # wrist and the base joint of each finger (handcli order)


def kabsch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Rotation R (B, 3, 3) minimising sum w |R (src - c_src) - (dst - c_dst)|^2 for (B, N, 3) point sets."""
    if w is None:
        w = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    cs = (w[..., None] * src).sum(1, keepdim=True)
    cd = (w[..., None] * dst).sum(1, keepdim=True)
    h = torch.einsum("bn,bni,bnj->bij", w, src - cs, dst - cd)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    s = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return vt.transpose(1, 2) @ s @ u.transpose(1, 2)


def batch_rodrigues_(aa: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle -> (B, 3, 3) rotations (smplx's Rodrigues)."""
    from smplx.lbs import batch_rodrigues

    return batch_rodrigues(aa.reshape(-1, 3))


def matrix_to_axis_angle(r: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations -> (B, 3) axis-angle (via scipy; used only for initialisation)."""
    from scipy.spatial.transform import Rotation

    aa = Rotation.from_matrix(r.detach().cpu().double().numpy()).as_rotvec()
    return torch.as_tensor(aa, dtype=torch.float32, device=r.device)


def fit_to_joints(model: HandModel, joints: torch.Tensor, valid: torch.Tensor | None = None, steps: int = 300,
                  lr: float = 0.05, shape_prior: float = 0.05, pose_prior: float = 0.5,
                  fit_shape: bool = True, init: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit pose, shape and translation to target joints with batched Adam.

    joints (B, 21, 3) metres in handcli order; valid (B, 21) bool or None. Returns pose (B, 48) in the
    model's convention (relative to hands_mean unless flat_hand_mean), shape (B, 10), trans (B, 3) and the
    mean distance over valid joints (B,) in metres. Priors are in mm^2 per unit beta / per radian^2, small
    next to the joint term; they settle the finger twists the joints cannot see.

    Frames are independent (the loss is a sum over frames, Adam is elementwise): fitting B frames in one
    call gives each frame what a call of its own would, at a fraction of the cost per frame. ``init``
    = (pose (B, 48), shape (B, 10), trans (B, 3)) starts from a previous solution instead of the
    palm-aligned relaxed pose (warm start; see :func:`fit_sequence`).
    """
    joints = torch.as_tensor(joints, dtype=torch.float32, device=model.hands_mean.device)
    b = joints.shape[0]
    if valid is None:
        valid = torch.ones(b, 21, dtype=torch.bool, device=joints.device)
    valid = torch.as_tensor(valid, device=joints.device).bool()
    if joints.ndim != 3 or joints.shape[1:] != (21, 3) or valid.shape != joints.shape[:2]:
        raise InputError(f"expected joints (B, 21, 3) and valid (B, 21), got {tuple(joints.shape)} and "
                         f"{tuple(valid.shape)}", field="joints")
    if not torch.isfinite(joints[valid]).all():
        raise InputError("valid joints must be finite (no NaN/Inf)", field="joints")
    joints = torch.where(valid[..., None], joints, torch.zeros_like(joints))  # invalid entries may be NaN
    w = valid.float()

    with torch.no_grad():
        relaxed48 = torch.cat([torch.zeros(3, device=joints.device), model.hands_mean - model.pose_mean[3:]])
        rest = model.forward_joints(relaxed48.expand(b, 48))
        wp = w[:, PALM_JOINTS]
        rot = kabsch(rest[:, PALM_JOINTS], joints[:, PALM_JOINTS], wp + 1e-6)
        j0 = model.rest_joints(torch.zeros(1, 10, device=joints.device))[0, 0]
        # smplx rotates about the root joint J0: x' = R (x - J0) + J0 + trans
        src_c = (wp[..., None] * rest[:, PALM_JOINTS]).sum(1) / wp.sum(1, keepdim=True).clamp_min(1e-6)
        dst_c = (wp[..., None] * joints[:, PALM_JOINTS]).sum(1) / wp.sum(1, keepdim=True).clamp_min(1e-6)
        trans0 = dst_c - torch.einsum("bij,bj->bi", rot, src_c - j0) - j0
    # start from (and regularise towards) the relaxed hands_mean pose, in the model's convention
    relaxed = (model.hands_mean - model.pose_mean[3:]).expand(b, 45)
    if init is None:
        orient = matrix_to_axis_angle(rot).requires_grad_(True)
        hand = relaxed.clone().requires_grad_(True)
        shape = torch.zeros(b, 10, device=joints.device, requires_grad=fit_shape)
        trans = trans0.clone().requires_grad_(True)
    else:
        # the previous solution's fingers and shape, rigidly re-aligned onto this frame's joints
        p0, s0, t0 = (torch.as_tensor(x, dtype=torch.float32, device=joints.device).detach() for x in init)
        with torch.no_grad():
            prev = model.forward_joints(p0, s0, t0)
            rd = kabsch(prev, joints, w + 1e-6)
            cp = (w[..., None] * prev).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)
            ct = (w[..., None] * joints).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)
            j0s = model.rest_joints(s0)[:, 0]
            # x' = Rd (R (x - J0) + J0 + t - cp) + ct  =  (Rd R)(x - J0) + J0 + t'
            t1 = torch.einsum("bij,bj->bi", rd, j0s + t0 - cp) + ct - j0s
            r1 = rd @ batch_rodrigues_(p0[:, :3] + model.pose_mean[:3])
        orient = (matrix_to_axis_angle(r1) - model.pose_mean[:3]).requires_grad_(True)
        hand = p0[:, 3:].clone().requires_grad_(True)
        shape = s0.clone().requires_grad_(fit_shape)
        trans = t1.clone().requires_grad_(True)
    params = [orient, hand, trans] + ([shape] if fit_shape else [])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.02)
    wsum = w.sum(1).clamp_min(1.0)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        pred = model.forward_joints(torch.cat([orient, hand], 1), shape, trans)
        d2 = ((pred - joints) * 1000.0).pow(2).sum(-1)  # mm^2
        loss = (d2 * w).sum(1) / wsum
        loss = loss + shape_prior * shape.pow(2).sum(1) + pose_prior * (hand - relaxed).pow(2).sum(1)
        loss.sum().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pose = torch.cat([orient, hand], 1).detach()
        pred = model.forward_joints(pose, shape.detach(), trans.detach())
        err = ((pred - joints).norm(dim=-1) * w).sum(1) / wsum
    return pose, shape.detach(), trans.detach(), err


def sequence_runs(n: int, starts: np.ndarray | None, segment: int) -> np.ndarray:
    """(n,) position of each frame in its run: runs are at most ``segment`` consecutive frames that never
    cross a sequence start (``starts`` (n,) bool, True where a sequence begins; frame 0 always does)."""
    if segment < 1:
        raise InputError(f"segment must be >= 1, got {segment}", field="segment")
    starts = np.zeros(n, bool) if starts is None else np.asarray(starts, bool).copy()
    if starts.shape != (n,):
        raise InputError(f"starts must have shape ({n},), got {starts.shape}", field="starts")
    pos = np.zeros(n, np.int64)
    for t in range(1, n):
        pos[t] = 0 if starts[t] or pos[t - 1] + 1 >= segment else pos[t - 1] + 1
    return pos


def fit_sequence(model: HandModel, joints: torch.Tensor, valid: torch.Tensor | None = None,
                 starts=None, *, segment: int = 16, min_batch: int = 256, batch: int = 4096, steps: int = 300,
                 warm_steps: int = 300, warm_lr: float = 0.05,
                 **kw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit many frames of one or more sequences at once, each warm-started from the previous frame.

    joints (T, 21, 3) metres in frame order, valid (T, 21) bool or None, ``starts`` (T,) bool marking the
    first frame of each sequence (None: one sequence). Frames are cut into runs of at most ``segment``
    consecutive frames (:func:`sequence_runs`; shorter when that would leave fewer than ``min_batch`` runs
    to fit at once: a small batch costs nearly as much per step as a large one). The first frame of every
    run is fitted from the palm-aligned relaxed pose (``steps``), then frame k of every run from the
    solution of frame k-1, rigidly re-aligned onto its joints (``warm_steps`` at ``warm_lr``): all runs in
    lockstep, at most ``batch`` frames per :func:`fit_to_joints` call. At equal steps the warm start ends
    closer to the optimum than a cold start (docs/benchmarks.md); Adam's progress is bounded by its step
    size, so fewer warm steps do not keep the error.
    Returns pose (T, 48), shape (T, 10), trans (T, 3) and the mean joint error (T,) in metres, as
    :func:`fit_to_joints`; ``kw`` goes to it (priors, fit_shape).
    """
    joints = torch.as_tensor(joints, dtype=torch.float32)
    n = joints.shape[0]
    if valid is None:
        valid = torch.ones(n, 21, dtype=torch.bool)
    valid = torch.as_tensor(valid).bool()
    pos = torch.as_tensor(sequence_runs(n, starts, max(1, min(segment, n // max(min_batch, 1)))))
    dev = model.hands_mean.device
    pose, shape = torch.zeros(n, 48, device=dev), torch.zeros(n, 10, device=dev)
    trans, err = torch.zeros(n, 3, device=dev), torch.zeros(n, device=dev)
    for r in range(int(pos.max()) + 1 if n else 0):
        idx = torch.nonzero(pos == r)[:, 0]
        for c in range(0, len(idx), batch):
            sl = idx[c:c + batch]
            if r == 0:
                out = fit_to_joints(model, joints[sl], valid[sl], steps=steps, **kw)
            else:
                prev = (sl - 1).to(dev)
                out = fit_to_joints(model, joints[sl], valid[sl], steps=warm_steps, lr=warm_lr,
                                    init=(pose[prev], shape[prev], trans[prev]), **kw)
            sl = sl.to(dev)
            pose[sl], shape[sl], trans[sl], err[sl] = out
    return pose, shape, trans, err
