"""``handcli`` as a subprocess, and the small HandOcc settings the CLI tests train with."""

from __future__ import annotations

import os
import subprocess
import sys

# a HandOcc run that trains in seconds on the tiny cache
HANDOCC_SMALL = ["--set", "rays_per_step=128", "--set", "occ_points=512", "--set", "pool_points=2048", "--set",
                 "occ_hidden=16", "--set", "color_hidden=16", "--set", "max_samples=16", "--cameras", "400002,400009"]


def handcli(*args, **kw) -> subprocess.CompletedProcess:
    """``python -m handcli.cli ARGS`` with captured text output (``kw``: more subprocess.run options)."""
    # one thread: the test machine is shared, and oversubscribed OpenMP threads slow small ops down badly
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)
