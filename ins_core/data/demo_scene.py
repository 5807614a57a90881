"""The built-in demo scene and demo style image: no download, no external data.

The scene is a few analytic primitives (a striped sphere, a checkered rounded box, a striped
standing torus) on a round pedestal with ring texture. It is rendered by sphere tracing the
combined analytic SDF in numpy, with Lambertian shading from one fixed light plus ambient baked
into the colour (view-independent), a transparent background and supersampled edges.
World is Z-up (Blender convention) and the scene fits inside about [-1, 1]^3.

The style image is a procedural "painting": noise smeared along a swirling vector field
(line integral convolution) and mapped to a bold palette of deep blues and warm yellows.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ins_core.errors import InputError, require

# ----------------------------------------------------------------------------------------------
# Scene layout. The pedestal top is the floor every object rests on.

PEDESTAL_RADIUS = 0.8
PEDESTAL_HALF_HEIGHT = 0.075
PEDESTAL_TOP = -0.25
SPHERE_RADIUS = 0.28
SPHERE_CENTER = np.array([0.3, -0.3, PEDESTAL_TOP + SPHERE_RADIUS])
BOX_HALF_SIZE = np.array([0.2, 0.2, 0.24])
BOX_ROUNDING = 0.04
TORUS_MAJOR = 0.27
TORUS_MINOR = 0.09

# Fixed light, from above and to one side, so shading varies over every object.
LIGHT_DIR = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
DEMO_CAMERA_ANGLE_X = 0.6911112070083618  # the Blender default, as in NeRF-synthetic
DEMO_CAMERA_RADIUS = 2.7  # keeps the whole pedestal inside the frame at every elevation

_HIT_EPS = 1e-3
_MAX_STEPS = 96


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


# ----------------------------------------------------------------------------------------------
# Local-space shapes (exact SDFs, so the union stays a valid distance bound for sphere tracing).
# Points are component-major [3, N] inside this module: row slices are contiguous and the
# per-component arithmetic avoids slow reductions over a trailing axis of length 3.


def _rounded_box_nd(q: list[np.ndarray], rounding: float) -> np.ndarray:
    """Distance from a rounded box in any dimension, given q_i = |p_i| - (half_i - rounding)."""
    outside = np.sqrt(sum(np.square(np.maximum(qi, 0.0)) for qi in q))
    inside = np.minimum(functools.reduce(np.maximum, q), 0.0)
    return outside + inside - rounding


def _sphere_sdf(p: np.ndarray) -> np.ndarray:
    return np.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) - SPHERE_RADIUS


def _box_sdf(p: np.ndarray) -> np.ndarray:
    inner = BOX_HALF_SIZE - BOX_ROUNDING
    return _rounded_box_nd([np.abs(p[i]) - inner[i] for i in range(3)], BOX_ROUNDING)


def _torus_sdf(p: np.ndarray) -> np.ndarray:
    ring = np.hypot(p[0], p[1]) - TORUS_MAJOR
    return np.hypot(ring, p[2]) - TORUS_MINOR


def _pedestal_sdf(p: np.ndarray) -> np.ndarray:
    rounding = 0.03
    q = [np.hypot(p[0], p[1]) - (PEDESTAL_RADIUS - rounding), np.abs(p[2]) - (PEDESTAL_HALF_HEIGHT - rounding)]
    return _rounded_box_nd(q, rounding)


# ----------------------------------------------------------------------------------------------
# Local-space textures [3, N] -> [N, 3]: two clear colours per object, in crisp bands so a fit
# has detail to learn.


def _two_tone(mask: np.ndarray, a: tuple[float, float, float], b: tuple[float, float, float]) -> np.ndarray:
    return np.where(mask[:, None], np.array(a), np.array(b))


def _sphere_albedo(p: np.ndarray) -> np.ndarray:
    # Latitude bands: deep red and orange, both clearly in the red family.
    bands = np.sin(p[2] / SPHERE_RADIUS * 4.0 * math.pi) > 0.0
    return _two_tone(bands, (0.85, 0.1, 0.08), (0.95, 0.45, 0.1))


def _box_albedo(p: np.ndarray) -> np.ndarray:
    cells = np.floor((p + 1.0) / 0.1).astype(np.int64).sum(axis=0) % 2 == 0
    return _two_tone(cells, (0.12, 0.25, 0.8), (0.55, 0.8, 0.95))


def _torus_albedo(p: np.ndarray) -> np.ndarray:
    segments = np.sin(8.0 * np.arctan2(p[1], p[0])) > 0.0
    return _two_tone(segments, (0.15, 0.65, 0.25), (0.95, 0.85, 0.2))


def _pedestal_albedo(p: np.ndarray) -> np.ndarray:
    rings = np.sin(np.hypot(p[0], p[1]) * 45.0) > 0.0
    return _two_tone(rings, (0.78, 0.75, 0.7), (0.5, 0.46, 0.42))


@dataclass(frozen=True)
class _Primitive:
    """One object: an SDF and a texture in local space, placed by a rigid transform."""

    name: str
    center: np.ndarray  # world position of the local origin
    rotation: np.ndarray  # 3x3, world-from-local
    half_extent: np.ndarray  # local axis-aligned half size, for the scene box
    sdf: Callable[[np.ndarray], np.ndarray]
    albedo: Callable[[np.ndarray], np.ndarray]

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """World [3, N] -> local [3, N]: R^T (p - c)."""
        return self.rotation.T @ (points - self.center[:, None])

    def distance(self, points: np.ndarray) -> np.ndarray:
        return self.sdf(self.to_local(points))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.abs(self.rotation) @ self.half_extent
        return self.center - half, self.center + half


_TORUS_ROTATION = _rot_z(25.0) @ _rot_x(90.0)  # standing up, ring plane turned off the axes
PRIMITIVES: tuple[_Primitive, ...] = (
    _Primitive("sphere", SPHERE_CENTER, np.eye(3), np.full(3, SPHERE_RADIUS), _sphere_sdf, _sphere_albedo),
    _Primitive(
        "box",
        np.array([-0.33, -0.22, PEDESTAL_TOP + BOX_HALF_SIZE[2]]),
        _rot_z(30.0),
        BOX_HALF_SIZE,
        _box_sdf,
        _box_albedo,
    ),
    _Primitive(
        "torus",
        np.array([0.0, 0.36, PEDESTAL_TOP + TORUS_MAJOR + TORUS_MINOR]),
        _TORUS_ROTATION,
        np.array([TORUS_MAJOR + TORUS_MINOR, TORUS_MAJOR + TORUS_MINOR, TORUS_MINOR]),
        _torus_sdf,
        _torus_albedo,
    ),
    _Primitive(
        "pedestal",
        np.array([0.0, 0.0, PEDESTAL_TOP - PEDESTAL_HALF_HEIGHT]),
        np.eye(3),
        np.array([PEDESTAL_RADIUS, PEDESTAL_RADIUS, PEDESTAL_HALF_HEIGHT]),
        _pedestal_sdf,
        _pedestal_albedo,
    ),
)


def _union_sdf(points: np.ndarray) -> np.ndarray:
    """Scene distance at component-major points [3, N]."""
    return functools.reduce(np.minimum, (prim.distance(points) for prim in PRIMITIVES))


def scene_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance of the demo scene at world points [N, 3] (any [..., 3]); negative inside."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise InputError(f"scene_sdf needs points shaped [N, 3], got {points.shape}.")
    flat = np.ascontiguousarray(points.reshape(-1, 3).T)
    return _union_sdf(flat).reshape(points.shape[:-1])


def scene_aabb(margin: float = 0.05) -> tuple[list[float], list[float]]:
    """Axis-aligned box around all primitives, grown by `margin` on every side."""
    lows, highs = zip(*(prim.bounds() for prim in PRIMITIVES))
    low = np.min(lows, axis=0) - margin
    high = np.max(highs, axis=0) + margin
    return [float(v) for v in low], [float(v) for v in high]


# ----------------------------------------------------------------------------------------------
# Cameras.


def look_at(eye: np.ndarray, target: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Camera-to-world 4x4 (OpenGL/Blender: looks down local -Z, +Y up, +X right), Z-up world."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    norm = np.linalg.norm(right)
    require(norm > 1e-9, "look_at cannot aim a camera straight up or down; tilt it a little.")
    right /= norm
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def orbit_cameras(
    n: int,
    radius: float,
    elevation_range_deg: tuple[float, float] = (10.0, 60.0),
    seed: int = 0,
) -> list[np.ndarray]:
    """`n` cameras on a sphere of `radius` about the origin, all looking at it.

    Azimuths follow the golden-angle spiral (from a seed-chosen start) and elevations are spread
    so each camera covers an equal area of the band, which spaces the views evenly.
    """
    lo, hi = (float(v) for v in elevation_range_deg)
    require(n >= 1, f"orbit_cameras needs at least one camera, got n={n}.")
    require(radius > 0.0, f"orbit_cameras needs a positive radius, got {radius}.")
    require(
        -90.0 < lo <= hi < 90.0,
        f"elevation range must lie inside (-90, 90) degrees, got {elevation_range_deg}.",
    )
    start = np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    sin_lo, sin_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
    cameras = []
    for k in range(n):
        elevation = math.asin(sin_lo + (sin_hi - sin_lo) * (k + 0.5) / n)
        azimuth = start + k * golden
        ground = math.cos(elevation)
        eye = radius * np.array([ground * math.cos(azimuth), ground * math.sin(azimuth), math.sin(elevation)])
        cameras.append(look_at(eye))
    return cameras


def focal_length(width: int, camera_angle_x: float) -> float:
    """Pinhole focal length in pixels for a horizontal field of view."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


# ----------------------------------------------------------------------------------------------
# Rendering.


def _camera_rays(
    c2w: np.ndarray, width: int, height: int, camera_angle_x: float, supersample: int
) -> tuple[np.ndarray, np.ndarray]:
    """Eye [3] and unit world directions [3, M] through the sub-pixel centres, row-major."""
    f = focal_length(width, camera_angle_x)
    cols = (np.arange(width * supersample) + 0.5) / supersample
    rows = (np.arange(height * supersample) + 0.5) / supersample
    x, y = np.meshgrid((cols - 0.5 * width) / f, -(rows - 0.5 * height) / f)
    dirs = c2w[:3, :3] @ np.stack([x.ravel(), y.ravel(), -np.ones(x.size)])
    return c2w[:3, 3].copy(), dirs / np.sqrt((dirs * dirs).sum(axis=0))


def _ray_box(
    eye: np.ndarray, dirs: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry (clamped to 0) and exit distances; entry > exit means a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (low[:, None] - eye[:, None]) / dirs
        t1 = (high[:, None] - eye[:, None]) / dirs
    t_near = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf).max(axis=0)
    t_far = np.nan_to_num(np.maximum(t0, t1), nan=np.inf).min(axis=0)
    return np.maximum(t_near, 0.0), t_far


def _sphere_trace(eye: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit mask and hit distance per ray. Only still-marching rays are evaluated (speed)."""
    low, high = (np.array(v) for v in scene_aabb())
    t, t_far = _ray_box(eye, dirs, low, high)
    hit = np.zeros(t.shape, dtype=bool)
    active = np.flatnonzero(t <= t_far)
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            break
        ta = t[active]
        dist = _union_sdf(eye[:, None] + ta * dirs[:, active])
        done = dist < _HIT_EPS
        hit[active[done]] = True
        ta += np.where(done, 0.0, dist)
        t[active] = ta
        active = active[~done & (ta <= t_far[active])]
    return hit, t


def _normals(points: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Unit SDF gradient [N, 3] at points [3, N] by the tetrahedron rule (4 evaluations, not 6)."""
    offsets = np.array([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=np.float64)
    grad = sum(o[:, None] * _union_sdf(points + h * o[:, None]) for o in offsets)
    return (grad / np.maximum(np.sqrt((grad * grad).sum(axis=0)), 1e-12)).T


def _shade(points: np.ndarray) -> np.ndarray:
    """RGB [N, 3] at surface points [3, N]: nearest primitive's albedo, Lambert + ambient."""
    owner = np.argmin(np.stack([prim.distance(points) for prim in PRIMITIVES]), axis=0)
    albedo = np.zeros((points.shape[1], 3))
    for index, prim in enumerate(PRIMITIVES):
        mask = owner == index
        albedo[mask] = prim.albedo(prim.to_local(points[:, mask]))
    normals = _normals(points)
    diffuse = np.clip(normals @ LIGHT_DIR, 0.0, None)
    ambient = 0.25 + 0.1 * normals[:, 2]  # brighter facing the sky, so unlit sides keep shape
    return np.clip(albedo * (ambient + 0.8 * diffuse)[:, None], 0.0, 1.0)


def render_view(
    c2w: np.ndarray, width: int, height: int, camera_angle_x: float, supersample: int = 2
) -> np.ndarray:
    """Render the demo scene: [H, W, 4] float32 in [0, 1], straight (not premultiplied) alpha."""
    c2w = np.asarray(c2w, dtype=np.float64)
    require(c2w.shape == (4, 4), f"render_view needs a 4x4 camera-to-world matrix, got {c2w.shape}.")
    require(width >= 1 and height >= 1, f"render_view needs a positive image size, got {width}x{height}.")
    require(0.0 < camera_angle_x < math.pi, f"camera_angle_x must be in (0, pi) radians, got {camera_angle_x}.")
    require(supersample >= 1, f"supersample must be at least 1, got {supersample}.")
    eye, dirs = _camera_rays(c2w, width, height, camera_angle_x, supersample)
    hit, t = _sphere_trace(eye, dirs)
    rgba = np.zeros((t.size, 4))
    rgba[hit, :3] = _shade(eye[:, None] + t[hit] * dirs[:, hit])
    rgba[hit, 3] = 1.0
    return _downsample(rgba.reshape(height * supersample, width * supersample, 4), supersample)


def _downsample(rgba: np.ndarray, s: int) -> np.ndarray:
    """Box-filter s x s samples into one pixel; colour is averaged over covered samples only."""
    h, w = rgba.shape[0] // s, rgba.shape[1] // s
    blocks = rgba.reshape(h, s, w, s, 4)
    coverage = blocks[..., 3].sum(axis=(1, 3))
    colour = (blocks[..., :3] * blocks[..., 3:]).sum(axis=(1, 3)) / np.maximum(coverage, 1e-12)[..., None]
    out = np.concatenate([colour, (coverage / (s * s))[..., None]], axis=-1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Writing files.


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temp file in the same folder, then rename, so readers never see a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain per-process name (not mkstemp) so the file gets the usual umask permissions.
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_image(path: Path, pixels: np.ndarray, fmt: str) -> None:
    image = Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8))
    options = {"quality": 95} if fmt == "JPEG" else {}
    _atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))


def _write_split(out_dir: Path, split: str, cameras: list[np.ndarray], resolution: int) -> None:
    f = focal_length(resolution, DEMO_CAMERA_ANGLE_X)
    low, high = scene_aabb()
    frames = []
    for index, c2w in enumerate(cameras):
        rel = f"{split}/r_{index}.png"
        _save_image(out_dir / rel, render_view(c2w, resolution, resolution, DEMO_CAMERA_ANGLE_X), "PNG")
        frames.append({"file_path": f"./{rel}", "transform_matrix": c2w.tolist()})
    meta = {
        "camera_angle_x": DEMO_CAMERA_ANGLE_X,
        "fl_x": f,
        "fl_y": f,
        "cx": resolution / 2,
        "cy": resolution / 2,
        "w": resolution,
        "h": resolution,
        "aabb": [low, high],
        "frames": frames,
    }
    text = json.dumps(meta, indent=2)
    _atomic_write(out_dir / f"transforms_{split}.json", lambda tmp: Path(tmp).write_text(text))


def write_demo_dataset(
    out_dir: str | os.PathLike, n_train: int = 40, n_test: int = 8, resolution: int = 64, seed: int = 0
) -> Path:
    """Render the demo scene to a NeRF-synthetic folder (RGBA PNGs + transforms_*.json)."""
    require(n_train >= 1, f"the demo dataset needs at least one training view, got n_train={n_train}.")
    require(n_test >= 0, f"n_test cannot be negative, got {n_test}.")
    require(resolution >= 8, f"the demo resolution must be at least 8 pixels, got {resolution}.")
    out = Path(out_dir)
    # A different seed turns the test spiral so its views fall between the training ones.
    splits = {"train": (n_train, seed), "test": (n_test, seed + 1)}
    for split, (count, split_seed) in splits.items():
        cameras = orbit_cameras(count, DEMO_CAMERA_RADIUS, seed=split_seed) if count else []
        _write_split(out, split, cameras, resolution)
    return out


# ----------------------------------------------------------------------------------------------
# Style image.

# Bold limited palette, dark to light: night blues, then warm yellows for the swirls' hearts.
_PALETTE = np.array(
    [
        [0.04, 0.07, 0.22],
        [0.09, 0.18, 0.45],
        [0.16, 0.33, 0.66],
        [0.38, 0.58, 0.82],
        [0.86, 0.66, 0.2],
        [0.98, 0.88, 0.45],
    ]
)
_STYLE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _swirl_field(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit flow directions [size, size, 2] (x, y) and a glow map [size, size] in [0, 1].

    A gentle wavy drift plus a few Gaussian-weighted vortices, whose centres also glow.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    flow = np.stack([np.ones_like(x), 0.5 * np.sin(2.0 * math.pi * (1.5 * x + 0.7 * y))], axis=-1)
    glow = np.zeros_like(x)
    for _ in range(4):
        cx, cy = rng.uniform(0.15, 0.85, size=2)
        sigma = rng.uniform(0.08, 0.16)
        spin = rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 7.0)
        dx, dy = x - cx, y - cy
        weight = np.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))
        flow += spin * weight[..., None] * np.stack([-dy, dx], axis=-1) / sigma
        glow = np.maximum(glow, np.exp(-(dx * dx + dy * dy) / (2.0 * (0.6 * sigma) ** 2)))
    flow /= np.maximum(np.linalg.norm(flow, axis=-1, keepdims=True), 1e-9)
    return flow, glow


def _sample_nearest(grid: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """grid[y, x] at the nearest pixel to each (x, y) in `pos`, clamped to the border."""
    ix = np.clip(np.rint(pos[..., 0]).astype(np.int64), 0, grid.shape[1] - 1)
    iy = np.clip(np.rint(pos[..., 1]).astype(np.int64), 0, grid.shape[0] - 1)
    return grid[iy, ix]


def _line_integral_convolution(noise: np.ndarray, flow: np.ndarray, steps: int) -> np.ndarray:
    """Average the noise along streamlines both ways: streaks that read as brush strokes."""
    size = noise.shape[0]
    start = np.stack(np.mgrid[0:size, 0:size][::-1], axis=-1).astype(np.float64)  # (x, y)
    total = noise.copy()
    for sign in (1.0, -1.0):
        pos = start.copy()
        for _ in range(steps):
            pos += sign * _sample_nearest(flow, pos)
            total += _sample_nearest(noise, pos)
    return total / (2 * steps + 1)


def _stroke_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """White noise in blocks a few pixels wide, so strokes have a visible width."""
    cell = max(2, size // 96)
    coarse = rng.random((size // cell + 1, size // cell + 1))
    return np.kron(coarse, np.ones((cell, cell)))[:size, :size]


def style_pixels(size: int = 256, seed: int = 0) -> np.ndarray:
    """The demo style painting as [size, size, 3] float in [0, 1]."""
    require(size >= 16, f"the style image must be at least 16 pixels, got {size}.")
    rng = np.random.default_rng(seed)
    flow, glow = _swirl_field(size, rng)
    strokes = _line_integral_convolution(_stroke_noise(size, rng), flow, steps=max(4, size // 20))
    strokes = (strokes - strokes.mean()) / max(strokes.std(), 1e-9)  # unit contrast at any size
    # Tone picks the palette band: mostly blue, warm where the swirls glow; strokes jitter it.
    tone = 0.35 + 0.6 * glow + 0.12 * strokes
    index = np.clip((tone * len(_PALETTE)).astype(np.int64), 0, len(_PALETTE) - 1)
    shade = 0.85 + 0.1 * np.clip(strokes, -1.5, 1.5)  # light and dark within each stroke
    return np.clip(_PALETTE[index] * shade[..., None], 0.0, 1.0)


def write_demo_style(path: str | os.PathLike, size: int = 256, seed: int = 0) -> Path:
    """Write the demo style image; the extension (.png, .jpg, .jpeg) picks the format."""
    out = Path(path)
    fmt = _STYLE_FORMATS.get(out.suffix.lower())
    require(fmt is not None, f"the style image path must end in .png, .jpg or .jpeg, got {out.name!r}.")
    _save_image(out, style_pixels(size, seed), fmt)
    return out
