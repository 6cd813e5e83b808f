"""What every method provides to the ``train``, ``render`` and ``adapt`` stages, and run folders.

A method class (registered in ``handcli.registry.METHODS``) has:

- ``Config``: a frozen dataclass with ``to_dict()`` / ``from_dict()``, and ``presets(method) -> {name: Config}``
  (``paper`` = published hyperparameters, ``fast`` = minutes on a CPU);
- ``from_data(cfg, data, method, device)``: build for training from the run's ``data`` dict (cache path,
  targets, camera and frame selection);
- ``from_run(run_dir, cache_path, device)``: rebuild a trained model for rendering;
- ``train_step(step, generator) -> (loss, logs)`` and ``snapshot(step, png) -> logs`` for the trainer;
- ``render_camera(frame, K, world_to_cam, height, width) -> {rgb, depth, opacity, ...}`` for any camera;
- ``render_view(j)`` for cache view j (inherit :class:`RendersCacheViews`);
- ``run_data() -> dict`` extra entries for config.json (e.g. frame codes); attributes ``model``, ``cfg``,
  ``method``, ``cache``.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from handcli.errors import InputError

RUN_SCHEMA = "handcli.run/1"


def parse_sets(items: list[str]) -> dict:
    """``["key=value", ...]`` -> dict, values parsed as JSON when they are JSON."""
    out = {}
    for it in items:
        if "=" not in it:
            raise InputError(f"--set expects key=value, got {it!r}", field="set")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def configure(presets: dict, preset: str, steps: int | None, sets: list[str]):
    """A config from a named preset with ``--steps`` and ``--set key=value`` overrides."""
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r}; available: {', '.join(presets)}", field="preset")
    cfg = presets[preset]
    over = parse_sets(sets)
    names = {f.name: f for f in fields(cfg)}
    unknown = sorted(set(over) - set(names))
    if unknown:
        raise InputError(f"unknown config keys {unknown}; known: {', '.join(sorted(names))}", field="set")
    for k, v in list(over.items()):
        if isinstance(getattr(cfg, k), tuple) and isinstance(v, list):
            over[k] = tuple(v)
    if steps is not None:
        over["steps"] = steps
    return replace(cfg, **over)


def write_run_config(run_dir: Path, method: str, preset: str, cfg, data: dict, seed: int, command: str,
                     train: dict | None = None) -> None:
    """Write ``config.json`` atomically; ``train``: the trainer settings a ``--resume`` keeps (log_every...)."""
    from handcli import __version__

    doc = {"schema": RUN_SCHEMA, "handcli_version": __version__, "method": method, "preset": preset,
           "config": cfg.to_dict(), "data": data, "seed": seed, "command": command}
    if train is not None:
        doc["train"] = train
    tmp = run_dir / ".config.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(run_dir / "config.json")


def read_run_config(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        raise InputError("not a handcli run (config.json missing)", path=p)
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON ({e.msg})", path=p) from None
    if doc.get("schema") != RUN_SCHEMA:
        raise InputError(f"unknown schema {doc.get('schema')!r}", path=p, field="schema")
    return doc


def load_checkpoint(ckpt: Path, device="cpu") -> dict:
    """A trainer checkpoint: ``{"model": state dict, "optimizer": state dict, "step": int}``.

    Loaded with ``weights_only=True``: tensors and plain data only, so a checkpoint holding a pickled object
    (code that would run on load) is refused with an ``InputError``, as is a truncated or foreign file.
    """
    import pickle

    import torch

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise InputError("run has no checkpoint", path=ckpt)
    try:
        state = torch.load(ckpt, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in first if "Unsupported global" in ln or "GLOBAL" in ln), first[0] if first else "")
        raise InputError(f"checkpoint holds more than tensors and plain data; refusing to load it ({detail})",
                         path=ckpt) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError) as e:
        raise InputError(f"not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                         path=ckpt) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InputError("not a handcli checkpoint (expected a dict with a 'model' state dict)", path=ckpt,
                         field="model")
    if not isinstance(state.get("step", 0), int):
        raise InputError("checkpoint step is not an integer", path=ckpt, field="step")
    return state


def read_checkpoint(run_dir: Path, device) -> tuple[dict, Path]:
    """(the state dict saved by the trainer, its path) of a run; ``InputError`` when the run has none."""
    ckpt = Path(run_dir) / "checkpoint.pt"
    return load_checkpoint(ckpt, device), ckpt


def load_model_weights(model, state: dict, ckpt: Path) -> None:
    """Load ``state["model"]`` into ``model`` and put it in eval mode; a mismatch is an ``InputError``."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise InputError(f"checkpoint does not match the run's config ({str(e).splitlines()[0]})", path=ckpt,
                         field="model") from None
    model.eval()


class RendersCacheViews:
    """Mixin: ``render_view(j)`` renders cache view j through the method's ``render_camera``."""

    def render_view(self, j: int) -> dict:
        """Render cache view ``j`` with its camera (frame codes of unseen frames use the method's default)."""
        vt = self.cache.view_table()
        cam = self.cache.cameras()[int(vt["camera"][j])]
        return self.render_camera(int(vt["frame"][j]), cam["K"], cam["world_to_cam"], cam["height"], cam["width"])
