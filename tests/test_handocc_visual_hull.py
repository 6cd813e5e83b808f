"""HandOcc's visual-hull check of the occupancy labels (handocc/visual_hull.py, ``label_hull``): hand-computed
projections, and the check on ideal and on mis-annotated synthetic data against the sidecar's exact meshes."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_handocc_labels import TINY

from handcli.errors import InputError
from handcli.methods.handocc.model import PRESETS
from handcli.methods.handocc.visual_hull import dilated_silhouette, in_visual_hull, mesh_misses

K = torch.tensor([[[10.0, 0.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 1.0]]])  # 5 x 5 image, principal point (2, 2)
EYE = torch.eye(4)[None]  # camera at the origin looking down +z


def _one_pixel(u: int, v: int) -> torch.Tensor:
    lab = torch.zeros(5, 5, dtype=torch.uint8)
    lab[v, u] = 2
    return lab


def test_dilated_silhouette_grows_by_the_radius():
    lab = _one_pixel(3, 2)
    assert dilated_silhouette(lab, 0).sum() == 1 and dilated_silhouette(lab, 0)[2, 3]
    d = dilated_silhouette(lab, 1)
    assert d.sum() == 9 and d[1:4, 2:5].all()


def test_points_on_background_are_off_the_hull(device):
    sil = [dilated_silhouette(_one_pixel(3, 2).to(device), 0)]
    pts = torch.tensor([
        [0.1, 0.0, 1.0],  # u = 3, v = 2: the hand pixel
        [-0.2, 0.0, 1.0],  # u = 0: background
        [0.05, 0.0, 1.0],  # u = 2.5: between a background and the hand pixel centre -> on the silhouette
        [0.1, 0.0, -1.0],  # behind the camera: no evidence
        [1.0, 0.0, 1.0],  # u = 12: outside the image, no evidence
        [0.1, 0.16, 1.0],  # v = 3.6: rows 3 and 4 are background
    ], device=device)
    keep = in_visual_hull(pts, K, EYE, sil)
    assert keep.device == pts.device and keep.tolist() == [True, False, True, True, True, False]


def test_the_image_border():
    """u = -0.5 lies between the outside of the image and column 0: on the silhouette when column 0 is hand."""
    pt = torch.tensor([[-0.25, 0.0, 1.0]])  # u = -0.5, v = 2
    assert in_visual_hull(pt, K, EYE, [dilated_silhouette(_one_pixel(0, 2), 0)]).tolist() == [True]
    assert in_visual_hull(pt, K, EYE, [dilated_silhouette(_one_pixel(1, 2), 0)]).tolist() == [False]


def test_every_view_can_carve():
    """Two views: the second one (shifted 0.15 m along x: u = 1.5) puts the point on background."""
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[1, 0, 3] = -0.15
    sil = [dilated_silhouette(_one_pixel(3, 2), 0)] * 2
    pt = torch.tensor([[0.1, 0.0, 1.0]])
    assert in_visual_hull(pt, K.repeat(2, 1, 1), w2c[:1], sil[:1]).tolist() == [True]
    assert in_visual_hull(pt, K.repeat(2, 1, 1), w2c, sil).tolist() == [False]
    sil1 = [dilated_silhouette(_one_pixel(3, 2), 1)] * 2  # a pixel of tolerance keeps it
    assert in_visual_hull(pt, K.repeat(2, 1, 1), w2c, sil1).tolist() == [True]


def test_label_hull_values_are_checked():
    assert PRESETS["fast"].label_hull == PRESETS["paper"].label_hull == "flip"
    for key, value in (("label_hull", "carve"), ("label_hull_px", -1)):
        with pytest.raises(InputError) as e:
            replace(PRESETS["fast"], **{key: value}).check()
        assert e.value.field == key


def test_ideal_labels_are_never_carved(tiny_cache):
    """Masks rendered from the labels' own mesh: no inside label is off the hull, the loss is unchanged."""
    from handcli.methods.handocc.method import HandOccMethod

    torch.manual_seed(0)
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, steps=4, label_hull="flip"), tiny_cache,
                      train_cameras=["400002", "400009", "400004"])
    _, on = m.train_step(0, torch.Generator().manual_seed(0))
    assert on["hull_carved"] < 1e-3
    m.cfg, m._silhouettes = replace(m.cfg, label_hull="off"), None
    _, off = m.train_step(0, torch.Generator().manual_seed(0))
    assert "hull_carved" not in off
    assert on["occ"] == pytest.approx(off["occ"], rel=1e-3)


def test_carved_labels_are_outside_the_true_hand(tmp_path):
    """MANO fits 8 mm off per frame (images from the exact ones), cache labels refined against the image: the
    labels the hull carves lie outside the exact mesh of the ground-truth sidecar, and there are some."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.data.raybatch import load_views, select_views
    from handcli.data.shards import open_cache
    from handcli.methods.handocc.sampler import inside_mesh, labelled_points
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import realism_config

    root = tmp_path / "ih"
    write_interhand(root, InterHandSynthConfig(
        frames=1, cameras=6, mono_cameras=0, seqs=("right",), seed=3, black_frame=False, null_mano=False,
        realism=realism_config("realistic", "interhand", mano_frame_mm=8.0, mano_seq_mm=0.0, joint_frame_mm=0.0,
                               joint_seq_mm=0.0, thicken_mm=0.0, detail_mm=0.0)))
    # the labels of the cache refined against the image (docs/datasets.md#mask-refinement), as the benches use
    preprocess_interhand(root, tmp_path / "c.h5", scale=0.5, refine_masks=4)
    exact = tmp_path / "exact"  # the same set with the sidecar's exact fits as its annotation
    shutil.copytree(root, exact)
    for name in ("MANO_NeuralAnnot", "joint_3d"):
        shutil.copy(root / "handcli_gt" / f"InterHand2.6M_train_{name}.json",
                    exact / "annotations" / "train" / f"InterHand2.6M_train_{name}.json")
    preprocess_interhand(exact, tmp_path / "exact.h5", scale=0.5)
    with open_cache(tmp_path / "c.h5") as c, open_cache(tmp_path / "exact.h5") as e:
        faces = torch.as_tensor(c.hand_model("right")["faces"].astype(np.int64))
        V = torch.as_tensor(c.frame_value("right/vertices", 0), dtype=torch.float32)
        VE = torch.as_tensor(e.frame_value("right/vertices", 0), dtype=torch.float32)
        assert float((V - VE).norm(dim=-1).mean()) > 0.004  # the annotation is off
        P, Y = labelled_points(V, faces, 8192, torch.Generator().manual_seed(0))
        vs = load_views(c, select_views(c, None, [0]))
        hull = in_visual_hull(P, vs.K, vs.w2c, [dilated_silhouette(lab, 0) for lab in vs.label])
        truth = inside_mesh(P, VE, faces, torch.Generator().manual_seed(1))
    carved = Y & ~hull
    assert carved.sum() > 0.02 * Y.sum()
    assert (carved & ~truth).sum() > 0.9 * carved.sum()


@pytest.mark.parametrize("mode", ["flip", "drop"])
def test_a_hull_that_carves_everything(tiny_cache, monkeypatch, mode):
    """Only inside labels, every one off the hull: "flip" makes them all outside labels, "drop" leaves the
    occupancy term out (nothing left), and the step stays finite either way."""
    import handcli.methods.handocc.method as method_mod
    from handcli.methods.handocc.method import HandOccMethod

    monkeypatch.setattr(method_mod, "in_visual_hull", lambda x, *a: torch.zeros(len(x), dtype=torch.bool))
    torch.manual_seed(0)
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, steps=4, label_hull=mode), tiny_cache,
                      train_cameras=["400002", "400009", "400004"])
    m.pools = {key: (P, torch.ones(len(P), dtype=torch.bool))  # every label inside
               for key in [(f, s) for f in m.frames for s, _ in m.joints[f]]
               for P in [torch.randn(64, 3) * 0.01 + m.joints[key[0]][0][1][9]]}
    loss, logs = m.train_step(0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and logs["hull_carved"] == pytest.approx(1.0)
    assert logs["occ_iou"] == 0.0  # no inside label left to hit
    assert ("occ" in logs) == (mode == "flip")


def test_mesh_misses_counts_hand_pixels_off_the_dilated_mesh_silhouette():
    """A 0.2 m square 1 m in front of a camera with f = 100 px and the principal point at (50, 50) covers the pixel
    centres u, v in 40..60 (21 x 21); grown by one 4-neighbour step, those and a row of 21 on each side (525; a 3 x 3
    square would add the 4 corners too). A 25 x 25 hand block (38..62) leaves 625 - 525 = 100 pixels uncovered; a
    hand of the square's own pixels none. Grown by two steps (the L1 ball): 441 + 84 + 4 x 21 + 4 = 613, so the
    block misses 3 pixels in each corner."""
    Kc = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]])
    V = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.1, 0.1, 1.0], [-0.1, 0.1, 1.0]])
    F = np.array([[0, 1, 2], [0, 2, 3]])
    hand = torch.zeros(101, 101, dtype=torch.bool)
    hand[38:63, 38:63] = True
    assert mesh_misses([(V, F)], Kc, np.eye(4), hand) == (100, 625)
    assert mesh_misses([(V, F)], Kc, np.eye(4), hand, radius=0) == (625 - 441, 625)
    assert mesh_misses([(V, F)], Kc, np.eye(4), hand, radius=2) == (625 - 613, 625)
    own = torch.zeros(101, 101, dtype=torch.bool)
    own[40:61, 40:61] = True
    assert mesh_misses([(V, F)], Kc, np.eye(4), own, radius=0) == (0, 441)
    # the camera moved 0.05 m to the right (world x = camera x + 0.05): the square lands 5 px to the left
    w2c = np.eye(4)
    w2c[0, 3] = -0.05
    assert mesh_misses([(V, F)], Kc, w2c, own, radius=0) == (5 * 21, 441)

