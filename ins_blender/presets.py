"""Quality presets: how many views to capture, how big, and how long the worker trains.

`PRESETS` feeds the panel (label, description, rough time estimates) and the capture (views,
resolution, samples). How long the worker trains and how big the mesh is come from ins_core's one
table per device (`ins_core.presets`): the job names its preset and the worker takes the numbers
for the device it finds, so a GPU trains longer than a CPU; the panel's estimate reads the same
numbers (`QualityPreset.budget`). Plain Python: no bpy, no torch.

The times are rough estimates for a small scene (one object, default settings) on a 4-8 core
laptop CPU and on a recent NVIDIA GPU; they grow with the number of styles and with SDF mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from ins_core import presets as core_presets

ORDER = ("preview", "standard", "high")


@dataclass(frozen=True)
class QualityPreset:
    key: str  # the job.json preset name
    label: str
    description: str
    capture_views: int  # cameras of the automatic rig (scene cameras: as many as there are)
    capture_resolution: int  # pixels along the longer side of the training views
    capture_samples: int  # Cycles samples per training view
    cpu_minutes: tuple[float, float]  # rough estimate (low, high) for the whole run
    gpu_minutes: tuple[float, float]

    def budget(self, device_kind: str) -> dict[str, int]:
        """The worker's step counts and export sizes for this preset on a 'cpu' or a 'gpu'."""
        return core_presets.budget(self.key, device_kind)

    @property
    def enum_item(self) -> tuple[str, str, str]:
        return (self.key.upper(), self.label, f"{self.description} {self.estimate_text()}")

    def estimate_text(self) -> str:
        return f"Roughly {_span(self.cpu_minutes)} on a CPU, {_span(self.gpu_minutes)} on a GPU (estimates)."

    def estimate_lines(self) -> list[str]:
        """The estimate as short lines that fit the sidebar (the whole sentence is the tooltip)."""
        return [f"CPU: roughly {_span(self.cpu_minutes)}", f"GPU: roughly {_span(self.gpu_minutes)}"]


def _minutes(value: float) -> str:
    if value < 1:
        return f"{round(value * 60)} s"
    if value < 90:
        return f"{value:g} min"
    return f"{value / 60:g} h"


def _span(span: tuple[float, float]) -> str:
    low, high = span
    if low >= 90:
        return f"{low / 60:g}-{high / 60:g} h"
    if high < 90:
        return f"{low:g}-{high:g} min" if low >= 1 else f"{_minutes(low)}-{_minutes(high)}"
    return f"{_minutes(low)}-{_minutes(high)}"


PRESETS: dict[str, QualityPreset] = {
    "preview": QualityPreset(
        key="preview", label="Preview",
        description="Quick look: few small views, short training, coarse mesh.",
        # 160 px: from 5/8 of the CPU loss network's 256 px the views are asked for the painting's own
        # detail (style_detail auto), which paints its strokes (the demo: flowing bands on the cube, swirls
        # on the sphere, where 128 px views gave smooth colour; 263 s instead of 179 s on a 2-core
        # EPYC; docs/stylization.md). A 64 px view had no room for strokes and came back fuzzy.
        capture_views=24, capture_resolution=160, capture_samples=16,
        cpu_minutes=(3, 6), gpu_minutes=(0.5, 1),
    ),
    "standard": QualityPreset(
        key="standard", label="Standard",
        description="Balanced quality for most scenes.",
        # The demo scene ran 546 s on a 2-core EPYC (2026-12-05).
        capture_views=48, capture_resolution=160, capture_samples=32,
        cpu_minutes=(8, 20), gpu_minutes=(2, 4),
    ),
    "high": QualityPreset(
        key="high", label="High",
        description="Final quality: many large views, long training, fine mesh and texture.",
        capture_views=100, capture_resolution=256, capture_samples=64,
        cpu_minutes=(120, 240), gpu_minutes=(8, 15),
    ),
}


def get(key: str) -> QualityPreset:
    """The preset for "preview"/"PREVIEW"/...; a clear ValueError for anything else."""
    preset = PRESETS.get(str(key).lower())
    if preset is None:
        raise ValueError(f"Unknown quality preset {key!r}; use one of {', '.join(ORDER)}.")
    return preset


def enum_items() -> list[tuple[str, str, str]]:
    """Items for a bpy EnumProperty (identifiers in upper case, as Blender enums usually are)."""
    return [PRESETS[k].enum_item for k in ORDER]


def capture_resolution(preset: QualityPreset, aspect: float, override: int = 0) -> tuple[int, int]:
    """(width, height) of the training views: the longer side from the preset (or `override`),
    the shorter one from the scene's aspect ratio (width / height), at least 8 pixels."""
    side = int(override) if override and override > 0 else preset.capture_resolution
    aspect = float(aspect) if aspect and aspect > 0 else 1.0
    if aspect >= 1.0:
        return side, max(8, round(side / aspect))
    return max(8, round(side * aspect)), side


def scene_view_size(preset: QualityPreset, render, override: int = 0) -> tuple[int, int]:
    """`capture_resolution` for a scene's render settings (`scene.render`: its pixel size and
    pixel aspect give the views' shape)."""
    aspect = (render.resolution_x * render.pixel_aspect_x) / max(1e-6, render.resolution_y * render.pixel_aspect_y)
    return capture_resolution(preset, aspect, override)


def job_overrides(view_size: tuple[int, int] | None = None) -> dict[str, int]:
    """job.json `overrides` the capture decides: from the captured views' (width, height), the
    training width (the worker resizes views to a width, so a portrait view's longer side would
    enlarge it). Step counts and export sizes are left to the preset, for the worker's device."""
    return {"train_resolution": max(8, int(view_size[0]))} if view_size else {}
