"""Atomic outputs: write to a temporary name beside the target, rename at the end.

An interrupted or failed stage never leaves a half-written file that looks whole, and
nothing the user had is overwritten unless they pass ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from handcli.errors import InputError


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force``; return the path."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError("output exists; pass --force to overwrite", path=path)
    if not path.parent.exists():
        raise InputError("output folder does not exist", path=path.parent)
    return path


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = False, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    On any exception the temporary file or folder is removed and the target is untouched.
    """
    path = check_writable(path, force)
    fd_dir = path.parent
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=fd_dir))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=fd_dir)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()  # writers (h5py, cv2) create the file themselves
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.exists():
        backup = path.with_name(f".{path.name}.old")
        _remove(backup)
        os.replace(path, backup)
        os.replace(tmp, path)
        _remove(backup)
    else:
        os.replace(tmp, path)
