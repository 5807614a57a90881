"""Quality presets of a job (Preview / Standard / High): step counts and output sizes.

The Blender add-on writes its choices into job.json `overrides`; these are the defaults for a
job directory written by hand or by another tool. Overrides always win.

`mesh_faces` is the exported mesh's face budget (quadric decimation; 0: keep every face): marching
cubes at 256^3 gives lego 1.6 M faces, more than an artist wants in a viewport.
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    "preview": {
        "cpu": {"pretrain_steps": 1500, "stylize_steps": 200, "mesh_resolution": 96, "texture_size": 512, "mesh_faces": 30000},
        "gpu": {"pretrain_steps": 2000, "stylize_steps": 400, "mesh_resolution": 192, "texture_size": 512, "mesh_faces": 100000},
    },
    "standard": {
        "cpu": {"pretrain_steps": 1500, "stylize_steps": 300, "mesh_resolution": 160, "texture_size": 512, "mesh_faces": 100000},
        "gpu": {"pretrain_steps": 5000, "stylize_steps": 1000, "mesh_resolution": 256, "texture_size": 1024, "mesh_faces": 250000},
    },
    "high": {
        "cpu": {"pretrain_steps": 4000, "stylize_steps": 800, "mesh_resolution": 256, "texture_size": 1024, "mesh_faces": 250000},
        "gpu": {"pretrain_steps": 15000, "stylize_steps": 3000, "mesh_resolution": 384, "texture_size": 2048, "mesh_faces": 500000},
    },
}


def job_settings(preset: str, device_type: str, overrides: dict) -> dict:
    """The preset's values for this device, with the job's overrides on top."""
    base = dict(PRESETS[preset]["cpu" if device_type == "cpu" else "gpu"])
    base.update(overrides)
    return base
