"""The method contract (:class:`Method`), run folders and config (de)serialisation.

A method is one package ``handcli/methods/NAME/`` whose ``method.py`` subclasses :class:`Method`, plus one
line in ``handcli.registry.METHODS``. The base class owns what every method does the same way:

- construction: ``from_data(cfg, data, method, device)`` (training, from the run's ``data`` dict: cache path,
  targets, camera and frame selection) and ``from_run(run_dir, cache_path, device)`` (a trained run: config
  and weights). Both go through ``__init__``, which opens the cache, validates the config, then calls the
  subclass's ``setup_training(**options)`` or ``setup_run(run, state)``;
- config (de)serialisation: ``config_from_dict`` turns any unknown key or bad value into an ``InputError``
  naming the file and field; ``config_to_dict`` is what ``config.json`` holds;
- frame validation (``training_frames``, ``check_frame``), loss logging (``sum_losses``), snapshots
  (``snapshot``: a held-out view, a contact sheet and metrics) and rendering: ``render_camera`` runs the one
  render driver (``handcli.render.driver``) around the subclass's ``render_state`` / ``render_rays``;
- declared ``capabilities`` that commands query (``"mesh" in m.capabilities``) instead of looking for attributes:
  ``mesh`` (``extract_meshes(frame, resolution)``), ``appearance`` (``set_appearance``, ``appearance_crops``,
  ``set_appearance_crop``), ``skeleton`` (``skeletons(frame)``, ``set_skeletons``), ``input_view``
  (``input_views``: {frame: cache view}), ``adapt`` (``handcli adapt`` pose adaptation).

A subclass provides ``Config`` (a frozen dataclass), ``PRESETS`` ({name: Config}; ``preset(name, method)``
for registry aliases with other defaults), ``setup_training``, ``setup_run``, ``train_step(step,
generator) -> (loss, logs)``, ``render_state(frame, outputs) -> (state, boxes)`` and ``render_rays(state,
origins, dirs, outputs) -> {output: (R, ...) tensor}``. See docs/design.md ("Adding a method").
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
           "config": config_to_dict(cfg), "data": data, "seed": seed, "command": command}
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
    cls = method_class(doc["method"])
    if hasattr(cls, "migrate_config"):
        doc["config"] = cls.migrate_config(doc["config"])
    config_cls = getattr(cls, "Config", None)
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


CAPABILITIES = ("mesh", "appearance", "skeleton", "input_view", "adapt")
TARGET_OPTIONS = ("depth", "features")  # optional training targets in a run's data (train --depth/--features)


def config_to_dict(cfg) -> dict:
    """A config dataclass as ``config.json`` holds it (tuples as lists)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def freeze_all_but(model, prefixes: tuple[str, ...]) -> list[str]:
    """Set ``requires_grad`` to train only parameters whose name starts with one of ``prefixes``.

    Returns the names of the parameters left trainable (sorted); raises ValueError when none match.
    """
    adapted = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(prefixes)
        if p.requires_grad:
            adapted.append(name)
    if not adapted:
        raise ValueError(f"no parameter of the model starts with {prefixes}")
    return sorted(adapted)


def sum_losses(terms: dict, logs: dict | None = None, scale: float = 1.0):
    """(scale x the sum of the loss ``terms`` (scalar tensors), ``logs`` plus each term and ``loss`` as floats)."""
    loss = scale * sum(terms.values())
    logs = dict(logs or {})
    logs.update({k: float(v.detach()) for k, v in terms.items()})
    logs["loss"] = float(loss.detach())
    return loss, logs


class evaluating:
    """``with evaluating(model):`` eval mode inside, the previous mode restored after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was)


class RunFolder:
    """A trained run being loaded: its folder, its ``config.json`` document and whether the cache it is
    loaded with is the training cache (frame-indexed data such as latent codes then applies)."""

    def __init__(self, path: Path, doc: dict, cache_path: Path):
        self.path = Path(path)
        self.doc = doc
        self.data = doc["data"]
        self.same_cache = Path(cache_path).resolve() == Path(self.data["cache"]).resolve()


class Method:
    """Base class of every method (see the module docstring for the contract)."""

    Config: type = None  # frozen dataclass of hyperparameters
    PRESETS: dict = {}
    default_method = ""  # registry name used when none is given
    capabilities: frozenset[str] = frozenset()  # subset of CAPABILITIES
    outputs: frozenset[str] = frozenset({"rgb", "depth", "opacity"})  # what render_camera returns by default
    extra_outputs: frozenset[str] = frozenset()  # may also be asked for (e.g. "feature")
    targets: dict[str, str] = {}  # run data key ("depth", "features") -> setup_training keyword
    render_counts: tuple[str, ...] = ("evaluated",)  # numbers render_rays returns (summed over chunks)
    uses_radii = False  # render_rays takes radii= (R,) pixel cone radii
    adapt_curves: tuple[str, ...] = ("loss",)  # logged losses plotted by ``handcli adapt``

    def __init__(self, cfg, cache_path: Path, *, method: str | None = None, device: str = "cpu",
                 run: RunFolder | None = None, **options):
        """Open the cache and build for training (``setup_training(**options)``) or, with ``run``, from a
        trained run's folder (``setup_run``, then the checkpoint's weights)."""
        import torch

        from handcli.data.shards import open_cache

        self.check_config(cfg)
        self.method = method or self.default_method
        self.cfg = cfg
        self.device = torch.device(device)
        self.cache_path = Path(cache_path)
        self.cache = open_cache(cache_path)
        self.eval_view: int | None = None
        self.frames: list[int] = []
        self.check_cache()
        if run is None:
            self.setup_training(**options)
            return
        if options:
            raise TypeError(f"options {sorted(options)} are for training, not for loading a run")
        state, ckpt = read_checkpoint(run.path, self.device)
        self.setup_run(run, state)
        load_model_weights(self.model, state, ckpt)

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_data(cls, cfg, data: dict, method: str, device: str = "cpu", **options) -> "Method":
        """Build for training from a run's ``data`` dict (cache, cameras, frames, eval_cameras, seed, targets);
        ``options``: further ``setup_training`` keywords. A target the method does not use is an InputError."""
        for key in TARGET_OPTIONS:
            if data.get(key):
                if key not in cls.targets:
                    raise InputError(f"{method} does not use --{key} targets", field=key)
                options[cls.targets[key]] = Path(data[key])
        return cls(cfg, Path(data["cache"]), method=method, device=device, train_cameras=data.get("cameras"),
                   train_frames=data.get("frames"), eval_cameras=data.get("eval_cameras"),
                   seed=int(data.get("seed") or 0), **options)

    @classmethod
    def from_run(cls, run_dir: Path, cache_path: Path | None = None, device: str = "cpu") -> "Method":
        """Rebuild a trained method from its folder; ``cache_path`` defaults to the training cache."""
        doc = read_run_config(run_dir)
        cfg = cls.config_from_dict(doc["config"], path=Path(run_dir) / "config.json")
        cache = Path(cache_path) if cache_path else Path(doc["data"]["cache"])
        return cls(cfg, cache, method=doc["method"], device=device, run=RunFolder(run_dir, doc, cache))

    @classmethod
    def adaptation(cls, run_dir: Path, cache: Path, *, frames: list[int] | None, steps: int, lr: float, seed: int,
                   device: str, depth: Path | None, workdir: Path, cameras: list[str] | None = None,
                   check_cameras: list[str] | None = None) -> tuple["Method", list[str]]:
        """Subclass with the ``adapt`` capability: the method that ``handcli adapt`` trains to fit the trained
        run ``run_dir`` to the novel poses of ``cache`` (``frames`` and ``cameras`` of it, None: all; ``depth``:
        pseudo-depth targets of the cache if given; ``workdir``: a folder for intermediate files;
        ``check_cameras``: cameras held back to check the fit, None: the method's default), and the names of the
        parameters it adapts (all others frozen)."""
        raise NotImplementedError(f"{cls.__name__} has no pose adaptation")

    def finish_training(self) -> dict | None:
        """When training (or ``handcli adapt``'s training) ends, its last step done and not interrupted, on rank 0:
        a method may make a choice from its training data, or check what it adapted, and store the result in its
        model (the trainer then writes the checkpoint again). Returns a summary for the last log record
        (``finish`` in complete.json), or None (nothing done)."""
        return None

    def setup_training(self, **options) -> None:
        """Subclass: data pools, model and ``eval_view`` for training (``train_cameras``, ``train_frames``,
        ``eval_cameras``, ``seed`` and the method's own keywords)."""
        raise NotImplementedError

    def setup_run(self, run: RunFolder, state: dict) -> None:
        """Subclass: ``self.model`` (and what rendering needs) shaped for ``state["model"]``, loaded after."""
        raise NotImplementedError

    def check_cache(self) -> None:
        """InputError when ``self.cache`` lacks what the method needs (called by both constructions)."""

    def attach_run(self, run_dir: Path) -> None:
        """Called by the trainer with the run folder (a method may store per-frame data there)."""

    def run_data(self) -> dict:
        """Extra entries for config.json's ``data`` (e.g. frame codes)."""
        return {}

    # --------------------------------------------------------------------------------------------- config
    @classmethod
    def presets(cls, method: str) -> dict:
        """{preset name: Config} for registry name ``method``."""
        return {name: cls.preset(name, method) for name in cls.PRESETS}

    @classmethod
    def preset(cls, name: str, method: str):
        return cls.PRESETS[name]

    @staticmethod
    def migrate_config(values: dict) -> dict:
        """An older run's config.json ``config`` with keys renamed or folded since mapped to today's (a new dict;
        none here: methods that renamed keys override it). Applied by ``read_run_config`` and ``config_from_dict``."""
        return values

    @classmethod
    def config_from_dict(cls, values: dict, path: str | Path | None = None, prefix: str = "config."):
        """A Config from a dict (e.g. config.json's ``config``, after ``migrate_config``): an unknown key or a value
        of the wrong type or range is an InputError naming ``path`` and ``prefix + key``; missing keys keep their
        defaults."""
        if not isinstance(values, dict):
            raise InputError(f"expected an object, got {type(values).__name__}", path=path, field=prefix.rstrip("."))
        values = cls.migrate_config(values)
        check_config_values(cls.Config, values, path=path, prefix=prefix)
        defaults = {f.name: f.default for f in fields(cls.Config)}
        cfg = cls.Config(**{k: tuple(v) if isinstance(defaults[k], tuple) else v for k, v in values.items()})
        try:
            cls.check_config(cfg)
        except InputError as e:
            raise InputError(e.message, path=path, field=f"{prefix}{e.field}" if e.field else prefix.rstrip(".")) \
                from None
        return cfg

    @classmethod
    def config_to_dict(cls, cfg) -> dict:
        return config_to_dict(cfg)

    @classmethod
    def check_config(cls, cfg) -> None:
        """InputError (naming the field) for settings the method cannot be built with."""

    # --------------------------------------------------------------------------------------------- frames
    def training_frames(self, frames: list[int] | None) -> list[int]:
        """The training frame selection (all when None); an index outside the cache is an InputError."""
        n = self.cache.num_frames
        frames = list(range(n)) if frames is None else list(frames)
        bad = [f for f in frames if not 0 <= f < n]
        if bad:
            raise InputError(f"frame indices {bad} outside 0..{n - 1}", path=self.cache_path, field="frames")
        return frames

    def check_frame(self, frame: int) -> None:
        """InputError unless ``frame`` is a frame of the cache."""
        if not 0 <= int(frame) < self.cache.num_frames:
            raise InputError(f"frame {frame} out of range (the cache has {self.cache.num_frames})",
                             path=self.cache_path, field="frames")

    # -------------------------------------------------------------------------------------------- training
    def train_step(self, step: int, gen):
        """(loss tensor, logs) of one optimisation step; ``gen``: this step's torch.Generator."""
        raise NotImplementedError

    def snapshot(self, step: int, out_png: Path) -> dict:
        """Render the held-out ``eval_view`` into a contact sheet ``out_png``; its metrics (logged)."""
        if self.eval_view is None:
            return {}
        from handcli.render.renders_folder import contact_sheet

        r, gt, label = self.snapshot_view(self.eval_view)
        pairs, titles = self.snapshot_panels(r, gt, label, f"step {step} view {self.eval_view}")
        contact_sheet(pairs, titles, out_png)
        return self.snapshot_metrics(r, gt, label)

    def snapshot_view(self, j: int):
        """(render dict, ground truth rgb (H, W, 3) float with a black background, label (H, W)) of view j."""
        import numpy as np

        r = self.render_view(j)
        v = self.cache.view(j)
        gt = v["rgb"].astype(np.float32) / 255.0 * (v["label"] > 0)[..., None]
        return r, gt, v["label"]

    def snapshot_panels(self, r: dict, gt, label, title: str) -> tuple[list, list]:
        """([(prediction, ground truth)], [title]) pairs of the snapshot's contact sheet."""
        return [(r["rgb"], gt)], [title]

    def snapshot_metrics(self, r: dict, gt, label) -> dict:
        from handcli.eval.image_metrics import psnr_full

        return {"eval_psnr_full": psnr_full(r["rgb"], gt)}

    # ------------------------------------------------------------------------------------------- rendering
    def render_state(self, frame: int, outputs: frozenset[str]):
        """(state for ``render_rays``, [(box_min (3,), box_max (3,))] world boxes holding the frame)."""
        raise NotImplementedError

    def render_rays(self, state, origins, dirs, outputs: frozenset[str], **extra) -> dict:
        """{output: (R, ...) tensor} for each name in ``outputs`` (rgb, depth = ray distance not normalised by
        opacity, opacity, semantic uint8 cache labels, feature...) and the ``render_counts`` numbers.
        ``extra``: ``radii`` (R,) when ``uses_radii``."""
        raise NotImplementedError

    @property
    def render_chunk(self) -> int:
        """Rays per ``render_rays`` call."""
        return int(self.cfg.chunk)

    def empty_outputs(self) -> dict:
        """{output: (trailing shape, dtype)} of outputs the driver does not know (e.g. feature)."""
        return {}

    def render_camera(self, frame: int, K, world_to_cam, height: int, width: int,
                      outputs: frozenset[str] | None = None) -> dict:
        """Render cache frame ``frame`` seen by any camera (K (3, 3), world_to_cam (4, 4)) at height x width.

        outputs: the images wanted (default ``self.outputs``). Returns them as numpy arrays (rgb (H, W, 3),
        depth (H, W) z-depth metres, opacity (H, W), semantic (H, W) uint8...), ``rays`` and the counts.
        """
        import torch

        from handcli.render.driver import render_image

        outputs = self.outputs if outputs is None else frozenset(outputs)
        unknown = outputs - self.outputs - self.extra_outputs
        if unknown:
            raise InputError(f"method {self.method} cannot render {', '.join(sorted(unknown))}", field="outputs")
        self.check_frame(frame)
        with torch.no_grad(), evaluating(self.model):
            state, boxes = self.render_state(frame, outputs)
            return render_image(lambda o, d, want, **kw: self.render_rays(state, o, d, want, **kw), boxes, K,
                                world_to_cam, height, width, outputs, device=self.device, chunk=self.render_chunk,
                                radii=self.uses_radii, counts=self.render_counts, empty=self.empty_outputs())

    def render_view(self, j: int, outputs: frozenset[str] | None = None) -> dict:
        """Render cache view ``j`` with its camera (frame codes of unseen frames use the method's default)."""
        vt = self.cache.view_table()
        cam = self.cache.cameras()[int(vt["camera"][j])]
        return self.render_camera(int(vt["frame"][j]), cam["K"], cam["world_to_cam"], cam["height"], cam["width"],
                                  outputs)
