"""Training views held in a bounded pool, so that training memory does not grow with the cache.

The pool holds the views of a window of training frames, at most ``capacity`` views (or the views of the
largest frame, if that is more). Every ``refresh_every`` steps the window slides by a ``replace`` fraction
of its frames along a stream of frame permutations (permutation p is drawn from a generator seeded by
(seed, p)), so every frame is visited equally often. The window is a function of ``step // refresh_every``
alone: a resumed run holds the same views as an uninterrupted one at every step, and so draws the same
batches. A step draws its frame uniformly among the resident frames, then rays from that frame's views
(``raybatch.sample_batch``, foreground-focused as in HandNeRF).

When the selected views fit (``capacity <= 0`` or the total is at most ``capacity``) everything is loaded
once and a step draws among all frames: exactly the in-memory path (same batches for the same seed).

Under torchrun each rank keeps a disjoint part of the views (``rank_part``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from handcli.data.raybatch import ViewSet, assemble_views, read_view


def rank_world() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment (0, 1 outside torchrun); no process group needed."""
    return int(os.environ.get("RANK", "0")), max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def rank_part(items, rank: int | None = None, world: int | None = None):
    """Rank ``rank``'s disjoint part of ``items`` (strided: items[rank::world]); all of them when world is 1
    or when there are fewer items than ranks (each rank then needs something to train on)."""
    if rank is None or world is None:
        rank, world = rank_world()
    if world <= 1 or len(items) < world:
        return items
    return items[rank::world]


class FrameWindow:
    """Which of ``frames`` are resident at a step (see the module docstring); ``sizes`` (F,) views per frame."""

    def __init__(self, frames: list[int], sizes: np.ndarray, capacity: int, refresh_every: int, replace: float,
                 seed: int):
        self.frames = list(frames)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        total = int(self.sizes.sum())
        self.complete = capacity <= 0 or total <= capacity or len(self.frames) <= 1
        self.capacity = max(int(capacity), int(self.sizes.max(initial=1)))
        self.refresh_every = max(int(refresh_every), 1)
        mean = total / max(len(self.frames), 1)
        self.shift = max(1, int(round(float(replace) * self.capacity / max(mean, 1e-9))))
        self.seed = int(seed)
        self._perms: dict[int, np.ndarray] = {}

    def epoch(self, step: int) -> int:
        return 0 if self.complete else int(step) // self.refresh_every

    def _perm(self, p: int) -> np.ndarray:
        if p not in self._perms:
            g = torch.Generator().manual_seed((self.seed * 1_000_033 + p * 15_485_863) % (2 ** 63))
            self._perms = {k: v for k, v in self._perms.items() if k >= p - 1}
            self._perms[p] = torch.randperm(len(self.frames), generator=g).numpy()
        return self._perms[p]

    def resident(self, epoch: int) -> list[int]:
        """The resident frames of an epoch, in the order of ``frames``."""
        if self.complete:
            return list(self.frames)
        F = len(self.frames)
        pos, n, picked = epoch * self.shift, 0, set()
        while len(picked) < F:
            p, i = divmod(pos, F)
            k = int(self._perm(p)[i])
            pos += 1
            if k in picked:
                continue
            if picked and n + self.sizes[k] > self.capacity:
                break
            picked.add(k)
            n += int(self.sizes[k])
        return [self.frames[k] for k in sorted(picked)]


class ViewPool:
    """The training views of a method: ``draw(step, gen) -> (ViewSet of the resident views, frame)``.

    cache: an open cache; view_ids (M,): the selected training views; frames: candidate training frames in
    the method's order (frames without a selected view are dropped: ``self.frames``); depth: an optional
    ``DepthTargets`` (loaded with the views); capacity: most views held at once (<= 0: all).
    """

    def __init__(self, cache, view_ids: np.ndarray, frames: list[int], *, depth=None, capacity: int = 0,
                 refresh_every: int = 50, replace: float = 0.25, seed: int = 0):
        self.cache = cache
        self.depth = depth
        vt = cache.view_table()
        view_ids = np.asarray(view_ids, dtype=np.int64)
        vf = vt["frame"][view_ids]
        order = np.argsort(vf, kind="stable")
        bounds = np.searchsorted(vf[order], frames, side="left"), np.searchsorted(vf[order], frames, side="right")
        self._views_of = {int(f): view_ids[order[lo:hi]] for f, lo, hi in zip(frames, *bounds) if hi > lo}
        self.frames = [int(f) for f in frames if int(f) in self._views_of]
        self.view_ids = view_ids[np.isin(vf, self.frames)]
        sizes = np.array([len(self._views_of[f]) for f in self.frames], dtype=np.int64)
        self.window = FrameWindow(self.frames, sizes, capacity, refresh_every, replace, seed)
        self._parts: dict[int, tuple] = {}
        self._epoch: int | None = None
        self.views: ViewSet | None = None
        self.resident_frames: list[int] = []
        self.loads = 0  # views read from the cache so far (a refresh reads only the views that came in)

    @property
    def complete(self) -> bool:
        return self.window.complete

    @property
    def num_resident(self) -> int:
        return len(self._parts) if not self.complete else len(self.view_ids)

    def at(self, step: int) -> ViewSet:
        """The resident views at ``step`` (reads the views that enter the pool at a refresh)."""
        e = self.window.epoch(step)
        if e == self._epoch:
            return self.views
        if self.complete:
            ids = self.view_ids
            frames = self.frames
        else:
            frames = self.window.resident(e)
            ids = np.concatenate([self._views_of[f] for f in frames])
        keep = set(int(j) for j in ids)
        self.views = None  # drop the old ViewSet's references first: at most capacity + shift views at once
        self._parts = {j: p for j, p in self._parts.items() if j in keep}
        for j in ids:
            if int(j) not in self._parts:
                self._parts[int(j)] = read_view(self.cache, int(j), self.depth)
                self.loads += 1
        self.views = assemble_views(self.cache, ids, [self._parts[int(j)] for j in ids], self.depth is not None)
        if self.complete:
            self._parts = {}  # the ViewSet holds them; nothing is ever reloaded
        self.resident_frames = frames
        self._epoch = e
        return self.views

    def draw(self, step: int, gen: torch.Generator) -> tuple[ViewSet, int]:
        """The resident views at ``step`` and a frame drawn uniformly among the resident frames."""
        vs = self.at(step)
        frames = self.resident_frames
        return vs, frames[int(torch.randint(len(frames), (1,), generator=gen))]
