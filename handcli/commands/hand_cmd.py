"""``handcli mano convert`` and ``handcli hand show``.

Only typer is imported at module level; numpy, torch and the hand model load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from handcli.commands.options import Force

mano_app = typer.Typer(help="Official MANO model files: chumpy-free conversion.", no_args_is_help=True,
                       add_completion=False)
hand_app = typer.Typer(help="Look at the hand model (the open hand model, or MANO with --mano-dir).",
                       no_args_is_help=True, add_completion=False)


@mano_app.callback()
def _mano() -> None:
    """Official MANO model files."""


@hand_app.callback()
def _hand() -> None:
    """Hand model tools."""


@mano_app.command("convert")
def convert(
    in_path: Path = typer.Argument(..., help="Official MANO_RIGHT.pkl / MANO_LEFT.pkl (chumpy pickle)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output pickle (plain numpy, no chumpy)."),
    force: Force = False,
) -> None:
    """Write a chumpy-free copy of an official MANO pickle (same keys, numpy values)."""
    from handcli.hand.mano_io import convert_mano
    from handcli.outputs import atomic_path

    with atomic_path(out, force, inputs=[in_path]) as tmp:
        convert_mano(in_path, tmp)
    print(out)


def _read_values(text: str, what: str, n: int, allow_fewer: bool = False):
    """Numbers from a .npy/.json file or a comma-separated list -> float array of length n."""
    import json

    import numpy as np

    from handcli.errors import InputError

    p = Path(text)
    if text.endswith((".npy", ".json")):
        if not p.is_file():
            raise InputError(f"{what} file not found", path=p)
        try:
            vals = np.load(p) if text.endswith(".npy") else np.asarray(json.loads(p.read_text()), float)
        except (ValueError, OSError) as e:
            raise InputError(f"cannot read {what} values ({e})", path=p) from None
    else:
        try:
            vals = np.asarray([float(x) for x in text.split(",") if x.strip()], float)
        except ValueError:
            raise InputError(f"expected comma-separated numbers or a .npy/.json file, got {text!r}",
                             field=what) from None
    vals = np.asarray(vals, float).ravel()
    if not np.isfinite(vals).all():
        raise InputError("values must be finite (no NaN/Inf)", field=what)
    if len(vals) > n or (len(vals) < n and not allow_fewer):
        raise InputError(f"expected {n} values, got {len(vals)}", field=what)
    return np.concatenate([vals, np.zeros(n - len(vals))])


def _pose_from_arg(model, text: str):
    import numpy as np

    from handcli.hand.model import NAMED_POSES, named_pose, plausible_poses

    if text in NAMED_POSES:
        return named_pose(model, text)
    if text.isdigit():
        rng = np.random.default_rng(int(text))
        c, s, o = rng.uniform(0.0, 1.0), rng.uniform(-0.2, 0.9), rng.uniform(0.0, 1.0)
        aa = plausible_poses(model, [c], [s], [o], rng=rng, noise_deg=3.0)[0]
        return np.concatenate([np.zeros(3), aa])
    return _read_values(text, "pose", 48)


@hand_app.command("show")
def show(
    out: Path = typer.Option(..., "-o", "--out", help="Output PNG."),
    side: str = typer.Option("right", "--side", help="right or left."),
    pose: str = typer.Option("mean", "--pose",
                             help="flat, mean, fist, spread, grasp, an integer seed (random plausible pose), "
                                  "or a .npy/.json/comma list of 48 axis-angle values (global orient first)."),
    shape: str = typer.Option("", "--shape", help="Up to 10 betas, comma-separated, or a .npy/.json file."),
    flat_hand_mean: bool = typer.Option(False, "--flat-hand-mean",
                                        help="Explicit 48-value poses are absolute (else relative to hands_mean)."),
    mano_dir: Path = typer.Option(None, "--mano-dir", help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl "
                                                           "(default: the open hand model)."),
    size: int = typer.Option(512, "--size", min=32, max=4096, help="Height of each view in pixels."),
    force: Force = False,
) -> None:
    """Render the posed hand model from the back, the palm and the thumb side into one PNG."""
    import numpy as np
    import torch
    from PIL import Image

    from handcli.errors import InputError
    from handcli.hand.model import HandModel
    from handcli.outputs import atomic_path, check_writable
    from handcli.render.mesh_png import hand_views

    if side not in ("right", "left"):
        raise InputError(f"--side must be right or left, not {side!r}", field="side")
    if out.suffix.lower() != ".png":
        raise InputError("output must be a .png file", path=out)
    check_writable(out, force)
    model = HandModel.load(side, mano_dir, flat_hand_mean=flat_hand_mean)
    p = _pose_from_arg(model, pose)
    betas = _read_values(shape, "shape", 10, allow_fewer=True) if shape else np.zeros(10)
    with torch.no_grad():
        res = model(torch.tensor(p[None], dtype=torch.float32), torch.tensor(betas[None], dtype=torch.float32))
    img = hand_views(res.vertices[0].double().numpy(), model.faces, size=size, side=side)
    with atomic_path(out, force) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    print(out)
