"""HandOcc on the same synthetic scene with the ideal and the realistic profile, with and without refinement.

    python bench/bench_realism_handocc.py [--seeds 0,1] [--steps 400] [--frames 8] [--work DIR]
        [--variants ideal:default,realistic:default,realistic:norefine] [--threads 1] [--preset fast] [--refine-masks 0]

For each seed: ``handcli synth interhand --profile ideal|realistic --seed S`` (one right-hand sequence,
``--frames`` frames, the 10 training and 4 of the 8 held-out cameras of bench_handnerf.py, no black frame),
``handcli preprocess interhand --scale 0.5`` (256x167), then per variant ``handcli train --method handocc
--preset fast --steps N`` on the training cameras (a fixed number of steps, not a time budget: the machine
is shared), ``handcli render`` of the held-out cameras on every frame (novel views of training poses: a
training frame renders with its refined skeleton when the run has one) and ``handcli eval``. A variant is
``PROFILE:NAME`` with PROFILE one of the keys of PROFILES (ideal, realistic, or the realistic profile with
only one of its effects: annotation_only, detail_only, capture_only, and of the capture effects colour_only,
specular_only, noise_only; without the annotation error: no_annotation_error; or with exact joints or exact MANO
fits: exact_joints, exact_mano; the MANO fits' error alone: annotation_mano_only; the hand outside the model's
relief or thicker fingers alone: relief_only, thick_only; the camera effects of the ideal scene and the realistic
scene without them, camera_only and scene_only, which the script makes itself for camera_floor and perfect_render)
and NAME one of the keys of VARIANTS
(``--set`` overrides of the fast preset).

Prints a markdown table (novel-view PSNR-full / PSNR-box / SSIM, silhouette IoU and area ratio against the
cache's hand labels, PSNR-full after a per-view colour-gain fit on the scored view itself, and after a per-camera gain fitted on
the camera's other frames (``handcli eval``'s psnr_full_camcal); PSNR-full and IoU against the synthetic
set's exact hand masks and the true hand's own PSNR-full against the cache-label ground truth, see
true_mask_scores; the held-out cameras' mean squared colour response in dB, see held_out_response_db; per seed
and variant; and realistic minus ideal, beside what the held-out cameras alone cost each ideal run, see
camera_floor, and for realistic runs what a perfect render of the scene scores, see perfect_render) and writes
results_realism_handocc.json into the work folder. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handnerf import TEST, TRAIN  # noqa: E402  (the cameras of the HandNeRF / HandOcc benches)

HELD_OUT = TEST[:4]
NO_ANNEAL = ["occ_anneal_start=1.0", "occ_anneal_end=1.0"]  # the mesh-occupancy weight stays w_occ throughout
PLAIN = ["view_dir=false", "density_cal=false", "blend_inference=false"]  # the colour and density of the runs before these options
ANNEAL = ["occ_anneal_start=0.2", "occ_anneal_end=0.5", "w_occ_final=0.0"]
HULL = ["label_hull=flip", "label_hull_px=0"]  # the visual-hull check as the sixth round introduced it (the default)
# every variant but "default" starts from this (a variant's own overrides come after and win): the variants named
# before the eighth round ran without the capsule-normal colour input, those before the ninth with one crop per
# training appearance code, those before the tenth without the label anneal unless they set it (ANNEAL); all three
# are defaults since (the anneal as occ_anneal=auto)
TENTH = [*HULL, "normal_in=true", "app_crops=4", "occ_anneal=auto", "occ_anneal_start=0.2", "occ_anneal_end=0.5",
         "w_occ_final=0.25"]  # the defaults since the tenth round, spelled out
OLDER_DEFAULTS = ["normal_in=false", "app_crops=1", "occ_anneal=on", "occ_anneal_start=1.0", "occ_anneal_end=1.0",
                  "w_occ_final=0.0", "normal_detail=false", "bone_thickness=off", "cal_render=on", "labels_pose=joints"]
VARIANTS = {  # name -> --set overrides of the fast preset (explicit, so that a name means the same whatever the defaults)
    "default": [],
    "norefine": ["refine=false", "camera_colour=false", *NO_ANNEAL, *PLAIN],
    "refine": ["refine=true", "camera_colour=false", *NO_ANNEAL, *PLAIN],
    "refine_colour": ["refine=true", "camera_colour=true", *NO_ANNEAL, *PLAIN],
    "norefine_colour": ["refine=false", "camera_colour=true", *NO_ANNEAL, *PLAIN],
    "refine_occ03": ["refine=true", "camera_colour=false", "w_occ=0.3", *NO_ANNEAL, *PLAIN],
    "refine_mask05": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN],
    "refine_mask1": ["refine=true", "camera_colour=false", "w_mask=1.0", *NO_ANNEAL, *PLAIN],
    "anneal": ["refine=true", "camera_colour=false", *ANNEAL, *PLAIN],
    "anneal_mask05": ["refine=true", "camera_colour=false", "w_mask=0.5", *ANNEAL, *PLAIN],
    # refine_mask05 + view-dependent colour / per-camera colour maps / both
    "mask05_view": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN, "view_dir=true"],
    "mask05_colour": ["refine=true", "camera_colour=true", "w_mask=0.5", *NO_ANNEAL, *PLAIN],
    "mask05_view_colour": ["refine=true", "camera_colour=true", "w_mask=0.5", *NO_ANNEAL, *PLAIN, "view_dir=true"],
    # refine_mask05 + a learned calibration of the rendered occupancy (DensityCalibration)
    "mask05_cal": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN, "density_cal=true"],
    # refine_mask05 + the labelled points carried with their bones to the refined skeleton (carry_points)
    "mask05_follow": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN,
                      "labels_pose=bones"],  # labels_follow_bones=true when it ran
    # refine_mask05 rendered with the parts' training blend (blend_inference; training is the same), and + density_cal
    "mask05_blend": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN, "blend_inference=true"],
    "mask05_cal_blend": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN, "density_cal=true",
                         "blend_inference=true"],
    "mask05_cal_blend_colour": ["refine=true", "camera_colour=true", "w_mask=0.5", *NO_ANNEAL, *PLAIN,
                               "density_cal=true", "blend_inference=true"],
    "mask05_cal_blend_view": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN,
                              "density_cal=true", "blend_inference=true", "view_dir=true"],
    # mask05_cal_blend with the masks weighted more / the mesh-occupancy labels annealed away (for refined masks)
    "mask1_cal_blend": ["refine=true", "camera_colour=false", "w_mask=1.0", *NO_ANNEAL, *PLAIN, "density_cal=true",
                        "blend_inference=true"],
    "mask05_cal_blend_anneal": ["refine=true", "camera_colour=false", "w_mask=0.5", *ANNEAL, *PLAIN,
                                "density_cal=true", "blend_inference=true"],
    # mask05_cal_blend (the default since the second round) driven by the posed mesh's joints (skeletons.py)
    "mask05_cal_blend_mesh": ["refine=true", "camera_colour=false", "w_mask=0.5", *NO_ANNEAL, *PLAIN,
                              "density_cal=true", "blend_inference=true", "skeleton=mesh"],
    "mask05_cal_blend_view_colour": ["refine=true", "camera_colour=true", "w_mask=0.5", *NO_ANNEAL, *PLAIN,
                                     "density_cal=true", "blend_inference=true", "view_dir=true"],
    # the default with the mesh-occupancy labels within this many metres of the annotated mesh left out
    "margin2": ["label_margin=0.002", "label_hull=off"],
    "margin4": ["label_margin=0.004", "label_hull=off"],
    # the default with the labels of each training hand moved by a learned rigid transform (label_align.py)
    "align": ["align_labels=true", "label_hull=off"],
    "noalign": ["align_labels=false", "label_hull=off"],
    # the labels reposed from the mesh's skeleton onto the model's refined / annotated skeleton (labels_pose)
    "repose": ["labels_pose=refined", "label_hull=off"],
    "repose_joints": ["labels_pose=joints", "label_hull=off"],  # the default before the visual-hull check
    # the default with the inside labels off the training silhouettes' visual hull left out / made outside
    "hull_drop": ["label_hull=drop", "label_hull_px=0"],
    "hull_flip": [*HULL],
    "hull_flip1": ["label_hull=flip", "label_hull_px=1"],
    # the default with the mesh-occupancy weight annealed to 0 between 20 % and 50 % of the steps (+ the hull check)
    "anneal_now": [*ANNEAL, "label_hull=off"],
    "anneal_hull": [*ANNEAL, *HULL],
    # hull_flip with the skeleton refinement and the label alignment learned from 10 % of the steps on (not 30 %)
    "hull_rs01": [*HULL, "refine_start=0.1"],
    # hull_flip + the view direction / per-camera colour maps / half the mesh-occupancy weight / the labels posed on
    # the refined skeleton with refinement from 10 % of the steps on (seventh round)
    "hull_view": [*HULL, "view_dir=true"],
    "hull_colour": [*HULL, "camera_colour=true"],
    "hull_occ05": [*HULL, "w_occ=0.5"],
    "hull_rr01": [*HULL, "refine_start=0.1", "labels_pose=refined"],
    # eighth round: hull_flip (without it, OLDER_DEFAULTS) with the capsule normal as a colour input (the default since)
    "hull_normal": [*HULL, "normal_in=true"],
    # ninth round (the Huber colour loss of commit d6669ed, variants huber10 / huber03, is not kept)
    "rscale03": [*HULL, "normal_in=true", "refine_scale=0.3"],  # hull_normal, the refinement 3x / 10x faster
    "rscale1": [*HULL, "normal_in=true", "refine_scale=1.0"],
    "wref5": [*HULL, "normal_in=true", "w_refine=1e-5"],  # hull_normal, the refinement's prior 10x weaker / stronger
    "wref3": [*HULL, "normal_in=true", "w_refine=1e-3"],
    "norefine_normal": [*HULL, "normal_in=true", "refine=false"],
    # hull_normal trained before the mean reference code (REF_CROPS); "_refmean": the same checkpoint re-rendered with
    # the reference crops picked as today (one per training camera), "refmean": trained with it
    "hull_normal_refmean": [*HULL, "normal_in=true"],
    "refmean": [*HULL, "normal_in=true"],
    "appcrops4": [*HULL, "normal_in=true", "app_crops=4"],  # + training codes: the mean of 4 random crops' codes
    "appcrops10": [*HULL, "normal_in=true", "app_crops=10"],
    "appcrops4_colour": [*HULL, "normal_in=true", "app_crops=4", "camera_colour=true"],  # + per-camera colour maps
    # hull_normal + the view direction (the reflected direction of commit ae23c6c is not kept)
    "hull_normal_view": [*HULL, "normal_in=true", "view_dir=true"],
    # tenth round: the ninth round's defaults (appcrops4) without the skeleton refinement
    "appcrops4_norefine": [*HULL, "normal_in=true", "app_crops=4", "refine=false"],
    # and with the mesh labels annealed away (ANNEAL, as `anneal_hull` of the sixth round)
    "appcrops4_anneal": [*HULL, "normal_in=true", "app_crops=4", *ANNEAL],
    # and with the mesh labels posed on the refined skeleton (as `hull_rr01`, refinement from 30 % of the steps)
    "appcrops4_rr": [*HULL, "normal_in=true", "app_crops=4", "labels_pose=refined"],
    # the anneal to a quarter of the labels' weight instead of none
    "appcrops4_anneal25": [*HULL, "normal_in=true", "app_crops=4", *ANNEAL, "w_occ_final=0.25"],
    # the anneal later: the labels' weight falls between 50 % and 80 % of the steps
    "appcrops4_anneal_late": [*HULL, "normal_in=true", "app_crops=4", *ANNEAL, "occ_anneal_start=0.5",
                              "occ_anneal_end=0.8"],
    # the tenth round's defaults (the anneal decided by the hull check, to 0.25), and its final weight 0.1 / 0.5
    "auto25": [*TENTH],
    "auto10": [*TENTH, "w_occ_final=0.1"],
    "auto50": [*TENTH, "w_occ_final=0.5"],
    "auto25_rr": [*TENTH, "labels_pose=refined"],  # + the labels posed on the refined skeleton
    # auto25_rr with the labels annealed to no weight at all
    "auto0_rr": [*TENTH, "labels_pose=refined", "w_occ_final=0.0"],
    # + the labels within 2 / 4 mm of the annotated mesh left out (label_margin, from the first step)
    "auto25_m2": [*TENTH, "label_margin=0.002"],
    "auto25_m4": [*TENTH, "label_margin=0.004"],
    # the anneal forced on (occ_anneal=on), whatever the hull check finds
    "on25": [*TENTH, "occ_anneal=on"],
    # the anneal forced on, to no label weight at all
    "on0": [*TENTH, "occ_anneal=on", "w_occ_final=0.0"],
    # the skeleton refinement 3x faster (refine_scale 0.3 instead of 0.1)
    "auto25_rscale03": [*TENTH, "refine_scale=0.3"],
    # the refinement from 10 % of the steps (refine_start 0.1 instead of 0.3); its bone-length prior 10x stronger
    "auto25_rs01": [*TENTH, "refine_start=0.1"],
    "auto25_bone10": [*TENTH, "w_bone=0.01"],
    # the images' silhouettes weighted twice as much (w_mask 1.0 instead of 0.5)
    "auto25_mask1": [*TENTH, "w_mask=1.0"],
    # thirteenth round: + the learned relief of the capsule normal (normal_detail; normals.NormalDetail)
    "nd": [*TENTH, "normal_detail=true"],  # the default from this round
    # nd + the view direction (highlights need normals better than the capsules'), and + per-camera colour maps
    "nd_view": [*TENTH, "normal_detail=true", "view_dir=true"],
    "nd_view_colour": [*TENTH, "normal_detail=true", "view_dir=true", "camera_colour=true"],
    # (nd_thick, nd + the labels' learned radial scale label_thickness, is in commit d435126 with the option)
    # fourteenth round: + a learned radial scale of the rendered field per finger bone (bone_thickness; thickness.py),
    # from 30 % of the steps (nd_bt: from the start with the palm's bones, nd_bt_late: from 30 % with them, nd_bt_rgb:
    # from the colour alone are in commit 5aa9f16 with their options; nd_fix, colour where the calibrated occupancy
    # exceeds tau, ran on a code change reverted before that commit)
    "nd_btf": [*TENTH, "normal_detail=true", "bone_thickness=on"],
    # nd with the labels at full weight throughout / annealed to none (see RENDERED_AS for their renders)
    "nd_off": [*TENTH, "normal_detail=true", "occ_anneal=off"],
    "nd_on0": [*TENTH, "normal_detail=true", "occ_anneal=on", "w_occ_final=0.0"],
    # nd trained without the density calibration (density_cal)
    "nd_nocal": [*TENTH, "normal_detail=true", "density_cal=false"],
    # fifteenth round: nd_btf with the labels posed on the refined skeleton (labels_pose=refined, twelfth round)
    "nd_btf_rr": [*TENTH, "normal_detail=true", "bone_thickness=on", "labels_pose=refined"],
    # sixteenth round (the defaults from it): nd rendered without the calibration, with the thickness learned and the
    # labels posed on the refined skeleton only where the labels' anneal check fires (bone_thickness=auto,
    # labels_pose=auto): nd_btf_rr_nocalr on data whose labels are annealed, nd_nocalr elsewhere
    "auto16": [*TENTH, "normal_detail=true", "cal_render=off", "bone_thickness=auto", "labels_pose=auto"],
    # + renders with or without the calibration as the training views fit better when training ends (cal_render=auto)
    "auto16b": [*TENTH, "normal_detail=true", "cal_render=auto", "bone_thickness=auto", "labels_pose=auto"],
    # seventeenth round (the defaults from it): auto16b, but the end of training fits the calibration that renders
    # apply to the training views (handocc/render_calibration.py) instead of choosing between with and without
    "fit17": [*TENTH, "normal_detail=true", "cal_render=auto", "bone_thickness=auto", "labels_pose=auto"],
    # fit17 with MIN_GAIN_DB 0.2 (was 0.01): the fit moves only for gains on the training views above 0.2 dB
    "fit17b": [*TENTH, "normal_detail=true", "cal_render=auto", "bone_thickness=auto", "labels_pose=auto"],
}


# name -> (variant, render-time config changes): that variant's trained run rendered otherwise (`render_as`)
RENDERED_AS = {
    "nd_nocalr": ("nd", {"cal_render": False}),  # rendered with the network's own occupancy
    "nd_btf_nocalr": ("nd_btf", {"cal_render": False}),
    "nd_off_nocalr": ("nd_off", {"cal_render": False}),
    "nd_on0_nocalr": ("nd_on0", {"cal_render": False}),
    "nd_btf_rr_nocalr": ("nd_btf_rr", {"cal_render": False}),
    # sixteenth round: rendered at the training's sample spacing (render_step 0), with and without the calibration
    "nd_calr_rs0": ("nd", {"cal_render": True, "render_step": 0}),
    "nd_rs0": ("nd", {"cal_render": False, "render_step": 0}),
}


NO_COLOUR = ["gain=[1,1]", "white_balance=0"]  # per-camera colour response
NO_NOISE = ["read_noise=0", "shot_noise=0", "jpeg_quality=0"]  # sensor noise and JPEG
NO_CAPTURE = [*NO_COLOUR, "specular=0", *NO_NOISE]
NO_ANNOTATION_ERROR = ["mano_frame_mm=0", "mano_seq_mm=0", "joint_frame_mm=0", "joint_seq_mm=0"]
NO_DETAIL = ["thicken_mm=0", "detail_mm=0"]
PROFILES = {  # profile name -> (synth --profile, --realism overrides): the realistic profile's effects one by one
    "ideal": ("ideal", []),
    "realistic": ("realistic", []),
    "annotation_only": ("realistic", [*NO_CAPTURE, *NO_DETAIL]),  # annotation error alone
    "detail_only": ("realistic", [*NO_CAPTURE, *NO_ANNOTATION_ERROR]),  # the hand outside the model alone
    "capture_only": ("realistic", [*NO_ANNOTATION_ERROR, *NO_DETAIL]),  # camera response, specular, noise, JPEG
    # the realistic profile with one of the two annotations exact: the 3D joints (what drives the model) or the
    # MANO fits (what the occupancy labels and the rendered masks come from)
    "exact_joints": ("realistic", ["joint_frame_mm=0", "joint_seq_mm=0"]),
    "exact_mano": ("realistic", ["mano_frame_mm=0", "mano_seq_mm=0"]),
    # the annotation error of the MANO fits alone (exact joints; no capture effects, no surface detail)
    "annotation_mano_only": ("realistic", [*NO_CAPTURE, *NO_DETAIL, "joint_frame_mm=0", "joint_seq_mm=0"]),
    "no_annotation_error": ("realistic", [*NO_ANNOTATION_ERROR]),  # capture effects and the hand outside the model
    # the capture effects one at a time (annotations exact, no surface detail)
    "colour_only": ("realistic", [*NO_ANNOTATION_ERROR, *NO_DETAIL, "specular=0", *NO_NOISE]),
    "specular_only": ("realistic", [*NO_ANNOTATION_ERROR, *NO_DETAIL, *NO_COLOUR, *NO_NOISE]),
    "noise_only": ("realistic", [*NO_ANNOTATION_ERROR, *NO_DETAIL, *NO_COLOUR, "specular=0"]),
    # what the camera alone does to the ideal scene's images, none of which a training view shows for a held-out
    # camera: its colour response, sensor noise, JPEG (annotations exact, no surface detail, no specular skin)
    "camera_only": ("realistic", [*NO_ANNOTATION_ERROR, *NO_DETAIL, "specular=0"]),
    # the realistic scene as it is before a camera records it (perfect_render)
    "scene_only": ("realistic", [*NO_COLOUR, *NO_NOISE]),
    # the hand outside the model in its two parts (annotations exact, no capture effects): the relief alone, the
    # thicker fingers alone
    "relief_only": ("realistic", [*NO_CAPTURE, *NO_ANNOTATION_ERROR, "thicken_mm=0"]),
    "thick_only": ("realistic", [*NO_CAPTURE, *NO_ANNOTATION_ERROR, "detail_mm=0"]),
}


def cli(*args: str, threads: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, "-m", "handcli.cli", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"handcli {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def prepare(work: Path, profile: str, seed: int, frames: int, threads: int, refine_masks: int = 0) -> Path:
    root, cache = work / f"ih_{profile}_s{seed}", work / f"{profile}_s{seed}.h5"
    if not root.exists():
        cli("synth", "interhand", str(root), "--seqs", "right", "--frames", str(frames), "--camera-ids",
            ",".join(TRAIN + HELD_OUT), "--mono-cameras", "0", "--no-black-frame", "--no-null-mano",
            "--seed", str(seed), "--profile", PROFILES[profile][0],
            *[a for r in PROFILES[profile][1] for a in ("--realism", r)], threads=threads)
    if not cache.exists():
        cli("preprocess", "interhand", str(root), "-o", str(cache), "--scale", "0.5", "--refine-masks",
            str(refine_masks), threads=threads)
    return cache


def render_images(renders: Path, v: dict):
    """View ``v`` of a renders folder (an entry of renders.json's ``views``): (H, W, 3) float64 RGB in [0, 1] and
    (H, W) float64 opacity in [0, 1]."""
    import cv2
    import numpy as np

    rgb = cv2.imread(str(renders / "rgb" / f"{v['index']:04d}.png"))[..., ::-1].astype(np.float64) / 255
    op = cv2.imread(str(renders / "opacity" / f"{v['index']:04d}.png"), cv2.IMREAD_UNCHANGED)
    op = op.astype(np.float64) / np.iinfo(op.dtype).max
    return rgb, op if op.ndim == 2 else op[..., 0]


def eval_ground_truth(g: dict):
    """(H, W, 3) float64: ``handcli eval``'s ground truth of a cache view ``g``, its image with the pixels outside
    the cache's hand label black."""
    import numpy as np

    return g["rgb"].astype(np.float64) / 255 * (g["label"] > 0)[..., None]


def silhouettes(renders: Path) -> dict:
    """Rendered silhouettes (opacity >= 0.5) against the cache's hand labels, over all rendered views:
    mask IoU and area ratio (rendered / true); and the PSNR-full left after a per-view, per-channel
    least-squares gain on the render (what the held-out cameras' unknown colour response costs)."""
    import numpy as np

    from handcli.data.shards import open_cache
    from handcli.eval.image_metrics import psnr_full

    doc = json.loads((renders / "renders.json").read_text())
    inter = union = area = true = 0
    gained = []
    with open_cache(doc["cache"]) as c:
        for v in doc["views"]:
            rgb, op = render_images(renders, v)
            g = c.view(v["cache_view"])
            fg, sil = g["label"] > 0, op >= 0.5
            inter, union = inter + (sil & fg).sum(), union + (sil | fg).sum()
            area, true = area + sil.sum(), true + fg.sum()
            gt = eval_ground_truth(g)
            k = (rgb * gt).sum((0, 1)) / np.maximum((rgb * rgb).sum((0, 1)), 1e-12)
            gained.append(psnr_full(rgb * k, gt))
    return {"mask_iou": float(inter / max(union, 1)), "area_ratio": float(area / max(true, 1)),
            "psnr_full_gain_fit": float(np.mean(gained))}


def true_hand_mask(root: Path, camera: str, frame: int, shape: tuple[int, int]):
    """(H, W) bool: the synthetic set ``root``'s exact hand mask of ``camera`` on its ``frame``-th frame
    (``handcli_gt/.../cam<camera>/mask*.png`` in name order), area-resized to ``shape`` (H, W), >= 0.5."""
    import glob

    import cv2
    import numpy as np

    masks = sorted(glob.glob(str(root / "handcli_gt" / "train" / "*" / "*" / f"cam{camera}" / "mask*.png")))
    m = cv2.imread(masks[frame], cv2.IMREAD_UNCHANGED)
    m = (m if m.ndim == 2 else m[..., 0]) > 0
    return cv2.resize(m.astype(np.float32), shape[::-1], interpolation=cv2.INTER_AREA) >= 0.5


def true_mask_scores(renders: Path, root: Path) -> dict:
    """The same renders scored against the synthetic set's exact hand masks (``handcli_gt/.../mask*.png``,
    area-resized to the cache, >= 0.5) instead of the cache labels, which the realistic profile renders from
    the *annotated* mesh: PSNR-full of the render against the image with the background outside the true
    hand set to black, silhouette IoU against the true mask; and ``ceiling``: the PSNR-full that the true
    hand itself (image x true mask) gets against the cache-label ground truth ``handcli eval`` uses."""
    import numpy as np

    from handcli.data.shards import open_cache
    from handcli.eval.image_metrics import psnr_full

    doc = json.loads((renders / "renders.json").read_text())
    psnr, ceil, inter, union = [], [], 0, 0
    with open_cache(doc["cache"]) as c:
        vt, cams = c.view_table(), c.cameras()
        for v in doc["views"]:
            i = v["cache_view"]
            g, cam = c.view(i), cams[int(vt["camera"][i])]["name"]
            m = true_hand_mask(root, cam, int(vt["frame"][i]), g["label"].shape)
            true_gt, label_gt = g["rgb"].astype(np.float64) / 255 * m[..., None], eval_ground_truth(g)
            rgb, op = render_images(renders, v)
            sil = op >= 0.5
            psnr.append(psnr_full(rgb, true_gt))
            ceil.append(min(psnr_full(true_gt, label_gt), 120.0))  # identical images: 120 dB, as before (not inf)
            inter, union = inter + (sil & m).sum(), union + (sil | m).sum()
    return {"psnr_full_true_mask": float(np.mean(psnr)), "mask_iou_true": float(inter / max(union, 1)),
            "ceiling_psnr_full": float(np.mean(ceil))}


def held_out_response_db(root: Path) -> float:
    """10 log10 of the mean squared colour response (gain x white balance, the sidecar's ``camera_response``) of
    the held-out cameras: how much brighter (> 0) or darker their ground truth is than a unit response. The
    squared error on the ground truth's hand pixels (colour errors, and silhouette misses drawn as background)
    scales with its camera's squared response, so a render of the same quality scores up to this many dB lower
    on those cameras (0 on the ideal profile, which has no responses)."""
    import numpy as np

    from handcli.synth.realism import sidecar_responses

    by_name = sidecar_responses(root)
    sq = [float((by_name[c] ** 2).mean()) for c in HELD_OUT if c in by_name]
    return float(10 * np.log10(np.mean(sq))) if sq else 0.0


def scored_against(renders: Path, cache: Path, scale: dict | None = None) -> float:
    """PSNR-full (``handcli eval``'s: per view, the background outside the cache's hand label black, then the mean
    over views) of ``renders`` against another cache with the same views, each render first multiplied by
    ``scale[camera name]`` ((3,) RGB; clipped to [0, 1]) when given."""
    import numpy as np

    from handcli.data.shards import open_cache
    from handcli.eval.image_metrics import psnr_full

    doc = json.loads((renders / "renders.json").read_text())
    psnr = []
    with open_cache(cache) as c:
        vt, cams = c.view_table(), c.cameras()
        for v in doc["views"]:
            i = v["cache_view"]
            g, cam = c.view(i), cams[int(vt["camera"][i])]["name"]
            rgb = render_images(renders, v)[0]
            if scale is not None:
                rgb = np.clip(rgb * scale[cam][None, None, :], 0.0, 1.0)
            psnr.append(psnr_full(rgb, eval_ground_truth(g)))
    return float(np.mean(psnr))


def camera_floor(renders: Path, ideal_cache: Path, camera_cache: Path, camera_root: Path) -> dict:
    """What the held-out cameras alone cost a run as good as an ideal one (``renders``, made from ``ideal_cache``):
    ``camera_floor_psnr_full``, its renders multiplied by the training cameras' mean colour response (the best a
    model that never sees the held-out camera can predict) and scored against the same views as the realistic
    cameras record them (``camera_cache``, the ``camera_only`` set of ``camera_root``: the ideal scene with each
    camera's colour response, sensor noise and JPEG); ``camera_noise_psnr_full``, multiplied by each held-out
    camera's own response instead (what the noise, the JPEG and the masks refined on noisy images alone cost)."""
    import numpy as np

    from handcli.data.shards import open_cache
    from handcli.synth.realism import sidecar_responses

    with open_cache(ideal_cache) as a, open_cache(camera_cache) as b:
        va, vb = a.view_table(), b.view_table()
        if not (np.array_equal(va["camera"], vb["camera"]) and np.array_equal(va["frame"], vb["frame"])):
            raise SystemExit(f"{camera_cache}: its views are not those of {ideal_cache}")
    resp = sidecar_responses(camera_root)
    mean = np.mean([resp[c] for c in TRAIN], axis=0)
    return {"camera_floor_psnr_full": scored_against(renders, camera_cache, {c: mean for c in resp}),
            "camera_noise_psnr_full": scored_against(renders, camera_cache, resp)}


def perfect_render(renders: Path, cache: Path, root: Path, scene_cache: Path, scene_root: Path) -> dict:
    """What a perfect model of a realistic scene would score on ``renders``' views of ``cache`` (made from the
    synthetic set ``root``): the true hand as the scene shows it before a camera records it (``scene_cache``, the
    ``scene_only`` set of ``scene_root``: the realistic scene, its specular skin included, without the cameras'
    colour response, noise and JPEG; the background outside the true hand's mask black), times the training
    cameras' mean colour response (``perfect_render_psnr_full``) or times each held-out camera's own response
    (``perfect_render_own_psnr_full``), scored with ``handcli eval``'s PSNR-full against ``cache``'s ground truth."""
    import numpy as np

    from handcli.data.shards import open_cache
    from handcli.eval.image_metrics import psnr_full
    from handcli.synth.realism import sidecar_responses

    doc = json.loads((renders / "renders.json").read_text())
    resp = sidecar_responses(root)
    mean = np.mean([resp[c] for c in TRAIN], axis=0)
    psnr = {"perfect_render_psnr_full": [], "perfect_render_own_psnr_full": []}
    with open_cache(cache) as c, open_cache(scene_cache) as sc:
        vt, cams = c.view_table(), c.cameras()
        if not np.array_equal(vt["frame"], sc.view_table()["frame"]):
            raise SystemExit(f"{scene_cache}: its views are not those of {cache}")
        for v in doc["views"]:
            i = v["cache_view"]
            g, cam = c.view(i), cams[int(vt["camera"][i])]["name"]
            m = true_hand_mask(scene_root, cam, int(vt["frame"][i]), g["label"].shape)
            gt, hand = eval_ground_truth(g), sc.view(i)["rgb"].astype(np.float64) / 255 * m[..., None]
            for key, r in (("perfect_render_psnr_full", mean), ("perfect_render_own_psnr_full", resp[cam])):
                psnr[key].append(psnr_full(np.clip(hand * r, 0, 1), gt))
    return {k: float(np.mean(x)) for k, x in psnr.items()}


def render_as(trained: Path, run: Path, changes: dict) -> None:
    """``run``: the ``trained`` run (its checkpoint hard-linked) with its config.json's render-time settings
    changed (``changes``: config key -> value); nothing is trained."""
    run.mkdir(parents=True)
    doc = json.loads((trained / "config.json").read_text())
    doc["config"].update(changes)
    (run / "config.json").write_text(json.dumps(doc, indent=1))
    for f in trained.iterdir():
        if f.is_file() and f.name != "config.json":
            os.link(f, run / f.name)


def run_variant(work: Path, cache: Path, profile: str, name: str, seed: int, steps: int, threads: int,
                preset: str = "fast") -> dict:
    run, renders = work / f"run_{profile}_{name}_s{seed}", work / f"renders_{profile}_{name}_s{seed}"
    metrics = work / f"metrics_{profile}_{name}_s{seed}.json"
    t0 = time.perf_counter()
    if name in RENDERED_AS and not (run / "checkpoint.pt").exists():
        base, changes = RENDERED_AS[name]
        run_variant(work, cache, profile, base, seed, steps, threads, preset)
        render_as(work / f"run_{profile}_{base}_s{seed}", run, changes)
    if not (run / "checkpoint.pt").exists():
        overrides = VARIANTS[name] if name == "default" else [*OLDER_DEFAULTS, *VARIANTS[name]]
        sets = [a for s in overrides for a in ("--set", s)]
        cli("train", str(cache), "--method", "handocc", "--preset", preset, "--steps", str(steps), "-o", str(run),
            "--cameras", ",".join(TRAIN), "--eval-cameras", ",".join(HELD_OUT), "--seed", "0", "--threads",
            str(threads), "--force", *sets, threads=threads)
    t_train = time.perf_counter() - t0
    if not metrics.exists() or "psnr_full_camcal" not in json.loads(metrics.read_text())["mean"]:
        if not (renders / "renders.json").exists():
            cli("render", str(run), str(cache), "-o", str(renders), "--views", ",".join(HELD_OUT), "--force", threads=threads)
        cli("eval", str(renders), str(cache), "-o", str(metrics), "--force", threads=threads)
    mean = json.loads(metrics.read_text())["mean"]
    return {"profile": profile, "variant": name, "seed": seed, "steps": steps, "train_s": round(t_train, 1),
            **{k: mean.get(k) for k in ("psnr_full", "psnr_box", "psnr_full_camcal", "ssim_gaussian")}, **silhouettes(renders),
            **true_mask_scores(renders, work / f"ih_{profile}_s{seed}"),
            "held_out_response_db": held_out_response_db(work / f"ih_{profile}_s{seed}")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("bench_out/realism_handocc"))
    ap.add_argument("--variants", default="ideal:norefine,ideal:refine,realistic:norefine,realistic:refine,realistic:refine_colour")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="fast", help="HandOcc preset (use a separate --work folder per preset)")
    ap.add_argument("--refine-masks", type=int, default=0,
                    help="preprocess --refine-masks band (use a separate --work folder per value)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        for v in a.variants.split(","):
            profile, name = v.split(":")
            cache = prepare(a.work, profile, seed, a.frames, a.threads, a.refine_masks)
            rows.append(run_variant(a.work, cache, profile, name, seed, a.steps, a.threads, a.preset))
            if profile == "realistic":
                scene = prepare(a.work, "scene_only", seed, a.frames, a.threads, a.refine_masks)
                rows[-1].update(perfect_render(a.work / f"renders_realistic_{name}_s{seed}", cache,
                                               a.work / f"ih_realistic_s{seed}", scene, a.work / f"ih_scene_only_s{seed}"))
            if profile == "ideal":
                twin = prepare(a.work, "camera_only", seed, a.frames, a.threads, a.refine_masks)
                rows[-1].update(camera_floor(a.work / f"renders_ideal_{name}_s{seed}", cache, twin,
                                             a.work / f"ih_camera_only_s{seed}"))
            print(json.dumps(rows[-1]), flush=True)
    (a.work / "results_realism_handocc.json").write_text(json.dumps(rows, indent=2))
    print(f"\nHandOcc {a.preset} preset, {a.steps} steps, {a.frames} frames, novel views ({len(HELD_OUT)} held-out cameras)")
    print("| seed | profile | variant | PSNR-full | PSNR-box | SSIM | mask IoU | area ratio | PSNR-full, gain fit | "
          "PSNR-full, camera-calibrated | PSNR-full, true mask | IoU, true mask | ceiling | held-out response dB | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['profile']} | {r['variant']} | {r['psnr_full']:.2f} | {r['psnr_box']:.2f} | "
              f"{r['ssim_gaussian']:.3f} | {r['mask_iou']:.3f} | {r['area_ratio']:.2f} | {r['psnr_full_gain_fit']:.2f} | "
              f"{r['psnr_full_camcal']:.2f} | {r['psnr_full_true_mask']:.2f} | {r['mask_iou_true']:.3f} | {r['ceiling_psnr_full']:.2f} | "
              f"{r['held_out_response_db']:+.2f} | {r['train_s']:.0f} |")
    ideal = {(r["seed"], r["variant"]): r for r in rows if r["profile"] == "ideal"}
    for r in rows:
        for (seed, var), i in ideal.items():
            if r["profile"] != "ideal" and r["seed"] == seed:
                print(f"seed {seed}: {r['profile']}:{r['variant']} - ideal:{var} = {r['psnr_full'] - i['psnr_full']:+.2f} dB"
                      f" (camera-calibrated {r['psnr_full_camcal'] - i['psnr_full_camcal']:+.2f} dB; the held-out"
                      f" cameras alone cost ideal:{var} {i['camera_floor_psnr_full'] - i['psnr_full']:+.2f} dB, their"
                      f" noise and JPEG alone {i['camera_noise_psnr_full'] - i['psnr_full']:+.2f} dB)")
                if "perfect_render_psnr_full" in r:
                    print(f"  a perfect render of seed {seed}'s realistic scene: {r['perfect_render_psnr_full']:.2f} dB"
                          f" ({r['perfect_render_own_psnr_full']:.2f} dB with each held-out camera's own response)"
                          f" against ideal:{var}'s {i['psnr_full']:.2f} dB")


if __name__ == "__main__":
    main()
