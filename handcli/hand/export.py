"""Export a loaded hand model's effective arrays in the MANO file format.

Caches embed the model that posed their meshes (after any per-dataset fix, such as InterHand's
left-hand shapedirs), so later stages rebuild exactly the same model without the original files.
"""

from __future__ import annotations

import numpy as np

from handcli.hand.model import HandModel
from handcli.hand.skeleton import KINTREE_ROOT

MANO_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
             "hands_components", "hands_mean", "tip_vertex_ids")


def model_to_dict(m: HandModel) -> dict:
    """MANO-format dict (float32 arrays) of what ``m`` actually evaluates."""
    mano = m.mano
    V = m.num_vertices
    parents = mano.parents.cpu().numpy().astype(np.int64)
    kintree = np.stack([np.where(parents < 0, KINTREE_ROOT, parents), np.arange(len(parents))]).astype(np.int64)
    return {
        "v_template": mano.v_template.cpu().numpy().astype(np.float32),
        "shapedirs": mano.shapedirs.cpu().numpy().astype(np.float32),
        # smplx stores posedirs as (P, V*3); the file format is (V, 3, P)
        "posedirs": mano.posedirs.cpu().numpy().T.reshape(V, 3, -1).astype(np.float32),
        "J_regressor": mano.J_regressor.cpu().numpy().astype(np.float32),
        "weights": mano.lbs_weights.cpu().numpy().astype(np.float32),
        "kintree_table": kintree,
        "f": np.asarray(m.faces, dtype=np.int64),
        "hands_components": m.hands_components.cpu().numpy().astype(np.float32),
        "hands_mean": m.hands_mean.cpu().numpy().astype(np.float32),
        "tip_vertex_ids": np.asarray(m.tip_vertex_ids, dtype=np.int64),
    }


def model_from_dict(d: dict, side: str, kind: str = "open-hand/1") -> HandModel:
    """A HandModel (flat_hand_mean=True: poses are absolute) from ``model_to_dict`` output."""
    data = {k: np.asarray(d[k]) for k in MANO_KEYS}
    if kind != "mano":
        data["handcli_model"] = kind
    return HandModel(data, side, flat_hand_mean=True)
