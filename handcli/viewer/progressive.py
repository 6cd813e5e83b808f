"""Progressive rendering off the server thread: a quick low-resolution image for every new request while
the camera moves, then one full-resolution image once no request came for ``rest_s`` seconds.

Rendering runs in one background thread per browser; ``request`` only records the newest request and
returns at once, so the viser event loop never waits for a render. Requests that arrive while a render
runs replace each other: only the newest is rendered next.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable


class ProgressiveRenderer:
    """``render(request, scale) -> result`` then ``publish(request, result, full)`` for each image.

    scale < 1 renders the preview (``preview_scale``), 1.0 the full image. Counters ``previews`` and
    ``full`` count the images published.
    """

    def __init__(self, render: Callable[[Any, float], Any], publish: Callable[[Any, Any, bool], None],
                 preview_scale: float = 0.25, rest_s: float = 0.3, name: str = "viewer-render"):
        if not 0.0 < preview_scale <= 1.0:
            raise ValueError(f"preview_scale must be in (0, 1], got {preview_scale}")
        self._render, self._publish = render, publish
        self.preview_scale, self.rest_s = float(preview_scale), float(rest_s)
        self._cond = threading.Condition()
        self._request: Any = None
        self._gen = 0  # bumped by every request
        self._last = 0.0  # monotonic time of the newest request
        self._stop = False
        self.previews = 0
        self.full = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def request(self, req: Any) -> None:
        """Render ``req`` (replacing any request not yet started); returns immediately."""
        with self._cond:
            self._request = req
            self._gen += 1
            self._last = time.monotonic()
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _step(self, req: Any, scale: float, full: bool) -> None:
        try:
            result = self._render(req, scale)
            self._publish(req, result, full)
        except Exception:  # a failed render must not kill the loop (the browser keeps the last image)
            self.errors += 1
            traceback.print_exc()
            return
        if full:
            self.full += 1
        else:
            self.previews += 1

    def _loop(self) -> None:
        done = 0  # generation last rendered at full resolution
        while True:
            with self._cond:
                while not self._stop and self._gen == done:
                    self._cond.wait()
                if self._stop:
                    return
                gen, req = self._gen, self._request
            if self.preview_scale < 1.0:
                self._step(req, self.preview_scale, False)
            # wait for the camera to rest; a newer request restarts with its preview
            with self._cond:
                while not self._stop and self._gen == gen:
                    left = self.rest_s - (time.monotonic() - self._last)
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop:
                    return
                if self._gen != gen:
                    continue
            self._step(req, 1.0, True)
            done = gen
