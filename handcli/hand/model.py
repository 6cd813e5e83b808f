"""One hand-model class for the real MANO files and the open hand model, both run through smplx.

``HandModel.load(side)`` gives the open model; ``HandModel.load(side, model_dir)`` reads the user's
``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (official chumpy pickles are read without chumpy). The forward pass
always takes full axis-angle poses (48 values, global orient first); PCA coefficients are expanded first
with :meth:`HandModel.expand_pca_pose`.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handcli.errors import InputError
from handcli.hand.mano_io import load_mano_dict
from handcli.hand.skeleton import MANO_TIP_VERTEX_IDS, MANO_TO_21

# How each dataset's MANO parameters are meant to be used (docs/formats.md#mano-flags).
DATASET_MANO_FLAGS = {
    "interhand": dict(flat_hand_mean=False, use_pca=False, fix_left_shapedirs=True),
    "ho3d": dict(flat_hand_mean=True, use_pca=False, fix_left_shapedirs=False),
    "dexycb": dict(flat_hand_mean=False, use_pca=True, fix_left_shapedirs=False),
}

SIDES = ("right", "left")
_FILE_NAMES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}


@dataclass
class HandOutput:
    """vertices (B, V, 3), joints (B, 21, 3) in handcli order (wrist, thumb..pinky base to tip; tips are
    vertices), joints16 (B, 16, 3) MANO's joints. Metres."""

    vertices: torch.Tensor
    joints: torch.Tensor
    joints16: torch.Tensor


@functools.lru_cache(maxsize=8)
def _cached_dict(path: str, mtime_ns: int) -> dict:
    return load_mano_dict(path)


def read_model_dict(path: str | Path) -> dict:
    """``load_mano_dict`` with an in-process cache keyed by path and modification time (do not mutate)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise InputError("MANO model file not found (expected MANO_RIGHT.pkl / MANO_LEFT.pkl)", path=path)
    return _cached_dict(str(path), path.stat().st_mtime_ns)


def model_file(side: str, model_dir: str | Path | None) -> Path:
    """The pickle of ``side`` in ``model_dir`` (None: the open hand model's cache folder)."""
    if side not in SIDES:
        raise InputError(f"hand side must be 'right' or 'left', not {side!r}", field="side")
    if model_dir is None:
        from handcli.hand.open_model import open_model_dir

        model_dir = open_model_dir()
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError("MANO model folder not found", path=model_dir)
    return model_dir / _FILE_NAMES[side]


def needs_left_shapedirs_fix(left_shapedirs: np.ndarray, right_shapedirs: np.ndarray) -> bool:
    """InterHand2.6M's rule: the official MANO_LEFT.pkl carries the right hand's shapedirs (smplx issue #48)."""
    return float(np.abs(left_shapedirs[:, 0, :] - right_shapedirs[:, 0, :]).sum()) < 1.0


class HandModel(torch.nn.Module):
    """A MANO-format hand model (real MANO or the open hand model) evaluated by ``smplx.MANO``."""

    def __init__(self, d: dict, side: str, *, flat_hand_mean: bool = False, use_pca: bool = False,
                 right_shapedirs: np.ndarray | None = None, source: str | None = None):
        import smplx
        from smplx.utils import Struct

        super().__init__()
        if side not in SIDES:
            raise InputError(f"hand side must be 'right' or 'left', not {side!r}", field="side")
        self.side = side
        self.flat_hand_mean = bool(flat_hand_mean)
        self.use_pca = bool(use_pca)
        self.source = source
        self.is_open = d.get("handcli_model") is not None
        data = dict(d)
        self.shapedirs_fixed = False
        if right_shapedirs is not None and side == "left" and needs_left_shapedirs_fix(
            np.asarray(data["shapedirs"]), np.asarray(right_shapedirs)
        ):
            sd = np.array(data["shapedirs"], dtype=np.float64, copy=True)
            sd[:, 0, :] *= -1
            data["shapedirs"] = sd
            self.shapedirs_fixed = True
        # smplx prints a warning about 10 shape coefficients on stdout, which carries only output paths here
        with contextlib.redirect_stdout(io.StringIO()):
            self.mano = smplx.MANO(
                model_path=source or "", data_struct=Struct(**data), is_rhand=side == "right", use_pca=False,
                flat_hand_mean=self.flat_hand_mean, num_pca_comps=45, create_global_orient=False,
                create_hand_pose=False, create_betas=False, create_transl=False,
            )
        tips = d.get("tip_vertex_ids")
        self.tip_vertex_ids = [int(i) for i in (tips if tips is not None else MANO_TIP_VERTEX_IDS)]
        self.faces = np.asarray(d["f"], dtype=np.int64)
        self.register_buffer("tip_index", torch.tensor(self.tip_vertex_ids, dtype=torch.long), persistent=False)
        comps = torch.tensor(np.asarray(d["hands_components"]), dtype=torch.float32)
        self.register_buffer("hands_components", comps, persistent=False)
        self.register_buffer("hands_mean", torch.tensor(np.asarray(d["hands_mean"]), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("map21", torch.tensor(MANO_TO_21, dtype=torch.long), persistent=False)

    # ---------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, side: str, model_dir: str | Path | None = None, *, flat_hand_mean: bool = False,
             use_pca: bool = False, fix_left_shapedirs: bool = False, device="cpu") -> "HandModel":
        """Load ``side`` from ``model_dir`` (None: the open hand model).

        ``fix_left_shapedirs`` applies InterHand2.6M's left-hand shapedirs fix (reads the right model too).
        ``use_pca`` only records that the dataset's poses are PCA coefficients (see ``expand_pca_pose``);
        the forward pass always takes axis-angle.
        """
        path = model_file(side, model_dir)
        d = read_model_dict(path)
        right_sd = None
        if fix_left_shapedirs and side == "left":
            right_sd = np.asarray(read_model_dict(model_file("right", path.parent))["shapedirs"])
        model = cls(d, side, flat_hand_mean=flat_hand_mean, use_pca=use_pca, right_shapedirs=right_sd,
                    source=str(path))
        return model.to(device)

    # ---------------------------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return int(self.mano.v_template.shape[0])

    @property
    def parents(self) -> torch.Tensor:
        """(16,) MANO parents, -1 for the wrist."""
        return self.mano.parents

    @property
    def lbs_weights(self) -> torch.Tensor:
        """(V, 16) skinning weights."""
        return self.mano.lbs_weights

    @property
    def v_template(self) -> torch.Tensor:
        return self.mano.v_template

    @property
    def shapedirs(self) -> torch.Tensor:
        """(V, 3, 10), after the left-hand fix when it applied."""
        return self.mano.shapedirs

    @property
    def pose_mean(self) -> torch.Tensor:
        """(48,) what smplx adds to every pose: zeros, or (0, 0, 0, hands_mean) unless flat_hand_mean."""
        return self.mano.pose_mean

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                trans: torch.Tensor | None = None) -> HandOutput:
        """pose (B, 48) axis-angle incl. global orient (relative to hands_mean unless flat_hand_mean),
        shape (B, 10) betas, trans (B, 3) metres -> HandOutput."""
        pose = torch.as_tensor(pose, dtype=torch.float32, device=self.hands_mean.device)
        if pose.ndim != 2 or pose.shape[1] != 48:
            raise InputError(f"pose must have shape (B, 48), got {tuple(pose.shape)}", field="pose")
        b = pose.shape[0]
        shape = torch.zeros(b, 10, device=pose.device) if shape is None else torch.as_tensor(
            shape, dtype=torch.float32, device=pose.device)
        trans = torch.zeros(b, 3, device=pose.device) if trans is None else torch.as_tensor(
            trans, dtype=torch.float32, device=pose.device)
        out = self.mano(betas=shape, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=trans)
        verts = out.vertices
        joints16 = out.joints[:, :16]
        full = torch.cat([joints16, verts[:, self.tip_index]], dim=1)
        return HandOutput(vertices=verts, joints=full[:, self.map21], joints16=joints16)

    def forward_joints(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                       trans: torch.Tensor | None = None) -> torch.Tensor:
        """The same (B, 21, 3) joints as ``forward(...).joints``, skinning only the five tip vertices.

        Joints are regressed from the shaped template, so they only need the regressed template and blend
        shapes; about two orders of magnitude cheaper than the full mesh (used by fitting).
        """
        from smplx.lbs import batch_rigid_transform, batch_rodrigues

        pose = torch.as_tensor(pose, dtype=torch.float32, device=self.hands_mean.device)
        b = pose.shape[0]
        shape = torch.zeros(b, 10, device=pose.device) if shape is None else torch.as_tensor(
            shape, dtype=torch.float32, device=pose.device)
        mano = self.mano
        if not hasattr(self, "_joint_cache") or self._joint_cache[0].device != pose.device:
            jt = mano.J_regressor @ mano.v_template
            jsd = torch.einsum("jv,vcl->jcl", mano.J_regressor, mano.shapedirs)
            pd = mano.posedirs.view(mano.posedirs.shape[0], -1, 3)[:, self.tip_index]  # (P, 5, 3)
            self._joint_cache = (jt, jsd, pd)
        jt, jsd, pd = self._joint_cache
        full = pose + mano.pose_mean
        rot = batch_rodrigues(full.reshape(-1, 3)).view(b, 16, 3, 3)
        joints_rest = jt + torch.einsum("bl,jcl->bjc", shape, jsd)
        tips = mano.v_template[self.tip_index] + torch.einsum("bl,vcl->bvc", shape, mano.shapedirs[self.tip_index])
        feat = (rot[:, 1:] - torch.eye(3, device=pose.device)).reshape(b, -1)
        tips = tips + torch.einsum("bp,pvc->bvc", feat, pd)
        joints16, A = batch_rigid_transform(rot, joints_rest, mano.parents, dtype=torch.float32)
        T = torch.einsum("vj,bjkl->bvkl", mano.lbs_weights[self.tip_index], A)
        tips = torch.einsum("bvkl,bvl->bvk", T[..., :3, :3], tips) + T[..., :3, 3]
        out = torch.cat([joints16, tips], dim=1)[:, self.map21]
        if trans is not None:
            out = out + torch.as_tensor(trans, dtype=torch.float32, device=pose.device)[:, None]
        return out

    def pca_to_axis_angle(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, n<=45) PCA coefficients -> (B, 45) axis-angle ``coeffs @ hands_components[:n]``.

        The mean is NOT added: the result is relative to hands_mean, as the forward pass expects when
        flat_hand_mean is False (the manopth/DexYCB convention).
        """
        coeffs = torch.as_tensor(coeffs, dtype=torch.float32, device=self.hands_components.device)
        n = coeffs.shape[-1]
        if n > 45:
            raise InputError(f"at most 45 PCA coefficients, got {n}", field="pose")
        return coeffs @ self.hands_components[:n]

    def axis_angle_to_pca(self, aa: torch.Tensor, n: int = 45) -> torch.Tensor:
        """(B, 45) axis-angle -> (B, n) coefficients (least squares; exact for n=45, orthonormal rows)."""
        aa = torch.as_tensor(aa, dtype=torch.float32, device=self.hands_components.device)
        comps = self.hands_components[:n]
        return torch.linalg.lstsq(comps.T, aa.T).solution.T

    def expand_pca_pose(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 3+n) global orient + PCA coefficients -> (B, 48) axis-angle for ``forward``."""
        pose = torch.as_tensor(pose, dtype=torch.float32, device=self.hands_components.device)
        return torch.cat([pose[:, :3], self.pca_to_axis_angle(pose[:, 3:])], dim=1)

    def rest_joints(self, shape: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 10) betas -> (B, 16, 3) unposed joints ``J_regressor @ (v_template + shapedirs @ beta)``."""
        if shape is None:
            shape = torch.zeros(1, 10, device=self.hands_mean.device)
        shape = torch.as_tensor(shape, dtype=torch.float32, device=self.hands_mean.device)
        v = self.mano.v_template + torch.einsum("bl,vcl->bvc", shape, self.mano.shapedirs)
        return torch.einsum("jv,bvc->bjc", self.mano.J_regressor, v)


def load_hand_models(dataset: str, model_dir: str | Path | None = None, device="cpu") -> dict[str, HandModel]:
    """Both sides with ``dataset``'s MANO flags (see ``DATASET_MANO_FLAGS``); model_dir None = open model."""
    if dataset not in DATASET_MANO_FLAGS:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_MANO_FLAGS)}",
                         field="dataset")
    flags = DATASET_MANO_FLAGS[dataset]
    return {side: HandModel.load(side, model_dir, device=device, **flags) for side in SIDES}


def pose_design(model: HandModel) -> dict:
    """The rest skeleton of ``model`` (shape 0) as a pose-design dict for ``open_model.synth_poses``."""
    from handcli.hand.open_model import design_from_joints

    with torch.no_grad():
        j = model.rest_joints()[0].cpu().double().numpy()
        tips = model.v_template[model.tip_index].cpu().double().numpy()
    return design_from_joints(j, tips, model.side)


def plausible_poses(model: HandModel, closure, spread, oppose, rng: np.random.Generator | None = None,
                    noise_deg: float = 0.0) -> np.ndarray:
    """Plausible finger poses for ``model`` in its own convention: (N, 45) axis-angle to pass as
    ``pose[:, 3:]`` (hands_mean already subtracted unless flat_hand_mean).

    closure (N,) 0 open .. 1 fist; spread (N,) ~[-0.3, 1]; oppose (N,) thumb opposition 0..1; ``rng`` adds
    per-finger and per-joint variation (see ``open_model.synth_poses``).
    """
    from handcli.hand.open_model import synth_poses

    aa = synth_poses(pose_design(model), closure, spread, oppose, rng=rng, noise_deg=noise_deg)
    return aa - model.pose_mean[3:].cpu().double().numpy()


NAMED_POSES = ("flat", "mean", "fist", "spread", "grasp")


def named_pose(model: HandModel, name: str) -> np.ndarray:
    """(48,) pose for ``model`` (global orient zero): flat (all joints at rest), mean (hands_mean, the
    relaxed hand), fist, spread (open, fingers fanned) or grasp (half-closed, thumb opposed)."""
    pm = model.pose_mean.cpu().double().numpy()
    if name == "flat":
        aa = -pm[3:]
    elif name == "mean":
        aa = model.hands_mean.cpu().double().numpy() - pm[3:]
    elif name in ("fist", "spread", "grasp"):
        c, s, o = {"fist": (1.0, 0.0, 1.0), "spread": (0.0, 1.0, 0.0), "grasp": (0.5, 0.2, 0.7)}[name]
        aa = plausible_poses(model, [c], [s], [o])[0]
    else:
        raise InputError(f"unknown pose name {name!r}; expected one of {', '.join(NAMED_POSES)}", field="pose")
    return np.concatenate([np.zeros(3), aa])
