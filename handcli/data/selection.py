"""Which frames, cameras and shard a preprocess or stage works on: the selection strings every dataset takes.

``"0-10,15"`` -> a set of integers; ``"a,b"`` -> a set of names; ``"i/N"`` -> shard i of N. One definition for
InterHand2.6M, DexYCB and HO-3D and for the stages that pick frames (train, render, adapt, mesh, export).
"""

from __future__ import annotations

from handcli.errors import InputError


def parse_selection(spec: str | None) -> set[int] | None:
    """``"0-10,15,20-22"`` -> {0..10, 15, 20, 21, 22}; None or "" -> no selection."""
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                if int(b) < int(a):
                    raise ValueError
                out.update(range(int(a), int(b) + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise InputError(f"bad selection {part!r} in {spec!r} (expected e.g. '0-10,15')",
                             field="selection") from None
    return out


def parse_names(spec: str | None) -> set[str] | None:
    """``"a, b"`` -> {"a", "b"}; None or "" -> no selection."""
    return {s.strip() for s in spec.split(",") if s.strip()} if spec else None


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/N"`` -> (i, N), 0 <= i < N; None -> (0, 1). A malformed spec is an InputError on field ``shard``."""
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"shard must look like i/N, got {spec!r}", field="shard") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"shard {spec!r}: need 0 <= i < N", field="shard")
    return i, n

