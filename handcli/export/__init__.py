"""Exports of handcli data for other tools: nerfstudio datasets (``nerfstudio.py``), mesh sequences."""
