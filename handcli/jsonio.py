"""Reading annotation files with errors that name the file and the field.

Small files are parsed whole (:func:`load_json`). Large annotation files are streamed
(:func:`stream_items`, :func:`stream_kvitems`, ijson on its C yajl2 backend): only one
entry is alive at a time, and the whole file is always read to its end, so a truncated
or malformed file is an error even when the damage comes after every selected entry.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

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


def _format_path(stack: list[list]) -> str:
    """[['m', 'images'], ['a', 3], ['m', 'width']] -> 'images[3]/width'."""
    out = ""
    for kind, key in stack:
        if kind == "a":
            out += f"[{max(key, 0)}]"
        elif key is not None:
            out += f"/{key}" if out else str(key)
    return out


def locate_json_error(path: str | Path) -> tuple[str, str]:
    """Re-read a file that failed to parse and return (field path, parser message) of the damage.

    Only runs on the error path: it walks every event in Python (a few million per second).
    """
    import ijson

    stack: list[list] = []
    try:
        with open(path, "rb") as f:
            for event, value in ijson.basic_parse(f, use_float=True):
                if event == "map_key":
                    stack[-1][1] = value
                elif event in ("end_map", "end_array"):
                    stack.pop()
                else:
                    if stack and stack[-1][0] == "a":
                        stack[-1][1] += 1
                    if event == "start_map":
                        stack.append(["m", None])
                    elif event == "start_array":
                        stack.append(["a", -1])
    except ijson.JSONError as e:
        return _format_path(stack), _parser_message(e)
    return _format_path(stack), "parse error"


def _parser_message(e: Exception) -> str:
    msg = e.args[0] if e.args else str(e)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg).strip().splitlines()[0].rstrip(".") if str(msg).strip() else "parse error"


def _stream_error(path: Path, e: Exception) -> InputError:
    field, msg = locate_json_error(path)
    if "invalid char" in msg:
        msg += "; NaN and Infinity are not JSON"
    return InputError(f"malformed or truncated JSON ({msg})", path=path, field=field or None)


def expect_object(path: str | Path, what: str = "annotation file") -> Path:
    """Check that ``path`` exists and its JSON value is an object (its first non-blank byte is ``{``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what}", path=path)
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        while not head:
            chunk = f.read(4096)
            if not chunk:
                break
            head = chunk.lstrip()
    if head[:3] == b"\xef\xbb\xbf":
        head = head[3:].lstrip()
    if not head.startswith(b"{"):
        raise InputError("expected a JSON object at the top level", path=path)
    return path


def stream_items(path: str | Path, prefix: str) -> Iterator[Any]:
    """Yield each value under ijson ``prefix`` (e.g. ``"images.item"``), reading the file to its end.

    Numbers come back as int or float. A parse error anywhere in the file is an InputError naming
    the file and the field where the damage is.
    """
    return _stream(path, "items", prefix)


def _stream(path: str | Path, parser: str, prefix: str) -> Iterator[Any]:
    """ijson ``parser`` ("items" or "kvitems") over the whole file; a parse error is an InputError."""
    import ijson

    path = Path(path)
    try:
        with open(path, "rb") as f:
            yield from getattr(ijson, parser)(f, prefix, use_float=True, buf_size=1 << 20)
    except ijson.JSONError as e:
        raise _stream_error(path, e) from None


class _CountingReader:
    """A binary file that counts the bytes handed out (ijson reads one buffer, then yields what it parsed)."""

    def __init__(self, f):
        self.f = f
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.pos += len(b)
        return b


POSITION_BUF = 1 << 16  # read size of stream_items_at: a yielded value ends at most this far before its offset


def stream_items_at(path: str | Path, prefix: str) -> Iterator[tuple[Any, int]]:
    """Like :func:`stream_items`, yielding (value, bytes read when it was parsed): the value's text ends
    within the last ``POSITION_BUF`` bytes before that offset."""
    import ijson

    path = Path(path)
    try:
        with open(path, "rb") as f:
            r = _CountingReader(f)
            for v in ijson.items(r, prefix, use_float=True, buf_size=POSITION_BUF):
                yield v, r.pos
    except ijson.JSONError as e:
        raise _stream_error(path, e) from None


def object_with_key_near(path: str | Path, key: str, value: int, offset: int, span: int = 4 * POSITION_BUF):
    """The JSON object holding ``"key": value`` (an int) whose text lies shortly before ``offset``, or None.

    For a file that already streamed without error: re-reads only ``span`` bytes around the offset, takes
    the nearest ``{`` before a matching key and decodes from there; the object is returned only if it has
    that key and value and is an array element (followed by ``,`` or ``]``). None means "not found this
    way": the caller falls back to a full streamed pass.
    """
    start = max(0, offset - span)
    with open(path, "rb") as f:
        f.seek(start)
        win = f.read(offset - start + span)
    pat = re.compile(rb'"%s"\s*:\s*%d(?![0-9.eE])' % (re.escape(key.encode()), value))
    dec = json.JSONDecoder()
    for m in reversed(list(pat.finditer(win))):
        b = win.rfind(b"{", 0, m.start())
        if b < 0:
            continue
        text = win[b:].decode("utf-8", "replace")
        try:
            obj, end = dec.raw_decode(text)
        except ValueError:
            continue
        if isinstance(obj, dict) and type(obj.get(key)) is int and obj[key] == value \
                and text[end:].lstrip()[:1] in (",", "]"):
            return obj
    return None


def stream_kvitems(path: str | Path, prefix: str) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of the object at ijson ``prefix`` (``""``: the top level), reading to the end."""
    return _stream(path, "kvitems", prefix)


def get(obj: Any, key: str | int, path: Path, field: str) -> Any:
    """``obj[key]`` or an InputError naming ``field`` in ``path``."""
    if isinstance(key, str) and not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path,
                         field=field.rsplit("/", 1)[0] if "/" in field else field)
    try:
        return obj[key]
    except (KeyError, IndexError, TypeError):
        raise InputError("missing key", path=path, field=field) from None


def integer(value: Any, path: Path, field: str, lo: int | None = None, hi: int | None = None) -> int:
    """A JSON integer (not a bool, not a float) in [lo, hi], or an InputError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"expected an integer, found {value!r}", path=path, field=field)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{value} is out of range [{lo}, {hi}]", path=path, field=field)
    return value


def string(value: Any, path: Path, field: str) -> str:
    """A non-empty JSON string, or an InputError naming the field."""
    if not isinstance(value, str) or not value:
        raise InputError(f"expected a non-empty string, found {value!r}", path=path, field=field)
    return value


def finite_floats(values: Any, n: int, path: Path, field: str, limit: float | None = None) -> list[float]:
    """A list of exactly ``n`` finite floats (each ``|x| <= limit`` when given), or an InputError."""
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
    if limit is not None and any(abs(x) > limit for x in flat):
        raise InputError(f"contains a value beyond +-{limit:g}", path=path, field=field)
    return flat
