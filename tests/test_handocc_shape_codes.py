"""HandOcc's per-frame shape codes (``frame_codes``, handocc/shape_codes.py): off by default; zero codes change
nothing; training learns them from ``refine_start`` on with the photometric and mask losses only; a training frame
renders with its code (also from a run folder), an edited or unseen skeleton without."""

from __future__ import annotations

import numpy as np
import torch

from handcli.methods.base import write_run_config
from handcli.methods.handocc.method import HandOccMethod
from handcli.methods.handocc.model import PRESETS
from handcli.methods.trainer import checkpoint_state, save_atomic, train

from test_handocc_refine import _tiny, _view


def test_off_by_default():
    assert not PRESETS["fast"].frame_codes and not PRESETS["paper"].frame_codes


def test_zero_codes_change_nothing_and_a_code_changes_the_frame(tiny_cache):
    torch.manual_seed(0)
    m = _tiny(tiny_cache, frame_codes=True)
    codes = m.model.shape_codes
    assert codes.codes.shape == (len(m.model.refine.keys), 20, m.cfg.pose_proj) and not codes.codes.any()
    assert torch.equal(codes.keys, m.model.refine.keys)
    f = m.frames[0]
    view = _view(m, f)
    with_zero = m.render_camera(f, *view)
    hands = m.hands(f)
    assert all(h.shape_code is not None for h in hands)
    x = hands[0].start.mean(0) + 0.01 * torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    from dataclasses import replace

    plain = m.model.occ(replace(hands[0], shape_code=None), x)["occ"]
    torch.testing.assert_close(m.model.occ(hands[0], x)["occ"], plain, atol=0, rtol=0)
    row = m.model.refine.index(f, *[(s, j) for s, j in m.joints[f]][0])
    with torch.no_grad():
        codes.codes[row] = 1.0 / codes.scale  # a unit offset of every bone's conditioning
    coded = m.render_camera(f, *view)
    assert np.abs(coded["opacity"] - with_zero["opacity"]).max() > 0.01
    other = next(g for g in m.frames if g != f)  # another frame keeps its own (zero) code
    assert all(h.shape_code is not None and not h.shape_code.any() for h in m.hands(other))
    m.set_skeletons(f, [(s, j.cpu().numpy()) for s, j in m.joints[f]])  # an edited pose: no code
    assert all(h.shape_code is None for h in m.hands(f))
    m.set_skeletons(f, None)
    run = tmp_path_run(tiny_cache, m)
    loaded = HandOccMethod.from_run(run)
    assert torch.equal(loaded.model.shape_codes.codes, codes.codes)
    np.testing.assert_allclose(loaded.render_camera(f, *view)["opacity"], coded["opacity"], atol=1e-5)


def tmp_path_run(cache, m):
    import tempfile
    from pathlib import Path

    run = Path(tempfile.mkdtemp()) / "run"
    run.mkdir()
    write_run_config(run, "handocc", "fast", m.cfg, {"cache": str(cache)}, 0, "test")
    save_atomic(checkpoint_state(m.model, None, 0), run / "checkpoint.pt")
    return run


def test_codes_learn_from_refine_start_and_not_from_the_labels(tiny_cache, tmp_path):
    torch.manual_seed(0)
    m = _tiny(tiny_cache, frame_codes=True, refine_start=0.5, steps=6)
    codes = m.model.shape_codes
    train(m, tmp_path, steps=3, lr=5e-3, lr_final=5e-3, seed=0, resume=False, ckpt_every=10 ** 6, stop_at=3)
    assert not codes.codes.any()  # before refine_start: no code in the graph
    loss, logs = m.train_step(3, torch.Generator().manual_seed(3))
    assert "code" in logs
    g = torch.autograd.grad(loss, codes.codes, allow_unused=True)[0]
    assert g is not None and g.abs().sum() > 0
    # the labels' loss alone (no rays): no gradient reaches the codes
    from dataclasses import replace

    m.cfg = replace(m.cfg, stage="occupancy")
    loss, _ = m.train_step(4, torch.Generator().manual_seed(4))
    g = torch.autograd.grad(loss, codes.codes, allow_unused=True)[0]
    assert g is None or not g.any()
