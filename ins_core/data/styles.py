"""Style images: read whatever a user is likely to pick, convert what can be converted.

Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB; transparency is laid over
white; very large paintings are reduced. What cannot be used (missing, unreadable, too small) is
refused in one sentence that names the file and the fix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .images import open_image

MIN_STYLE_SIDE = 64
HUGE_STYLE_SIDE = 8192
# Beyond this many pixels decoding alone could exhaust memory (Pillow's own bomb limit is ~179 MP).
MAX_STYLE_PIXELS = 400_000_000


@dataclass
class StyleImage:
    name: str
    pixels: np.ndarray  # [H, W, 3] float32 in [0, 1]
    notes: list[str] = field(default_factory=list)  # conversions made, for the log and the manifest


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        notes.append("16-bit image reduced to 8 bits")
        image = image.point(lambda v: v / 257).convert("L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        notes.append("transparent parts laid over white")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif mode == "P":
        notes.append("palette image converted to RGB")
    return image.convert("RGB")


def load_style_image(path: str | Path, working_size: int = 512, enlarge: bool = False) -> StyleImage:
    """A style image as float RGB whose longer side is at most `working_size` pixels (exactly that
    with `enlarge`, a smaller image scaled up)."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = open_image(path, "style image")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise InputError(f"Style image '{path}' is too large to load safely; save it at most {HUGE_STYLE_SIDE} px on its longer side.") from None
    width, height = image.size
    if width * height > MAX_STYLE_PIXELS:
        raise InputError(f"Style image '{path}' is {width}x{height}, too large to load safely; save it at most {HUGE_STYLE_SIDE} px on its longer side.")
    if min(width, height) < MIN_STYLE_SIDE:
        raise InputError(f"Style image '{path}' is only {width}x{height}; use a painting at least {MIN_STYLE_SIDE} px on its shorter side so its brush strokes can be seen.")
    notes: list[str] = []
    if max(width, height) > HUGE_STYLE_SIDE:
        notes.append(f"very large image ({width}x{height}) reduced")
    rgb = _to_rgb(image, notes)
    scale = working_size / max(width, height)
    if scale < 1 or (enlarge and scale > 1):
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    return StyleImage(path.stem, np.asarray(rgb, dtype=np.float32) / 255.0, notes)


def keep_style_copies(styles: list[StyleImage], sources: list[str | Path], run_root: Path) -> list[dict]:
    """Write each style as the run uses it to RUN/styles (so a run needs none of the user's files
    to resume or be evaluated); its records for the run's config."""
    (run_root / "styles").mkdir(parents=True, exist_ok=True)
    records = []
    for index, (style, source) in enumerate(zip(styles, sources)):
        name = f"{index:02d}_{style.name}.png"
        Image.fromarray((style.pixels * 255).round().astype(np.uint8)).save(run_root / "styles" / name)
        records.append({"name": style.name, "file": f"styles/{name}", "source": str(Path(source).resolve()), "notes": style.notes})
    return records


def kept_style(run_root: Path, record: dict) -> np.ndarray:
    """A style a run kept (`keep_style_copies`), as float RGB [H, W, 3] in [0, 1]."""
    return np.asarray(Image.open(run_root / record["file"]).convert("RGB"), dtype=np.float32) / 255.0
