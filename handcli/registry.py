"""Method and dataset names -> implementation, imported only when used (keeps --help fast)."""

from __future__ import annotations

METHODS = {
    "handnerf": "handcli.methods.handnerf_method:HandNeRFMethod",
    "posenerf": "handcli.methods.handnerf_method:HandNeRFMethod",
}
DATASETS = {
    "interhand": "handcli.data.interhand_preprocess:preprocess_interhand",
}


def check_method(name: str) -> str:
    from handcli.errors import InputError

    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}", field="method")
    return name
