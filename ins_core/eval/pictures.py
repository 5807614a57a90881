"""Pictures people look at: depth maps, comparison grids, line charts, videos.

Only Pillow and numpy are used (plus the ffmpeg binary shipped by imageio-ffmpeg for .mp4),
so this module works inside Blender's Python as well as on a headless machine.
Every file is written to a temporary name in the target folder and then renamed, so a crash
or a reader polling the folder never sees half a file.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ins_core.errors import InputError, require

MASK_GREY = (64, 64, 64)  # neutral dark grey for pixels with no surface
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
VIDEO_EXTENSIONS = (".gif", ".mp4")

# Google's degree-5 polynomial fit of the Turbo colormap, one row per power of t and one
# column per channel. Copyright 2019 Google LLC, Apache-2.0 (Anton Mikhailov, Ruofei Du).
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 0.09140261, 0.10667330],
        [4.61539260, 2.19418839, 12.64194608],
        [-42.66032258, 4.84296658, -60.58204836],
        [132.13108234, -14.18503333, 110.36276771],
        [-152.94239396, 4.27729857, -89.90310912],
        [59.28637943, 2.82956604, 27.34824973],
    ]
)

# Ten easily told apart line colours (the Tableau 10 palette).
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


# --- files -------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the body succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix so tools that pick a format from the name (ffmpeg) still can.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """An image as uint8 of shape [H, W] or [H, W, C] with C in (1, 3, 4); floats are read as [0, 1]."""
    array = np.asarray(image)
    require(
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)),
        f"An image must have shape [H, W] or [H, W, 1|3|4], not {array.shape}; "
        "drop extra axes or channels first.",
    )
    if array.dtype == np.uint8:
        return array
    require(
        np.issubdtype(array.dtype, np.floating),
        f"An image must be uint8 or float in [0, 1], not {array.dtype}; convert it first.",
    )
    return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """An image as uint8 [H, W, 3]: grey is repeated, alpha is dropped."""
    array = _to_uint8(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def _to_pil(image: np.ndarray) -> Image.Image:
    array = _to_uint8(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))  # mode L, RGB or RGBA from the shape


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 or float [0, 1] image with 1 (grey), 3 (RGB) or 4 (RGBA) channels as PNG."""
    picture = _to_pil(image)
    with _atomic_output(path) as tmp:
        picture.save(tmp, format="PNG")


# --- depth -------------------------------------------------------------------------------


def turbo(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to Turbo colours, float [..., 3] in [0, 1]."""
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([t**k for k in range(len(_TURBO_COEFFS))], axis=-1)
    return np.clip(powers @ _TURBO_COEFFS, 0.0, 1.0)


def colorize_depth(
    depth: np.ndarray,
    opacity: np.ndarray | None = None,
    near: float | None = None,
    far: float | None = None,
) -> np.ndarray:
    """Colour a depth map [H, W] with Turbo (near is dark blue, far is dark red) as uint8 [H, W, 3].

    Pixels with opacity below 0.5 (or a non-finite depth) show no surface and are drawn
    dark grey. `near` and `far` default to the 1st and 99th percentiles of the other pixels,
    so a few stray samples do not wash out the picture; pass near > far to reverse the colours.
    """
    depth = _as_map(depth, "depth map").astype(np.float64)
    valid = np.isfinite(depth)
    if opacity is not None:
        opacity = _as_map(opacity, "opacity map")
        require(
            opacity.shape == depth.shape,
            f"The opacity map has shape {opacity.shape} but the depth map has shape {depth.shape}; "
            "pass maps of the same size.",
        )
        valid &= opacity >= 0.5

    image = np.empty(depth.shape + (3,), dtype=np.uint8)
    image[:] = MASK_GREY
    if not valid.any():
        return image
    lo, hi = _depth_range(depth[valid], near, far)
    colours = turbo((depth[valid] - lo) / (hi - lo))
    image[valid] = (colours * 255.0 + 0.5).astype(np.uint8)
    return image


def _as_map(array: np.ndarray, name: str) -> np.ndarray:
    """A per-pixel map as [H, W]; renderers often keep a trailing channel axis of 1."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    require(array.ndim == 2, f"A {name} must have shape [H, W], not {array.shape}; squeeze extra axes.")
    return array


def _depth_range(values: np.ndarray, near: float | None, far: float | None) -> tuple[float, float]:
    lo = float(np.percentile(values, 1.0)) if near is None else float(near)
    hi = float(np.percentile(values, 99.0)) if far is None else float(far)
    if hi == lo:  # flat depth: any non-zero span shows it as one colour
        hi = lo + max(abs(lo) * 1e-6, 1e-6)
    return lo, hi


# --- grids -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = _font().getbbox(text)
    return int(right - left), int(bottom - top)


def _line_height() -> int:
    return _text_size("Ag")[1]


def _fit_text(text: str, width: int) -> str:
    """Shorten `text` with an ellipsis until it fits in `width` pixels."""
    if _text_size(text)[0] <= width:
        return text
    while text and _text_size(text + "...")[0] > width:
        text = text[:-1]
    return text + "..." if text else ""


LABEL_LINES = 2  # a label wraps onto this many lines at most, then is shortened


def _wrap_text(text: str, width: int, max_lines: int = LABEL_LINES) -> list[str]:
    """`text` in lines of at most `width` pixels, broken after spaces, hyphens and underscores
    (a painting's file name is often one long hyphenated word); the last line shortened if needed."""
    pieces = re.findall(r"[^\s\-_]*[\-_]?\s*", text)
    lines = [""]
    for piece in filter(None, pieces):
        if lines[-1] and _text_size((lines[-1] + piece).rstrip())[0] > width:
            lines.append("")
        lines[-1] += piece
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + ["".join(lines[max_lines - 1:])]
    return [_fit_text(line.rstrip(), width) for line in lines]


def image_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    columns: int | None = None,
) -> np.ndarray:
    """Lay images out in a grid, each with a caption band underneath when labels are given.

    Images may differ in size and format (see `save_png`); each sits centred in a cell as
    large as the largest one. `columns` defaults to all images in one row. Returns uint8 RGB.
    """
    require(len(images) > 0, "image_grid needs at least one image; pass a non-empty list.")
    require(
        labels is None or len(labels) == len(images),
        f"image_grid got {len(images)} images but {len(labels or [])} labels; pass one label per image.",
    )
    columns = len(images) if columns is None else columns
    require(columns >= 1, f"image_grid needs at least one column, not {columns}; pass columns >= 1.")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)

    tiles = [_to_rgb8(image) for image in images]
    cell_h = max(tile.shape[0] for tile in tiles)
    cell_w = max(tile.shape[1] for tile in tiles)
    pad = 4
    wrapped = [_wrap_text(str(label), cell_w) for label in labels] if labels is not None else []
    band = max(len(lines) for lines in wrapped) * _line_height() + 2 * pad if labels is not None else 0
    step_x, step_y = cell_w + pad, cell_h + band + pad

    canvas = Image.new("RGB", (columns * step_x + pad, rows * step_y + pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, tile in enumerate(tiles):
        x0 = pad + (index % columns) * step_x
        y0 = pad + (index // columns) * step_y
        offset = ((cell_w - tile.shape[1]) // 2, (cell_h - tile.shape[0]) // 2)
        canvas.paste(Image.fromarray(tile), (x0 + offset[0], y0 + offset[1]))
        for line_number, text in enumerate(wrapped[index] if labels is not None else []):
            text_x = x0 + (cell_w - _text_size(text)[0]) // 2
            draw.text((text_x, y0 + cell_h + pad + line_number * _line_height()), text, fill=INK, font=_font())
    return np.asarray(canvas)


def with_caption(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The image with a band of text lines above it. The canvas widens to the longest line, so a
    small image (a quick run's renders) keeps its whole caption; the image sits centred below."""
    tile = _to_rgb8(image)
    pad = 4
    band = len(lines) * (_line_height() + pad) + pad
    width = max([tile.shape[1]] + [_text_size(line)[0] + 2 * pad for line in lines])
    canvas = Image.new("RGB", (width, tile.shape[0] + band), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * (_line_height() + pad)), line, fill=INK, font=_font())
    canvas.paste(Image.fromarray(tile), ((width - tile.shape[1]) // 2, band))
    return np.asarray(canvas)


# --- charts ------------------------------------------------------------------------------

CHART_SIZE = (800, 500)
GRID_GREY = (225, 225, 225)


def _nice_step(span: float, target_ticks: int = 6) -> float:
    """A 1, 2 or 5 times a power of ten step giving about `target_ticks` ticks over `span`."""
    raw = span / max(target_ticks - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10.0 * magnitude


def _linear_axis(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Range rounded out to whole ticks, and the ticks."""
    if hi - lo <= 0:
        half = max(abs(lo) * 0.5, 0.5)
        lo, hi = lo - half, hi + half
    step = _nice_step(hi - lo)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    # Round away float noise such as 0.30000000000000004 so labels stay short.
    ticks = [round(k * step, 12) for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


def _log_axis(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """For a range in log10 units: the range rounded out to whole decades, and decade ticks."""
    first = math.floor(lo)
    # Every decade up to 8 of them, then every other one and so on, so labels never crowd.
    stride = max(1, math.ceil((math.ceil(hi) - first) / 8))
    count = max(1, math.ceil((hi - first) / stride))
    ticks = [float(first + k * stride) for k in range(count + 1)]
    return ticks[0], ticks[-1], ticks


def _tick_label(value: float, log: bool) -> str:
    return f"{10.0 ** value:g}" if log else f"{value:g}"


def _chart_points(series: dict[str, Sequence[tuple[float, float]]], log_y: bool) -> dict[str, np.ndarray]:
    """Each series as an [n, 2] array of finite points, y in log10 units for a log axis."""
    result = {}
    for name, points in series.items():
        array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        keep = np.isfinite(array).all(axis=1)
        if log_y:
            keep &= array[:, 1] > 0  # zero or negative values have no place on a log axis
        array = array[keep]
        if log_y:
            array[:, 1] = np.log10(array[:, 1])
        result[name] = array
    return result


def _draw_rotated_text(canvas: Image.Image, text: str, centre: tuple[int, int]) -> None:
    width, height = _text_size(text)
    label = Image.new("RGB", (width + 4, height + 6), BACKGROUND)
    ImageDraw.Draw(label).text((2, 1), text, fill=INK, font=_font())
    label = label.rotate(90, expand=True)
    canvas.paste(label, (centre[0] - label.width // 2, centre[1] - label.height // 2))


def plot_curves(
    path: str | os.PathLike,
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
) -> None:
    """Draw (x, y) series as a line chart PNG with axes, numbered ticks, grid and legend.

    Non-finite points are skipped, and so are points with y <= 0 when `log_y` is set.
    """
    require(len(series) > 0, "plot_curves needs at least one series; pass a non-empty dict.")
    data = _chart_points(series, log_y)
    stacked = np.concatenate(list(data.values()))
    if len(stacked):
        (x_lo, y_lo), (x_hi, y_hi) = stacked.min(axis=0), stacked.max(axis=0)
    else:
        x_lo, x_hi, y_lo, y_hi = 0.0, 1.0, 0.0, 1.0
    x_lo, x_hi, x_ticks = _linear_axis(x_lo, x_hi)
    y_lo, y_hi, y_ticks = _log_axis(y_lo, y_hi) if log_y else _linear_axis(y_lo, y_hi)

    canvas = Image.new("RGB", CHART_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    line_h = _line_height()
    y_label_w = max(_text_size(_tick_label(t, log_y))[0] for t in y_ticks)
    legend_w = max(_text_size(name)[0] for name in series) + 40
    left = 20 + line_h + y_label_w + 10
    right = CHART_SIZE[0] - legend_w - 20
    top = 20 + 2 * line_h
    bottom = CHART_SIZE[1] - (3 * line_h + 25)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_lo) / (x_hi - x_lo) * (right - left),
            bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top),
        )

    for tick in x_ticks:
        px = to_px(tick, y_lo)[0]
        draw.line([(px, top), (px, bottom)], fill=GRID_GREY)
        draw.line([(px, bottom), (px, bottom + 4)], fill=INK)
        text = _tick_label(tick, False)
        draw.text((px - _text_size(text)[0] / 2, bottom + 7), text, fill=INK, font=_font())
    for tick in y_ticks:
        py = to_px(x_lo, tick)[1]
        draw.line([(left, py), (right, py)], fill=GRID_GREY)
        draw.line([(left - 4, py), (left, py)], fill=INK)
        text = _tick_label(tick, log_y)
        draw.text((left - 7 - _text_size(text)[0], py - line_h / 2 - 1), text, fill=INK, font=_font())
    draw.rectangle([left, top, right, bottom], outline=INK)

    for index, (name, points) in enumerate(data.items()):
        colour = PALETTE[index % len(PALETTE)]
        pixels = [to_px(x, y) for x, y in points[np.argsort(points[:, 0], kind="stable")]]
        if len(pixels) >= 2:
            draw.line(pixels, fill=colour, width=2, joint="curve")
        elif pixels:  # a single point has no line, so mark it
            (px, py), r = pixels[0], 3
            draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)
        legend_y = top + 5 + index * (line_h + 8)
        draw.line([(right + 15, legend_y + line_h / 2), (right + 35, legend_y + line_h / 2)], fill=colour, width=3)
        draw.text((right + 40, legend_y), name, fill=INK, font=_font())

    draw.text(((left + right - _text_size(title)[0]) / 2, 12), title, fill=INK, font=_font())
    draw.text(((left + right - _text_size(xlabel)[0]) / 2, bottom + 12 + line_h), xlabel, fill=INK, font=_font())
    _draw_rotated_text(canvas, ylabel, (12 + line_h // 2, (top + bottom) // 2))
    save_png(path, np.asarray(canvas))


# --- videos ------------------------------------------------------------------------------


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: int = 24) -> None:
    """Write frames (uint8 or float [0, 1], all one size) as a .gif or .mp4, chosen by extension.

    GIFs loop forever; Pillow merges identical consecutive frames into one longer frame.
    MP4s are H.264 yuv420p (plays everywhere), padded by one edge pixel if a side is odd.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise InputError(
            f"Cannot write video {os.fspath(path)!r}: use one of the extensions {', '.join(VIDEO_EXTENSIONS)}."
        )
    require(len(frames) > 0, f"No frames to write to {os.fspath(path)!r}; render at least one frame.")
    require(fps > 0, f"The frame rate must be positive, not {fps}; pass fps >= 1.")
    rgb = [_to_rgb8(frame) for frame in frames]
    shapes = {frame.shape for frame in rgb}
    require(len(shapes) == 1, f"Video frames must all have one size, not {sorted(shapes)}; resize them first.")
    with _atomic_output(path) as tmp:
        if suffix == ".gif":
            _write_gif(tmp, rgb, fps)
        else:
            _write_mp4(tmp, rgb, fps)


def _write_gif(path: Path, frames: list[np.ndarray], fps: int) -> None:
    pictures = [Image.fromarray(frame) for frame in frames]
    pictures[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """yuv420p halves the chroma resolution, so both sides must be even."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frame


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio_ffmpeg  # imported here: only .mp4 output needs the ffmpeg binary

    height, width = _pad_even(frames[0]).shape[:2]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        os.fspath(path),
    ]  # fmt: skip
    # stderr goes to a file, not a pipe: a full pipe would block ffmpeg while we block on stdin.
    with tempfile.TemporaryFile() as log:
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log) as process:
            try:
                for frame in frames:
                    process.stdin.write(np.ascontiguousarray(_pad_even(frame)).tobytes())
                process.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg quit early; its exit status and log say why
            status = process.wait()
        if status != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:].strip()
            raise RuntimeError(f"ffmpeg failed with exit status {status} writing {path.name}: {tail}")
