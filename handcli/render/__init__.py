"""Rendering: rays, bounds, samplers, volume rendering, composition and rasterization."""
