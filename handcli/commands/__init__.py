"""One module per CLI stage. Keep imports at module level to typer only (fast --help)."""
