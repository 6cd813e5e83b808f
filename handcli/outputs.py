"""Atomic outputs: write beside the target under a temporary name, swap it in when complete.

An interrupted or failed stage never leaves a half-written file that looks whole, and nothing the user had is
removed or overwritten unless they pass ``--force``; even then (:func:`check_writable`):

- the old output is replaced only after the new one is complete (write beside, then swap);
- an output that is, contains or lies inside one of the stage's inputs is refused;
- a folder is replaced only by a handcli artifact of the same kind (marker file ``.handcli-artifact``, or a run's
  ``config.json`` / a renders folder's ``renders.json``), and a file never replaces a folder or the reverse.

Temporary names carry the writer's pid (``.NAME.PID.XXXX.tmp``): a stage removes them on any exception or
signal, and the next stage writing the same output removes those whose process is gone (a ``kill -9``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from handcli.errors import InputError

ARTIFACT_MARKER = ".handcli-artifact"
_RUN_SCHEMA = "handcli.run/1"
_RENDERS_SCHEMA = "handcli.renders/1"


# ------------------------------------------------------------------------------------------------- artifacts
def mark_artifact(folder: str | Path, kind: str) -> None:
    """Tag ``folder`` as a handcli artifact of ``kind`` (what ``--force`` may later replace)."""
    (Path(folder) / ARTIFACT_MARKER).write_text(json.dumps({"kind": kind}) + "\n")


def _json_schema(p: Path) -> str | None:
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return doc.get("schema") if isinstance(doc, dict) else None


def artifact_kind(folder: str | Path) -> str | None:
    """The kind of handcli artifact ``folder`` is ('run', 'renders', a marker's kind), or None."""
    folder = Path(folder)
    marker = folder / ARTIFACT_MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if isinstance(kind, str):
            return kind
    if _json_schema(folder / "config.json") == _RUN_SCHEMA:
        return "run"
    if _json_schema(folder / "renders.json") == _RENDERS_SCHEMA:
        return "renders"
    return None


# ------------------------------------------------------------------------------------------------- checks
def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(Path(p).expanduser())).resolve()


def check_inputs_apart(path: str | Path, inputs: Iterable[str | Path | None], replacing: bool = True) -> None:
    """Refuse an output that is or contains an input, or (when ``replacing`` it) lies inside one."""
    out = _resolved(path)
    for inp in inputs:
        if inp is None:
            continue
        src = _resolved(inp)
        if out == src:
            raise InputError(f"output is an input of this stage ({inp}); write elsewhere", path=path)
        if out in src.parents:
            raise InputError(f"output contains an input of this stage ({inp}); write elsewhere", path=path)
        if replacing and src in out.parents:
            raise InputError(f"output lies inside an input of this stage ({inp}); refusing to replace it",
                             path=path)


def check_writable(path: str | Path, force: bool, *, inputs: Iterable[str | Path | None] = (),
                   kind: str | None = None, is_dir: bool | None = None) -> Path:
    """Refuse to overwrite an existing output unless ``force``, and refuse what ``force`` must not replace.

    ``inputs``: the stage's input paths (an output may not be, contain or replace something inside one).
    ``is_dir``/``kind``: what the stage writes (None: not known yet); an existing folder is replaced only when
    it is a handcli artifact of ``kind`` (default kind for folders: 'folder').
    """
    path = Path(path)
    exists = path.exists() or path.is_symlink()
    check_inputs_apart(path, inputs, replacing=exists)
    if exists:
        if not force:
            raise InputError("output exists; pass --force to overwrite", path=path)
        if is_dir is False and path.is_dir():
            raise InputError("output is a folder; refusing to replace a folder with a file", path=path)
        if is_dir and not path.is_dir():
            raise InputError("output is a file; refusing to replace it with a folder", path=path)
        if is_dir:
            want = kind or "folder"
            have = artifact_kind(path)
            if have != want:
                what = f"a handcli {have} folder" if have else "not a handcli artifact"
                raise InputError(f"refusing to replace this folder with a {want} folder: it is {what} "
                                 "(remove it yourself if it may go)", path=path)
    if not path.parent.exists():
        raise InputError("output folder does not exist", path=path.parent)
    return path


# ------------------------------------------------------------------------------------------------- temporaries
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(path: str | Path) -> Path:
    """A fresh temporary name beside ``path``, ``.NAME.PID.XXXXXXXX.tmp``; nothing is created (see ``owned_temp``)."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        if not os.path.lexists(tmp):
            return tmp


def make_temp_dir(tmp: Path) -> None:
    """Create the temporary folder ``tmp`` (a ``temp_name``) with the usual permissions (umask)."""
    os.mkdir(tmp)


@contextlib.contextmanager
def owned_temp(path: str | Path, is_dir: bool) -> Iterator[Path]:
    """A fresh temporary beside ``path`` (``temp_name``; a folder is created, a file is left to its writer: h5py
    and cv2 create their files themselves), removed if the block raises, a signal included; on success it
    stays for the caller to swap into place.

    The name is taken before anything exists under it, so no signal can fall between creating the temporary
    and this block taking charge of it (one did: a SIGINT right after ``mkdtemp`` left the folder behind)."""
    tmp = None
    try:
        tmp = temp_name(path)
        if is_dir:
            make_temp_dir(tmp)
        yield tmp
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        raise


def clean_stale(path: str | Path) -> list[Path]:
    """Remove temporaries of ``path`` left by writers that no longer run (a ``kill -9``); returns them.

    A backup of the previous output (``.NAME.PID.old``, only there if a writer died mid-swap) is put back
    when the output is missing, and removed when the output exists. Temporaries without a pid (older
    versions) are named on stderr, never removed.
    """
    from handcli.progress import log

    path = Path(path)
    if not path.parent.is_dir():
        return []
    pat = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.(?:[^.]+\.tmp|old)$")
    removed = []
    for p in sorted(path.parent.iterdir()):
        if not p.name.startswith(f".{path.name}."):
            continue
        m = pat.match(p.name)
        if m is None:
            if p.name.endswith(".tmp"):
                log(f"warning: {p} looks like a temporary of an interrupted handcli stage; remove it if so")
            continue
        if _pid_alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue
        if p.name.endswith(".old") and not (path.exists() or path.is_symlink()):
            os.replace(p, path)
            log(f"restored {path} from the backup an interrupted stage left ({p.name})")
            continue
        _remove(p)
        removed.append(p)
    if removed:
        log(f"removed {len(removed)} stale temporary output(s) of an interrupted stage: "
            + ", ".join(p.name for p in removed))
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the complete ``tmp`` onto ``path``; an existing ``path`` is moved aside first, then removed."""
    if path.exists() or path.is_symlink():
        backup = path.with_name(f".{path.name}.{os.getpid()}.old")
        _remove(backup)
        os.replace(path, backup)
        os.replace(tmp, path)
        _remove(backup)
    else:
        os.replace(tmp, path)


def replace_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """All-or-nothing rewrite of a file a stage owns (a checkpoint, a run's config.json; no ``--force`` checks).

    ``write(tmp)`` fills a temporary beside ``path`` (``owned_temp``: ``.NAME.PID.XXXX.tmp``, so concurrent
    writers never share one and :func:`clean_stale` finds those of a killed writer), which then replaces
    ``path`` in one rename; on any exception the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    with owned_temp(path, is_dir=False) as tmp:
        write(tmp)
        os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = False, is_dir: bool = False, *,
                inputs: Iterable[str | Path | None] = (), kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success swap it onto ``path``.

    On any exception (KeyboardInterrupt and SIGTERM included) the temporary is removed and the target is
    untouched. Folders are tagged as artifacts of ``kind`` (default 'folder') so that a later ``--force``
    knows it may replace them. See :func:`check_writable` for what is refused.
    """
    inputs = list(inputs)
    path = check_writable(path, force, inputs=inputs, kind=kind, is_dir=is_dir)
    clean_stale(path)
    with owned_temp(path, is_dir) as tmp:
        yield tmp
        if is_dir:
            mark_artifact(tmp, kind or "folder")
        from handcli.interrupts import pending

        if pending():  # a Ctrl-C that a destructor swallowed: commit nothing
            from handcli.errors import Interrupted

            raise Interrupted(f"{pending()}: nothing written to {path}")
    swap_into_place(tmp, path)
