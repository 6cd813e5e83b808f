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

Optional, used by ``handcli mesh`` and ``handcli view`` when present: ``extract_meshes(frame, resolution)``;
``appearance_crops()`` / ``set_appearance_crop(crop)`` (subjects' appearances); ``skeletons(frame)`` /
``set_skeletons(frame, skeletons)`` (skeleton-driven methods); ``input_views`` ({frame: cache view}).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from handcli.errors import InputError
from handcli.outputs import replace_file

RUN_SCHEMA = "handcli.run/1"


_POSITIVE = ("steps", "lr", "lr_final", "rays_per_step", "n_samples", "chunk")  # must be > 0 where a config has them


def _kind(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (tuple, list)):
        return "list"
    return "any"


def _value_error(key: str, value, default) -> str | None:
    """Why ``value`` cannot replace the default of config field ``key`` (None when it can)."""
    import math

    kind = _kind(default)
    if kind == "bool" and not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"expected an integer, got {value!r}"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected a number, got {value!r}"
    if kind in ("int", "float"):
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if key in _POSITIVE and value <= 0:
            return f"must be > 0, got {value!r}"
        if kind == "int" and value < 0 or kind == "float" and key.startswith("w_") and value < 0:
            return f"must be >= 0, got {value!r}"
    if kind == "str" and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if kind == "any" and not (value is None or isinstance(value, (str, int, float))):
        return f"expected a string or null, got {value!r}"
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            return f"expected a JSON list, got {value!r}"
        for x in value:
            err = _value_error(key, x, default[0] if len(default) else 0.0)
            if err is not None:
                return f"element {x!r}: {err}"
    return None


def check_config_values(config_cls, values: dict, path: str | Path | None = None, prefix: str = "") -> None:
    """``InputError`` (naming ``prefix + key``) unless every entry of ``values`` is a known field of the
    dataclass ``config_cls`` with a value of its default's type, finite and in range (counts >= 0; steps,
    learning rates, batch sizes > 0; loss weights ``w_*`` >= 0)."""
    defaults = {f.name: f.default for f in fields(config_cls)}
    for k, v in values.items():
        if k not in defaults:
            raise InputError(f"unknown config key; known: {', '.join(sorted(defaults))}", path=path,
                             field=f"{prefix}{k}")
        err = _value_error(k, v, defaults[k])
        if err is not None:
            raise InputError(err, path=path, field=f"{prefix}{k}")


def configure(presets: dict, preset: str, steps: int | None, overrides: dict):
    """A config from a named preset with ``steps`` and ``overrides`` (config key -> value) applied."""
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r}; available: {', '.join(presets)}", field="preset")
    cfg = presets[preset]
    over = dict(overrides)
    names = {f.name: f for f in fields(cfg)}
    unknown = sorted(set(over) - set(names))
    if unknown:
        raise InputError(f"unknown config keys {unknown}; known: {', '.join(sorted(names))}", field="set")
    if steps is not None:
        over["steps"] = steps
    for k, v in over.items():
        err = _value_error(k, v, getattr(cfg, k))
        if err is not None:
            raise InputError(err, field=k)
    for k, v in list(over.items()):
        if isinstance(getattr(cfg, k), tuple) and isinstance(v, list):
            over[k] = tuple(v)
    return replace(cfg, **over)


def write_run_config(run_dir: Path, method: str, preset: str, cfg, data: dict, seed: int, command: str,
                     train: dict | None = None) -> None:
    """Write ``config.json`` atomically; ``train``: the trainer settings a ``--resume`` keeps (log_every...)."""
    from handcli import __version__

    doc = {"schema": RUN_SCHEMA, "handcli_version": __version__, "method": method, "preset": preset,
           "config": cfg.to_dict(), "data": data, "seed": seed, "command": command}
    if train is not None:
        doc["train"] = train
    replace_file(run_dir / "config.json", lambda tmp: tmp.write_text(json.dumps(doc, indent=2)))


def read_run_config(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        raise InputError("not a handcli run (config.json missing)", path=p)
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON ({e.msg})", path=p) from None
    if not isinstance(doc, dict) or doc.get("schema") != RUN_SCHEMA:
        raise InputError(f"unknown schema {doc.get('schema') if isinstance(doc, dict) else doc!r}", path=p,
                         field="schema")
    for key, types in (("method", str), ("preset", str), ("config", dict), ("data", dict), ("seed", int)):
        if not isinstance(doc.get(key), types) or isinstance(doc.get(key), bool):
            raise InputError(f"missing or of the wrong type ({type(doc.get(key)).__name__}, expected "
                             f"{types.__name__})", path=p, field=key)
    if not isinstance(doc["data"].get("cache"), str):
        raise InputError("missing or not a path", path=p, field="data.cache")
    from handcli.registry import METHODS, method_class

    if doc["method"] not in METHODS:
        raise InputError(f"unknown method {doc['method']!r}; available: {', '.join(sorted(METHODS))}", path=p,
                         field="method")
    config_cls = getattr(method_class(doc["method"]), "Config", None)
    if config_cls is not None:
        check_config_values(config_cls, doc["config"], path=p, prefix="config.")
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
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError, ImportError) as e:
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
