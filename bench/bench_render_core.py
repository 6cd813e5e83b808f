"""Throughput of the shared volume-rendering core.

Measures, in one run: render_weights + render_rgb on rays × samples, conical-frustum Gaussians + IPE on the
same samples, and an 8 × 256 MLP forward evaluated in chunks versus as one batch. Prints rays/s and points/s;
nothing here is asserted.

    python bench/bench_render_core.py --threads 2 --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handcli.nn.encoding import conical_frustum_to_gaussian, integrated_positional_encoding  # noqa: E402
from handcli.nn.mlp import MLP, chunked_apply  # noqa: E402
from handcli.render.samplers import stratified_samples  # noqa: E402
from handcli.render.volume import render_rgb, render_weights  # noqa: E402


def timeit(fns: list, device: torch.device, repeats: int) -> list[tuple[float, float]]:
    """(best, median) wall time in seconds of each function, after one warm-up call each.

    The functions are run interleaved (A, B, A, B, ...) so that load from other processes on a shared
    machine hits all of them alike; the best time is the least disturbed one.
    """
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns:
        fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
    return [(min(ts), statistics.median(ts)) for ts in times]


def report(name: str, t: tuple[float, float], rays: int | None, points: int) -> None:
    best, med = t
    line = f"{name:<34} best {best * 1e3:9.1f} ms (median {med * 1e3:9.1f})"
    if rays is not None:
        line += f"  {rays / best:11.0f} rays/s"
    print(line + f"  {points / best:12.0f} points/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rays", type=int, default=8192)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--max-deg", type=int, default=10)
    p.add_argument("--mlp-points", type=int, default=65536,
                   help="points for the MLP comparison (rays × samples = 524288 takes ~minutes on 2 CPU threads)")
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    N, S = args.rays, args.samples
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"rays={N} samples={S} max_deg={args.max_deg}")

    near = torch.full((N,), 0.5, device=device)
    far = torch.full((N,), 1.5, device=device)
    ts, te = stratified_samples(near, far, S, perturb=True, generator=g)
    sigma = (10 * torch.rand(N, S, generator=g)).to(device)
    rgb = torch.rand(N, S, 3, generator=g).to(device)
    valid = (torch.rand(N, S, generator=g) > 0.1).to(device)
    dirs = torch.nn.functional.normalize(torch.randn(N, 3, generator=g), dim=-1).to(device)
    origins = torch.randn(N, 3, generator=g).to(device)
    radii = torch.full((N,), 0.002, device=device)

    def volume():
        w, _, _ = render_weights(sigma, ts, te, valid)
        return render_rgb(w, rgb, background=1.0)

    def ipe():
        mean, cov = conical_frustum_to_gaussian(dirs, ts, te, radii, origins=origins)
        return integrated_positional_encoding(mean, cov, 0, args.max_deg)

    with torch.no_grad():
        (t_vol,) = timeit([volume], device, args.repeats)
        (t_ipe,) = timeit([ipe], device, args.repeats)
        report("render_weights+render_rgb", t_vol, N, N * S)
        report(f"frustum gaussian + IPE (deg {args.max_deg})", t_ipe, N, N * S)

        in_dim = 3 * 2 * args.max_deg
        torch.manual_seed(args.seed)
        mlp = MLP(in_dim, 256, 8, 4, skips=(4,)).to(device)
        x = torch.randn(args.mlp_points, in_dim, generator=g).to(device)
        P = args.mlp_points
        t_chunk, t_full = timeit([lambda: chunked_apply(mlp, x, chunk_size=args.chunk), lambda: mlp(x)],
                                 device, args.repeats)
        report(f"MLP 8x256, chunks of {args.chunk}", t_chunk, None, P)
        report(f"MLP 8x256, one batch of {P}", t_full, None, P)
        print(f"chunked / one-batch throughput (best times): {t_full[0] / t_chunk[0]:.2f}")


if __name__ == "__main__":
    main()
