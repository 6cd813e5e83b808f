"""Multi-process training averages gradients exactly: two gloo processes (the trainer's ``distributed`` and
``average_gradients``), each on half a batch of a real HandNeRF model, end with the single-process gradient
of the whole batch."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import torch
import torch.multiprocessing as mp

from handcli.data.raybatch import sample_batch
from handcli.methods.handnerf.method import HandNeRFMethod
from handcli.methods.handnerf.model import preset

# only per-ray mean losses (rgb, depth): the mean over the batch is the mean of the two halves' means
TINY = dict(rays_per_step=64, n_samples=12, hidden=32, layers=2, skips=(), color_hidden=16, latent_dim=4,
            feat_dim=8, ec_hidden=16, ec_layers=2, pose_hidden=16, pose_layers=1, pose_embed=8, voxel=0.01,
            w_hs=0.0, w_cvar=0.0, w_dfm=0.0, w_dst=0.0)
RAYS = 64


def _method(cache: Path, depth: Path) -> HandNeRFMethod:
    return HandNeRFMethod(replace(preset("fast", "handnerf"), **TINY), cache, depth_path=depth, train_frames=[1])


def _gradients(m: HandNeRFMethod, batch: dict, rows: slice) -> None:
    """The method's loss on ``batch[rows]``, backpropagated into the model's ``.grad``."""
    b = {k: v[rows] if torch.is_tensor(v) else v for k, v in batch.items()}
    f = m.frames[0]
    out = m.model.render(m.geoms[f], b["origins"], b["dirs"], b["radii"], m.frame_codes[f], perturb=False)
    loss, logs = m.losses(out, b, 0)
    assert set(logs) >= {"rgb", "depth"} and not set(logs) & {"hs", "cvar", "dfm", "dst"}
    m.model.zero_grad(set_to_none=True)
    loss.backward()


def _worker(rank: int, port: int, cache: str, depth: str, work: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    from handcli.methods.trainer import average_gradients, distributed

    torch.set_num_threads(1)
    r, world = distributed()
    assert (r, world) == (rank, 2) and dist.get_backend() == "gloo"
    m = _method(Path(cache), Path(depth))
    shared = torch.load(Path(work) / "shared.pt", weights_only=True)
    m.model.load_state_dict(shared["state"])
    half = RAYS // world
    _gradients(m, shared["batch"], slice(rank * half, (rank + 1) * half))
    params = [p for p in m.model.parameters() if p.requires_grad]  # as the trainer collects them
    average_gradients(params, world)
    torch.save({n: p.grad for n, p in m.model.named_parameters()}, Path(work) / f"grad{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_average_to_the_full_batch_gradient(tiny_cache, tiny_depth, tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = _method(tiny_cache, tiny_depth)
    f = m.frames[0]
    batch = sample_batch(m.pool.at(0), f, RAYS, m.cfg.fg_fraction, torch.Generator().manual_seed(7))
    batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}
    torch.save({"state": m.model.state_dict(), "batch": batch}, tmp_path / "shared.pt")
    _gradients(m, batch, slice(0, RAYS))
    full = {n: p.grad for n, p in m.model.named_parameters()}
    halves = []
    for k in range(2):  # the two halves differ, so a rank that skipped the all-reduce would be caught
        _gradients(m, batch, slice(k * RAYS // 2, (k + 1) * RAYS // 2))
        halves.append({n: p.grad for n, p in m.model.named_parameters()})

    # CPU processes on gloo, as on a CPU machine (with CUDA the trainer picks nccl)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    mp.start_processes(_worker, args=(_free_port(), str(tiny_cache), str(tiny_depth), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")

    ranks = [torch.load(tmp_path / f"grad{r}.pt", weights_only=True) for r in range(2)]
    assert set(ranks[0]) == set(full)
    nonzero = [n for n, g in full.items() if g is not None and float(g.abs().max()) > 0]
    assert any(n.startswith("field.") for n in nonzero) and any(n.startswith("ec.") for n in nonzero)
    for n, g in full.items():
        g = torch.zeros_like(ranks[0][n]) if g is None else g
        for r in range(2):
            assert torch.allclose(ranks[r][n], g, rtol=0, atol=1e-6), (n, r, float((ranks[r][n] - g).abs().max()))
    differs = [n for n in nonzero if halves[0][n] is not None and halves[1][n] is not None
               and float((halves[0][n] - halves[1][n]).abs().max()) > 1e-4]
    assert differs, "the two halves give the same gradient: the test could not tell averaging from none"


def test_frozen_parameters_stay_without_gradient(monkeypatch):
    """A parameter switched off for the step (HandOcc's bone thickness before ``refine_start``) is not all-reduced
    and keeps no gradient, so Adam skips it as in a single process; the others are summed and divided by the world."""
    import torch.distributed as dist

    from handcli.methods.trainer import average_gradients

    calls = []

    def fake_all_reduce(t):  # two ranks with the same gradient: the sum is twice it
        calls.append(t)
        t.mul_(2.0)

    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    live, frozen, unused = (torch.nn.Parameter(torch.ones(3)) for _ in range(3))
    live.grad = torch.full((3,), 0.5)
    frozen.requires_grad_(False)
    average_gradients([live, frozen, unused], world=2)
    assert torch.equal(live.grad, torch.full((3,), 0.5))
    assert frozen.grad is None
    assert torch.equal(unused.grad, torch.zeros(3))  # a parameter with no gradient this step still takes part
    assert len(calls) == 2
