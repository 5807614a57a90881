"""Rendering: ray-box clipping, samplers, occupancy grid, volume compositing."""
