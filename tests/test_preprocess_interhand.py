"""``preprocess interhand`` on the synthetic dataset: cameras, joints, masks, bounds, scaling, shards."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest

from handcli.camera import project, transform
from handcli.data.cache import Cache, merge_caches
from handcli.data.interhand_preprocess import preprocess_interhand
from handcli.hand.skeleton import IH_TO_21


def _gt_mask(root, rec, cam_name):
    seq_dir = root / "handcli_gt" / "train" / f"Capture{rec.capture}" / rec.seq / f"cam{cam_name}"
    return cv2.imread(str(seq_dir / f"mask{rec.frame_idx:04d}.png"), cv2.IMREAD_UNCHANGED)


def _image_ids(root):
    data = json.loads((root / "annotations/train/InterHand2.6M_train_data.json").read_text())
    return {(im["capture"], im["seq_name"], im["frame_idx"], im["camera"]): im["id"] for im in data["images"]}


def test_cache_contents_and_drops(synth_cache):
    with Cache(synth_cache) as c:
        s = c.summary()
        # 2 sequences x 4 frames, minus the all-black frame and the frame with a null left MANO entry
        assert s["num_frames"] == 6
        names = {cam["name"] for cam in s["cameras"]}
        assert "410028" not in names  # monochrome camera dropped by default
        assert len(names) == 4 and s["num_views"] == 6 * 4
        keys = [f["id"] for f in s["frames"]]
        assert not any(k.endswith("/998") and "0000_" in k for k in keys)  # all-black frame dropped
        inter = [f for f in s["frames"] if "dh_touch" in f["seq"]]
        assert inter and all(set(f["hands"]) == {"right", "left"} for f in inter)
        assert all(f["hands"][s_]["mano"] is not None for f in inter for s_ in ("right", "left"))
        att = c.attrs
        assert att["schema"] == "handcli.cache/1" and att["dataset"] == "interhand2.6m"
        assert c.hand_model("right")["mesh_source"] == "mano-params"


def test_joint_reprojection_below_one_pixel(synth_ih, synth_cache):
    gt2d = json.loads((synth_ih / "handcli_gt" / "joints2d.json").read_text())
    ids = _image_ids(synth_ih)
    errs, inside = [], []
    with Cache(synth_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        for j in range(c.num_views):
            rec = c.frame(int(vt["frame"][j]))
            cam = cams[int(vt["camera"][j])]
            iid = ids[(rec.capture, rec.seq, rec.frame_idx, cam["name"])]
            ref = np.array(gt2d[str(iid)], dtype=float)
            label = c.view(j)["label"]
            for side, off in (("right", 0), ("left", 21)):
                if side not in rec.hands:
                    continue
                uv = project(transform(cam["world_to_cam"], rec.hands[side].joints.astype(np.float64)), cam["K"])
                errs.append(np.linalg.norm(uv - ref[np.asarray(IH_TO_21) + off], axis=1))
                px = np.round(uv).astype(int)
                ok = (px[:, 0] >= 0) & (px[:, 0] < cam["width"]) & (px[:, 1] >= 0) & (px[:, 1] < cam["height"])
                # tips are surface vertices at the silhouette's edge: allow them one pixel of slack
                fg = cv2.dilate((label > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
                inside.append(fg[px[ok, 1], px[ok, 0]] > 0)
    errs = np.concatenate(errs)
    assert errs.mean() < 1.0, errs.mean()
    # projected joints land on the rendered hand: joints lie inside the hand's volume, so they project
    # inside the silhouette whether or not they are occluded
    assert np.concatenate(inside).all()


def test_masks_match_ground_truth(synth_ih, synth_cache):
    with Cache(synth_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        ious = []
        for j in range(c.num_views):
            v = c.view(j)
            rec = c.frame(v["frame"])
            gt = _gt_mask(synth_ih, rec, cams[v["camera"]]["name"])
            # labels: 1 right, 2 left (cache) vs 200 right, 100 left (sidecar)
            for lab, glab in ((1, 200), (2, 100)):
                a, b = v["label"] == lab, gt == glab
                if b.sum():
                    ious.append((a & b).sum() / (a | b).sum())
            assert v["rgb"].shape == (cams[v["camera"]]["height"], cams[v["camera"]]["width"], 3)
        assert min(ious) > 0.98
        nf = vt["near_far"]
        assert np.all(nf[:, 0] > 0.3) and np.all(nf[:, 1] > nf[:, 0]) and np.all(nf[:, 1] < 2.0)
        assert np.all(vt["fg_pixels"] > 500)


def test_near_far_bound_every_hand_vertex(synth_cache):
    with Cache(synth_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        for j in range(c.num_views):
            rec = c.frame(int(vt["frame"][j]))
            w2c = cams[int(vt["camera"][j])]["world_to_cam"]
            centre = -w2c[:3, :3].T @ w2c[:3, 3]
            for h in rec.hands.values():
                d = np.linalg.norm(h.vertices - centre, axis=1)
                assert vt["near_far"][j, 0] <= d.min() and d.max() <= vt["near_far"][j, 1]


def test_scale_half_gives_handnerf_resolution(synth_ih, tmp_path, synth_cache):
    out = tmp_path / "half.h5"
    preprocess_interhand(synth_ih, out, scale=0.5, seqs="0000_rh_wave", keep_mono=True)
    with Cache(out) as c, Cache(synth_cache) as full:
        sizes = {(cam["width"], cam["height"]) for cam in c.cameras()}
        assert sizes == {(167, 256), (256, 167)}
        assert "410028" in {cam["name"] for cam in c.cameras()}
        cam_h = next(cm for cm in c.cameras() if cm["name"] == "400002")
        cam_f = next(cm for cm in full.cameras() if cm["name"] == "400002")
        # projecting a joint at half resolution lands at half the full-resolution coordinate (centre aligned)
        rec = c.frame(0)
        X = rec.hands["right"].joints.astype(np.float64)
        uv_h = project(transform(cam_h["world_to_cam"], X), cam_h["K"])
        uv_f = project(transform(cam_f["world_to_cam"], X), cam_f["K"])
        assert np.allclose(uv_h, (uv_f + 0.5) * np.array([167 / 334, 256 / 512]) - 0.5, atol=1e-6)


@pytest.mark.slow
def test_workers_and_shards_give_the_same_cache(synth_ih, tmp_path):
    kw = dict(seqs="0001_dh_touch", cameras="400002,400009")
    preprocess_interhand(synth_ih, tmp_path / "one.h5", **kw)
    preprocess_interhand(synth_ih, tmp_path / "two.h5", workers=2, **kw)
    preprocess_interhand(synth_ih, tmp_path / "s0.h5", shard="0/2", **kw)
    preprocess_interhand(synth_ih, tmp_path / "s1.h5", shard="1/2", **kw)
    merge_caches([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "merged.h5")
    with h5py.File(tmp_path / "one.h5") as a:
        ref = {k: a[k][()] for k in ("frames/key", "views/rgb", "views/label", "views/near_far",
                                     "frames/right/vertices", "cameras/K")}
    with h5py.File(tmp_path / "s0.h5") as s0, h5py.File(tmp_path / "s1.h5") as s1:
        assert s0["frames/key"].shape[0] >= 1 and s1["frames/key"].shape[0] >= 1
    for other in ("two.h5", "merged.h5"):
        with h5py.File(tmp_path / other) as b:
            for k, v in ref.items():
                assert np.array_equal(b[k][()], v), (other, k)


def test_selection_that_matches_nothing_is_an_error(synth_ih, tmp_path):
    from handcli.errors import InputError

    with pytest.raises(InputError):
        preprocess_interhand(synth_ih, tmp_path / "x.h5", seqs="no_such_seq")
    assert not list(tmp_path.iterdir())


def test_cache_embeds_the_model_that_posed_its_meshes(synth_cache):
    import torch

    with Cache(synth_cache) as c:
        for i in range(c.num_frames):
            rec = c.frame(i)
            for side, h in rec.hands.items():
                m = c.hand_model_module(side)
                p = h.model_params
                with torch.no_grad():
                    v = m(torch.as_tensor(p["pose"][None], dtype=torch.float32),
                          torch.as_tensor(p["shape"][None], dtype=torch.float32),
                          torch.as_tensor(p["trans"][None], dtype=torch.float32)).vertices[0].numpy()
                assert np.abs(v - h.vertices).max() < 1e-5
