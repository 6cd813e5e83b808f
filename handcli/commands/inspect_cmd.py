"""``handcli inspect``: summarise any handcli artifact."""

from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    path: Path = typer.Argument(..., help="A cache (.h5), a directory of shard caches or another handcli artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    all_frames: bool = typer.Option(False, "--all", help="List every frame (default: the first 100)."),
) -> None:
    """Summarise a handcli artifact (cache: cameras, frames, hands, MANO parameters)."""
    import json

    from handcli.errors import InputError

    if not path.exists():
        raise InputError("not found", path=path)
    summary = _other_artifact(path)
    if summary is None:
        from handcli.data.shards import open_cache

        with open_cache(path) as c:
            summary = c.summary(all_frames=all_frames)
    elif not as_json:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(summary, max_length=12, max_string=200))
        return
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{summary['path']}[/bold]  schema {summary['schema']}  dataset {summary['dataset']}  "
              f"scale {summary['scale']}")
    con.print(f"{summary['num_frames']} frames, {summary['num_views']} views, {summary['num_cameras']} cameras")
    t = Table("camera", "capture", "size", "fx", "fy", "cx", "cy")
    for cam in summary["cameras"]:
        K = cam["K"]
        t.add_row(cam["name"], str(cam["capture"]), f"{cam['width']}x{cam['height']}", f"{K[0][0]:.1f}",
                  f"{K[1][1]:.1f}", f"{K[0][2]:.1f}", f"{K[1][2]:.1f}")
    con.print(t)
    t = Table("frame", "hands", "mano", "views")
    for fr in summary["frames"][:20]:
        hands = ",".join(fr["hands"])
        mano = ",".join(s for s, h in fr["hands"].items() if h["mano"] is not None)
        t.add_row(fr["id"], hands, mano or "-", str(fr["views"]))
    con.print(t)


def _other_artifact(path: Path) -> dict | None:
    """Summary of a run folder, renders folder, metrics JSON or targets file; None for a cache."""
    import json

    from handcli.errors import InputError

    if path.is_dir():
        if (path / "config.json").is_file():
            from handcli.methods.base import read_run_config
            from handcli.methods.trainer import read_metrics

            doc = read_run_config(path)
            recs = read_metrics(path)
            done = path / "complete.json"
            return {"schema": doc["schema"], "kind": "run", "method": doc["method"], "preset": doc["preset"],
                    "config": doc["config"], "data": doc["data"], "steps_logged": recs[-1]["step"] if recs else 0,
                    "last": recs[-1] if recs else None, "complete": done.is_file(),
                    "checkpoint": (path / "checkpoint.pt").is_file()}
        if (path / "renders.json").is_file():
            from handcli.render.renders_folder import read_renders

            doc = read_renders(path)
            return {"schema": doc["schema"], "kind": "renders", "method": doc["method"], "run": doc["run"],
                    "cache": doc["cache"], "num_views": len(doc["views"]),
                    "views": [{k: v.get(k) for k in ("name", "cache_view", "camera", "width", "height")}
                              for v in doc["views"][:100]]}
        if any(path.glob("*.h5")):
            return None  # a directory of shard caches: summarised as one cache
        raise InputError("not a handcli artifact (no config.json, renders.json or shard caches)", path=path)
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON ({e.msg})", path=path) from None
        if not isinstance(doc, dict) or "schema" not in doc:
            raise InputError("not a handcli artifact (no schema)", path=path, field="schema")
        return {k: v for k, v in doc.items() if k != "views"} | {"num_views": len(doc.get("views", []))}
    from handcli.targets.store import open_targets

    targets = open_targets(path)
    if targets is None:
        return None
    with targets:
        return targets.summary()
