"""What the command layer turns into library arguments: the command line recorded in outputs, ``--set`` pairs.

The library never reads ``sys.argv`` nor parses CLI strings: stages pass ``command=command_line()`` and a dict of
config overrides. Only the standard library is imported here (fast ``--help``).
"""

from __future__ import annotations

import json
import shlex
import sys


def command_line() -> str:
    """The command line of this process, shell-quoted, as outputs record it (``command``)."""
    return " ".join(shlex.quote(a) for a in sys.argv)


def parse_sets(items: list[str], option: str = "--set") -> dict:
    """``["key=value", ...]`` (``--set``, or the ``option`` named) -> dict, values parsed as JSON when they are
    JSON."""
    from handcli.errors import InputError

    out = {}
    for it in items:
        if "=" not in it:
            raise InputError(f"{option} expects key=value, got {it!r}", field=option.lstrip("-"))
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def camera_ids(text: str | None) -> list[str] | None:
    """``"400002,cam400004"`` (``--cameras``) -> ["400002", "400004"]; None or empty -> None (all cameras)."""
    return [x.strip().removeprefix("cam") for x in text.split(",") if x.strip()] if text else None
