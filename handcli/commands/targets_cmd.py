"""``handcli targets``: training targets from a cache (pseudo-depth maps, 2D teacher features)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from handcli.commands.options import CacheArg, Force

app = typer.Typer(help="Compute training targets from a cache: pseudo-depth maps and 2D teacher features.",
                  no_args_is_help=True)


@app.command("depth")
def depth(
    cache: CacheArg,
    out: Path = typer.Option(..., "-o", "--out", help="Depth targets file to write (.h5)."),
    force: Force = False,
) -> None:
    """Z-depth map (metres, 0 = no hand) of every view, rendered from the cache's posed hand meshes."""
    from handcli.commands.cmdline import command_line
    from handcli.progress import log
    from handcli.targets.depth import compute_depth

    st = compute_depth(cache, out, force=force, command=command_line())
    log(f"{st['views']} depth maps written ({st['seconds_per_view'] * 1000:.1f} ms/view)")
    print(out)


@app.command("features")
def features(
    cache: CacheArg,
    out: Path = typer.Option(..., "-o", "--out", help="Feature targets file to write (.h5)."),
    teacher: str = typer.Option("auto", help="dino-vits8 or efficientnet-lite0; 'auto' = dino-vits8 when "
                                             "--weights is given, else efficientnet-lite0."),
    weights: Optional[Path] = typer.Option(None, help="Local teacher checkpoint (dino_deitsmall8_pretrain.pth "
                                                      "for dino-vits8; efficientnet-lite0 defaults to the "
                                                      "packaged ImageNet weights)."),
    dim: int = typer.Option(256, help="PCA dimension D of the stored features."),
    batch: int = typer.Option(10, help="Images per PCA fit with --pca batch."),
    pca: str = typer.Option("global", help="global: one PCA basis for all views (fitted on a random subset); "
                                           "batch: one per --batch views, as the official code."),
    pca_views: int = typer.Option(64, help="Views drawn to fit the global PCA."),
    pca_samples: int = typer.Option(100_000, help="Feature vectors used to fit the global PCA (at most)."),
    seed: int = typer.Option(0, help="Seed of the PCA subset."),
    input_norm: str = typer.Option("teacher", help="teacher: normalise inputs with the teacher's training "
                                                   "statistics; none: [0, 1] RGB (official HandNeRF script)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    force: Force = False,
) -> None:
    """Per-view 2D teacher features of the masked images: L2-normalised, PCA to D, stored at native stride."""
    from handcli.checks import check_option
    from handcli.commands.cmdline import command_line
    from handcli.progress import log
    from handcli.targets.features import compute_features

    for name, value in (("dim", dim), ("batch", batch), ("pca_views", pca_views), ("pca_samples", pca_samples)):
        check_option(name, value, lo=1)

    if teacher == "auto":
        teacher = "dino-vits8" if weights is not None else "efficientnet-lite0"
    st = compute_features(cache, out, teacher=teacher, weights=weights, dim=dim, batch=batch, pca=pca,
                          pca_views=pca_views, pca_samples=pca_samples, seed=seed, input_norm=input_norm,
                          device=device, force=force, command=command_line())
    log(f"{st['views']} feature maps written ({teacher}; {st['seconds_per_view']:.3f} s/view)")
    print(out)
