"""How much of a cache's hand silhouettes its posed hand models leave uncovered (HandOcc's ``anneal_missed`` evidence).

    python bench/label_coverage.py CACHE [CACHE ...] [--cameras 400002,400004,...] [--radius 1]

For every view of each cache (of ``--cameras`` only, default: the training cameras of bench_handnerf.py / the
realism bench), the frame's posed hand models (the mesh HandOcc's occupancy labels are drawn around) are rasterised
into the view, grown by ``--radius`` 4-neighbour pixels, and the view's hand pixels outside them are counted
(``handcli.methods.handocc.visual_hull.mesh_misses``, the function the training uses). Prints, per cache, the share of
hand pixels missed with the growth and without it (pooled over the views). A training run decides per step on
the drawn frame's views and averages the shares over the steps before ``occ_anneal_start``, so its logged
``label_missed`` is close to, not equal to, these numbers. docs/benchmarks.md (eleventh round) quotes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handnerf import TRAIN  # noqa: E402

from handcli.data.shards import open_cache  # noqa: E402
from handcli.labels import hand_pixels  # noqa: E402
from handcli.methods.handocc.visual_hull import mesh_misses  # noqa: E402


def cache_misses(path: Path, cameras: list[str], radius: int) -> tuple[float, float]:
    """(share missed with the growth, share missed without) over the cache's views of ``cameras``."""
    sums = np.zeros(3)  # missed grown, missed raw, hand pixels
    with open_cache(path) as c:
        cams = c.cameras()
        vt = c.view_table()
        models = {s: c.hand_model(s) for s in ("right", "left")}
        for j in range(len(vt["frame"])):
            cam = cams[int(vt["camera"][j])]
            if cam["name"] not in cameras:
                continue
            f = int(vt["frame"][j])
            sides = [s for s, m in models.items() if m is not None and bool(c.frame_value(f"{s}/present", f))]
            if not sides:
                continue
            meshes = [(np.asarray(c.frame_value(f"{s}/vertices", f)), models[s]["faces"]) for s in sides]
            label = torch.as_tensor(np.asarray(c.view(j)["label"]))
            hand = hand_pixels(label, sides)
            grown, total = mesh_misses(meshes, cam["K"], cam["world_to_cam"], hand, radius)  # world_to_cam (4, 4)
            raw, _ = mesh_misses(meshes, cam["K"], cam["world_to_cam"], hand, 0)
            sums += (grown, raw, total)
    return sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caches", type=Path, nargs="+")
    ap.add_argument("--cameras", default=",".join(TRAIN))
    ap.add_argument("--radius", type=int, default=1)
    a = ap.parse_args(argv)
    print(f"| cache | missed, grown by {a.radius} px | missed, not grown |")
    print("|---|---|---|")
    for p in a.caches:
        grown, raw = cache_misses(p, a.cameras.split(","), a.radius)
        print(f"| {p.name} | {100 * grown:.2f} % | {100 * raw:.2f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
