"""Datasets: cameras and rays, transforms.json scenes, images, the built-in demo scene."""
