"""Method and dataset names -> implementation, imported only when used (keeps --help fast)."""

from __future__ import annotations

import importlib

METHODS = {
    "handnerf": "handcli.methods.handnerf.method:HandNeRFMethod",
    "posenerf": "handcli.methods.handnerf.method:HandNeRFMethod",
    "handocc": "handcli.methods.handocc.method:HandOccMethod",
    "handnerf-ho": "handcli.methods.handnerf_ho.method:HandNeRFHOMethod",
    "pixelnerf": "handcli.methods.handnerf_ho.method:HandNeRFHOMethod",
}
DATASETS = {
    "interhand": "handcli.data.interhand_preprocess:preprocess_interhand",
    "dexycb": "handcli.data.ho_preprocess:preprocess_dexycb",
    "ho3d": "handcli.data.ho_preprocess:preprocess_ho3d",
}


def _resolve(table: dict, name: str, what: str):
    from handcli.errors import InputError

    if name not in table:
        raise InputError(f"unknown {what} {name!r}; available: {', '.join(sorted(table))}", field=what)
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)


def method_class(name: str):
    """The class implementing method ``name`` (see handcli.methods.base)."""
    return _resolve(METHODS, name, "method")


def dataset_preprocess(name: str):
    """The function ``(root, out, *, command, ...) -> stats`` that preprocesses dataset ``name`` into a cache."""
    return _resolve(DATASETS, name, "dataset")
