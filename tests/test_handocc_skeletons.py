"""The skeletons that drive HandOcc (handocc/skeletons.py): the dataset's joint annotation (default) or the joints
of the cache's posed hand model (``skeleton="mesh"``), read the same way for one frame and for many, and used
alike by training and rendering."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from handcli.data.shards import open_cache
from handcli.errors import InputError
from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.model import PRESETS
from handcli.methods.handocc.skeletons import frame_joints, frames_joints, mesh_joints

TINY = dict(rays_per_step=64, occ_points=128, pool_points=1024, occ_hidden=16, occ_layers=2, color_hidden=16,
            color_layers=1, app_dim=4, enc_channels=(4, 8), crop_size=16, max_samples=16, steps=4, refine=False)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A tiny realistic InterHand cache: its joint annotation and its MANO fit are separate, noisy annotations."""
    from handcli.data.interhand_preprocess import preprocess_interhand
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import realism_config

    d = tmp_path_factory.mktemp("skel")
    write_interhand(d / "ih", InterHandSynthConfig(frames=2, cameras=3, mono_cameras=0, seqs=("right", "interacting"),
                                                   seed=2, black_frame=False, null_mano=False,
                                                   realism=realism_config("realistic", "interhand")))
    preprocess_interhand(d / "ih", d / "c.h5", scale=0.25)
    return d / "c.h5"


def _posed_joints(c, side: str, f: int) -> np.ndarray:
    """The full forward pass of the cache's hand model (vertices and all) at frame f: (21, 3)."""
    m = c.hand_model_module(side)
    args = [torch.as_tensor(c.frame_value(f"{side}/model_{k}", f)[None], dtype=torch.float32)
            for k in ("pose", "shape", "trans")]
    with torch.no_grad():
        return m(*args).joints[0].numpy()


def test_mesh_skeleton_is_the_posed_models_and_differs_from_the_annotation(real_cache):
    with open_cache(real_cache) as c:
        frames = list(range(c.num_frames))
        many = frames_joints(c, frames, "mesh")
        annotated = frames_joints(c, frames)
        d = []
        for f in frames:
            one = frame_joints(c, f, "mesh")
            assert [s for s, _ in one] == [s for s, _ in many[f]] == [s for s, _ in annotated[f]]
            for (side, j), (_, jm), (_, ja) in zip(one, many[f], annotated[f]):
                assert j.shape == (21, 3) and j.dtype == np.float32
                np.testing.assert_allclose(j, jm, atol=1e-6)
                np.testing.assert_allclose(j, _posed_joints(c, side, f), atol=2e-5)
                np.testing.assert_array_equal(ja, c.frame_value(f"{side}/joints", f))
                d.append(np.linalg.norm(j - ja, axis=-1).mean())
        assert sum(len(v) for v in many.values()) >= 6  # right-hand and two-hand frames
        assert min(d) > 1e-3  # realistic: the two annotations disagree by millimetres
        assert mesh_joints(c, "right", np.array([frames[-1], frames[0]])).shape == (2, 21, 3)


def test_mesh_skeleton_equals_the_joints_on_ideal_data(synth_cache):
    with open_cache(synth_cache) as c:
        frames = list(range(c.num_frames))
        mesh, ann = frames_joints(c, frames, "mesh"), frames_joints(c, frames)
        for f in frames:
            for (_, jm), (_, ja) in zip(mesh[f], ann[f]):
                np.testing.assert_allclose(jm, ja, atol=1e-4)


def test_training_and_rendering_use_the_configured_skeleton(real_cache):
    torch.manual_seed(0)
    m = HandOccMethod(replace(PRESETS["fast"], **TINY, skeleton="mesh"), real_cache)
    f = m.frames[0]
    with open_cache(real_cache) as c:
        truth = frame_joints(c, f, "mesh")
    for (s, j), (s2, jt) in zip(m.joints[f], truth):
        assert s == s2 and np.allclose(j.cpu().numpy(), jt, atol=1e-6)
    m.joints.pop(f)  # a frame read at render time (not held from training) comes from the same source
    for (s, j), (s2, jt) in zip(m.skeletons(f), truth):
        assert s == s2 and np.allclose(j, jt, atol=1e-6)
    with pytest.raises(InputError) as e:
        replace(PRESETS["fast"], skeleton="bones").check()
    assert e.value.field == "skeleton"
    with open_cache(real_cache) as c, pytest.raises(InputError) as e:
        frame_joints(c, 0, "bones")
    assert e.value.field == "skeleton"
