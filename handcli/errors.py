"""Errors that the CLI turns into exit codes.

`InputError` is bad input from the user (exit 2, one line, no traceback); anything else
escaping a command is a bug (exit 1).
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file and, when known, the field that is wrong."""

    def __init__(self, message: str, path: str | Path | None = None, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path and self.field:
            where = f"{self.path}: {self.field}: "
        elif self.path:
            where = f"{self.path}: "
        elif self.field:
            where = f"{self.field}: "
        return f"{where}{self.message}"


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM ended a stage cleanly (work saved where the stage can); the CLI exits 130."""
