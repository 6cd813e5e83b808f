"""One module per method (and baseline), plus the shared trainer."""
