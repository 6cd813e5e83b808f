"""The bounded training-view pool (handcli.data.viewpool): in-RAM equivalence, the bound, determinism, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcli.data.cache import Cache
from handcli.data.raybatch import load_views, sample_batch, select_views
from handcli.data.viewpool import FrameWindow, ViewPool, rank_part
from handcli.methods.trainer import step_generator


def _same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_pool_holding_every_view_is_the_in_ram_path(tiny_cache):
    """capacity >= views: exactly the batches of load_views + a uniform frame pick (the old code path)."""
    with Cache(tiny_cache) as c:
        ids = select_views(c, None, None)
        frames = list(range(c.num_frames))
        vs = load_views(c, ids)
        pool = ViewPool(c, ids, frames, capacity=len(ids), refresh_every=2)
        assert pool.complete and pool.frames == frames
        for step in range(6):
            g1, g2 = step_generator(7, step), step_generator(7, step)
            f1 = frames[int(torch.randint(len(frames), (1,), generator=g1))]
            ref = sample_batch(vs, f1, 64, 0.5, g1)
            pvs, f2 = pool.draw(step, g2)
            assert f2 == f1
            _same_batch(sample_batch(pvs, f2, 64, 0.5, g2), ref)
        assert pool.loads == len(ids)  # loaded once, never refreshed


def test_bounded_pool_never_holds_more_than_capacity(tiny_cache):
    with Cache(tiny_cache) as c:
        ids = select_views(c, None, None)
        per_frame = np.bincount(c.view_table()["frame"][ids])
        cap = int(2 * per_frame.max() + 1)  # two frames of views fit, three do not
        pool = ViewPool(c, ids, list(range(c.num_frames)), capacity=cap, refresh_every=3, replace=0.5, seed=1)
        assert not pool.complete
        seen = set()
        for step in range(0, 60):
            vs, frame = pool.draw(step, step_generator(1, step))
            assert len(vs.view_ids) <= cap and pool.num_resident <= cap and len(vs.rgb) <= cap
            assert frame in pool.resident_frames and set(vs.frames.tolist()) == set(pool.resident_frames)
            b = sample_batch(vs, frame, 32, 0.5, step_generator(1, step))
            assert set(b["view"].tolist()) <= set(vs.view_ids.tolist())
            seen.add(frame)
        assert seen == set(pool.frames)  # the window slides over every frame
        # a refresh reads only the views that came in: fewer than reloading the whole pool each time
        assert pool.loads < (60 // 3) * len(vs.view_ids)


def test_pool_contents_depend_on_the_step_only(tiny_cache):
    """Resuming at any step gives the views (and batches) an uninterrupted run has there."""
    with Cache(tiny_cache) as c:
        ids = select_views(c, None, None)
        frames = list(range(c.num_frames))
        a = ViewPool(c, ids, frames, capacity=9, refresh_every=2, seed=3)
        for step in range(11):
            a.draw(step, step_generator(3, step))
        b = ViewPool(c, ids, frames, capacity=9, refresh_every=2, seed=3)  # "resumed" at step 11
        for step in (11, 12, 15):
            va, fa = a.draw(step, step_generator(3, step))
            vb, fb = b.draw(step, step_generator(3, step))
            assert fa == fb and np.array_equal(va.view_ids, vb.view_ids)
            _same_batch(sample_batch(va, fa, 32, 0.5, step_generator(3, step)),
                        sample_batch(vb, fb, 32, 0.5, step_generator(3, step)))
        other = ViewPool(c, ids, frames, capacity=9, refresh_every=2, seed=4)
        assert any(other.window.resident(e) != a.window.resident(e) for e in range(6))  # the seed matters


def test_window_stream_visits_frames_evenly():
    w = FrameWindow(list(range(10, 30)), np.full(20, 3), capacity=12, refresh_every=1, replace=0.5, seed=0)
    counts = np.zeros(40, int)
    for e in range(200):
        r = w.resident(e)
        assert len(r) == 4 and len(set(r)) == 4 and r == sorted(r)
        counts[r] += 1
    assert counts[10:30].min() > 0.7 * counts[10:30].mean()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_parts_are_disjoint_and_cover(world):
    items = np.arange(11)
    parts = [rank_part(items, r, world) for r in range(world)]
    assert sorted(np.concatenate(parts).tolist()) == items.tolist()
    assert sum(len(p) for p in parts) == len(items)
    assert len(rank_part([1], 1, 2)) == 1  # fewer items than ranks: every rank keeps them


def test_new_caches_store_one_view_per_chunk(tiny_cache):
    """Reading one view of a new cache touches one chunk of each pixel buffer (views share H*W)."""
    import h5py

    with h5py.File(tiny_cache) as f:
        v = f["views"]
        hw = v["height"][()].astype(int) * v["width"][()]
        assert len(set(hw.tolist())) == 1
        assert v["rgb"].chunks == (hw[0], 3) and v["label"].chunks == (hw[0],)
        assert np.all(v["offset"][()] % hw[0] == 0)


def test_bulk_frame_joints_match_per_frame_reads(tiny_cache):
    from handcli.methods.handocc.method import frame_joints, frames_joints

    with Cache(tiny_cache) as c:
        bulk = frames_joints(c, list(range(c.num_frames)))
        for f in range(c.num_frames):
            one = frame_joints(c, f)
            assert [s for s, _ in bulk[f]] == [s for s, _ in one]
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(bulk[f], one))
