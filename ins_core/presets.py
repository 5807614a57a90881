"""Quality presets of a job (Preview / Standard / High): step counts and output sizes, per device.

The one table of them: the worker takes the numbers for the device it runs on (a GPU trains
longer in less time), with the job's `overrides` on top, and the Blender add-on reads the same
numbers for its panel's time estimate. The add-on's presets add only what the capture needs (views,
their size, Cycles samples), so a job written by the add-on or by hand trains the same way.

`mesh_faces` is the exported mesh's face budget (quadric decimation; 0: keep every face): marching
cubes at 256^3 gives lego 1.6 M faces, more than an artist wants in a viewport.
`MESH_SMOOTH_ITERATIONS` is how much the exported surface is smoothed (Taubin rounds; 0: not at all),
the same for every preset.
"""

from __future__ import annotations

DEVICE_KINDS = ("cpu", "gpu")

# Measured (docs/results.md, "A smoothed mesh"): on make demo's stylized field the mesh's face
# normals lie 18 degrees off the true surface's unsmoothed, 10.7 after 5 rounds, 9.8 after 10 and
# 9.3 after 20, the surface no farther away; lego's mesh, whose studs are as small as the grain,
# loses 0.46, 0.62 and 0.89 dB against the field. 10 takes most of the grain for two thirds of
# lego's loss at 20.
MESH_SMOOTH_ITERATIONS = 10

# The CPU's numbers are the ones measured through the add-on (the demo scene on a 2-core EPYC: Preview
# 263 s, Standard 546 s; docs/results.md, docs/stylization.md); the GPU's Preview ran the demo's job in
# 40 s of work on an H200 (2026-12-04).
PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "preview": {
        "cpu": {"pretrain_steps": 1500, "stylize_steps": 200, "mesh_resolution": 96, "texture_size": 512, "mesh_faces": 30000},
        "gpu": {"pretrain_steps": 2000, "stylize_steps": 400, "mesh_resolution": 192, "texture_size": 512, "mesh_faces": 100000},
    },
    "standard": {
        "cpu": {"pretrain_steps": 2000, "stylize_steps": 600, "mesh_resolution": 192, "texture_size": 1024, "mesh_faces": 100000},
        "gpu": {"pretrain_steps": 5000, "stylize_steps": 1000, "mesh_resolution": 256, "texture_size": 1024, "mesh_faces": 250000},
    },
    "high": {
        "cpu": {"pretrain_steps": 5000, "stylize_steps": 1500, "mesh_resolution": 256, "texture_size": 2048, "mesh_faces": 300000},
        "gpu": {"pretrain_steps": 15000, "stylize_steps": 3000, "mesh_resolution": 384, "texture_size": 2048, "mesh_faces": 500000},
    },
}


def device_kind(device: str) -> str:
    """'cpu' for the CPU, 'gpu' for the devices torch trains on besides it (cuda, mps)."""
    return "cpu" if str(device).lower() == "cpu" else "gpu"


def budget(preset: str, kind: str) -> dict[str, int]:
    """A preset's step counts and export sizes on a 'cpu' or a 'gpu' (a copy)."""
    return dict(PRESETS[preset][kind])


def job_settings(preset: str, device_type: str, overrides: dict) -> dict:
    """The preset's values for this device (torch's device type), with the job's overrides on top."""
    return {**budget(preset, device_kind(device_type)), **overrides}
