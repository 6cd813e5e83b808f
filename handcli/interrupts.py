"""SIGINT/SIGTERM as a request to stop at the next safe point, and worker processes that die with their parent.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can land in a destructor or a weakref callback,
where Python prints "Exception ignored" and carries on (an interrupted preprocess then finished with
exit 0). Inside :func:`graceful_signals` the first signal only sets a flag; the stage checks it between
units of work (a training step, a frame) and raises :class:`handcli.errors.Interrupted` there. A second
signal raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

from handcli.errors import Interrupted

_received: list[str] = []  # signals seen during this command (by any handler below)


def pending() -> str | None:
    """The name of the first SIGINT/SIGTERM received during this command, or None."""
    return _received[0] if _received else None


@contextlib.contextmanager
def stage_signals() -> Iterator[None]:
    """For a whole CLI command: SIGINT/SIGTERM raise ``KeyboardInterrupt`` and are remembered.

    Remembering matters because such an exception can be swallowed (raised inside a destructor); the
    commit points (``outputs.atomic_path``, the trainer, the preprocess loop) check :func:`pending` and stop.
    """
    _received.clear()

    def handler(signum, frame):
        _received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def graceful_signals() -> Iterator[dict]:
    """While active, the first SIGINT/SIGTERM sets ``flag["signal"]`` (its name); a second raises KeyboardInterrupt.

    Outside the main thread (signals cannot be handled there) the flag is never set.
    """
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name
        _received.append(flag["signal"])
        from handcli.progress import log

        log(f"{flag['signal']}: stopping at the next safe point (send it again to abort at once)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def raise_if_signalled(flag: dict, what: str) -> None:
    """Raise :class:`Interrupted` (exit 130) when :func:`graceful_signals` caught a signal."""
    name = flag["signal"] or pending()
    if name is not None:
        raise Interrupted(f"{name}: {what}")


def die_with_parent(parent: int, poll_s: float = 0.2) -> None:
    """In a worker process: ignore SIGINT (the parent handles it) and exit when process ``parent`` is gone.

    ``parent`` is the pid the parent passed when it started the worker (not ``os.getppid()`` here: a parent
    killed while the worker was still starting up has already been replaced by init). A ``kill -9`` of the
    parent otherwise leaves pool workers blocked on their task queue forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
