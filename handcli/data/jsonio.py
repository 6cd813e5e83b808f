"""Reading annotation files with errors that name the file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from handcli.errors import InputError


def load_json(path: str | Path, what: str = "annotation file") -> Any:
    """Parse a JSON file; a missing, truncated or malformed file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what}", path=path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed or truncated JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                         path=path) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 JSON ({e.reason})", path=path) from None


def get(obj: Any, key: str | int, path: Path, field: str) -> Any:
    """``obj[key]`` or an InputError naming ``field`` in ``path``."""
    try:
        return obj[key]
    except (KeyError, IndexError, TypeError):
        raise InputError("missing key", path=path, field=field) from None


def finite_floats(values: Any, n: int, path: Path, field: str) -> list[float]:
    """A list of exactly ``n`` finite floats, or an InputError naming the field."""
    if not isinstance(values, (list, tuple)):
        raise InputError(f"expected a list of {n} numbers", path=path, field=field)
    flat: list[float] = []
    stack = list(values)
    while stack:  # accept nested lists such as [[1], [2]] or 3x3 matrices
        v = stack.pop(0)
        if isinstance(v, (list, tuple)):
            stack[0:0] = list(v)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
            raise InputError(f"expected numbers, found {v!r}", path=path, field=field)
        flat.append(float(v))
    if len(flat) != n:
        raise InputError(f"expected {n} numbers, found {len(flat)}", path=path, field=field)
    if not all(math.isfinite(x) for x in flat):
        raise InputError("contains NaN or Inf", path=path, field=field)
    return flat
