"""Synthetic datasets written in each real dataset's exact on-disk layout."""
