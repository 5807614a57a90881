"""The built-in demo scene and style image: geometry, camera conventions, files on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ins_core.data import demo_scene as demo
from ins_core.errors import InputError

FOV = demo.DEMO_CAMERA_ANGLE_X


# ---- independent pinhole helpers (the test's own camera maths, not the module's) --------------


def pixel_ray(c2w: np.ndarray, i: int, j: int, width: int, height: int, fov_x: float) -> np.ndarray:
    """World direction of pixel (col i, row j) in the OpenGL convention (-Z forward, +Y up)."""
    f = 0.5 * width / math.tan(0.5 * fov_x)
    d_cam = np.array([(i + 0.5 - width / 2) / f, -(j + 0.5 - height / 2) / f, -1.0])
    d = c2w[:3, :3] @ d_cam
    return d / np.linalg.norm(d)


def project(c2w: np.ndarray, point: np.ndarray, width: int, height: int, fov_x: float) -> tuple[int, int]:
    """(col, row) of the pixel that sees a world point."""
    f = 0.5 * width / math.tan(0.5 * fov_x)
    p_cam = c2w[:3, :3].T @ (point - c2w[:3, 3])
    assert p_cam[2] < 0, "point is behind the camera"
    u = width / 2 + f * p_cam[0] / -p_cam[2]
    v = height / 2 - f * p_cam[1] / -p_cam[2]
    return int(math.floor(u)), int(math.floor(v))


def ray_hits_box(origin: np.ndarray, direction: np.ndarray, low, high) -> bool:
    t_near, t_far = 0.0, math.inf
    for axis in range(3):
        if abs(direction[axis]) < 1e-12:
            if not low[axis] <= origin[axis] <= high[axis]:
                return False
            continue
        t0 = (low[axis] - origin[axis]) / direction[axis]
        t1 = (high[axis] - origin[axis]) / direction[axis]
        t_near, t_far = max(t_near, min(t0, t1)), min(t_far, max(t0, t1))
    return t_near <= t_far


def camera_facing_sphere(distance: float = 1.6) -> np.ndarray:
    """A camera out on the sphere's free side (+x, -y, up), aimed at the sphere centre."""
    away = np.array([1.0, -1.0, 0.8]) / np.linalg.norm([1.0, -1.0, 0.8])
    return demo.look_at(demo.SPHERE_CENTER + distance * away, demo.SPHERE_CENTER)


# ---- geometry ------------------------------------------------------------------------------


def test_sdf_sign_inside_and_outside():
    assert demo.scene_sdf(demo.SPHERE_CENTER[None])[0] == pytest.approx(-demo.SPHERE_RADIUS, abs=1e-9)
    far = np.array([[5.0, 5.0, 5.0], [-4.0, 0.0, 0.0], [0.0, 0.0, 6.0]])
    assert np.all(demo.scene_sdf(far) > 2.0)
    # Just above the sphere's top (nothing else nearby) the distance is the gap itself.
    above = demo.SPHERE_CENTER + np.array([0.0, 0.0, demo.SPHERE_RADIUS + 0.02])
    assert demo.scene_sdf(above[None])[0] == pytest.approx(0.02, abs=1e-9)


def test_sdf_gradient_has_unit_length_near_the_surface():
    rng = np.random.default_rng(1)
    low, high = demo.scene_aabb()
    points = rng.uniform(low, high, size=(20000, 3))
    near = points[np.abs(demo.scene_sdf(points)) < 0.05]
    assert len(near) > 200
    h = 1e-4
    grad = np.stack(
        [(demo.scene_sdf(near + h * e) - demo.scene_sdf(near - h * e)) / (2 * h) for e in np.eye(3)], axis=-1
    )
    length = np.linalg.norm(grad, axis=-1)
    # Seams where two primitives meet are kinks; away from them the SDF is exact.
    assert np.mean(np.abs(length - 1.0) < 1e-2) > 0.95


def test_aabb_encloses_the_scene_tightly():
    low, high = (np.array(v) for v in demo.scene_aabb())
    assert np.all(low > -1.0) and np.all(high < 1.0)
    # Points on the box's faces are outside the scene: the box really encloses it.
    rng = np.random.default_rng(2)
    faces = rng.uniform(low, high, size=(3000, 3))
    axis = rng.integers(0, 3, size=len(faces))
    faces[np.arange(len(faces)), axis] = np.where(rng.random(len(faces)) < 0.5, low[axis], high[axis])
    distance = demo.scene_sdf(faces)
    assert np.all(distance > 0.0)
    assert distance.min() < 0.1  # and only a small margin away


# ---- cameras -------------------------------------------------------------------------------


def test_orbit_cameras_aim_at_the_origin_and_are_rigid():
    cameras = demo.orbit_cameras(12, 3.0, elevation_range_deg=(10, 60), seed=3)
    assert len(cameras) == 12
    for c2w in cameras:
        rot, eye = c2w[:3, :3], c2w[:3, 3]
        np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
        assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(-rot[:, 2], -eye / np.linalg.norm(eye), atol=1e-6)
        assert np.linalg.norm(eye) == pytest.approx(3.0)
        assert 10 - 1e-9 <= math.degrees(math.asin(eye[2] / 3.0)) <= 60 + 1e-9
        assert rot[2, 1] > 0  # camera +Y leans towards world +Z: images are upright
    azimuths = sorted(math.atan2(c[1, 3], c[0, 3]) for c in cameras)
    assert max(np.diff(azimuths + [azimuths[0] + 2 * math.pi])) < math.radians(90)  # spread all round


def test_orbit_cameras_depend_on_seed_only():
    same = demo.orbit_cameras(5, 2.0, seed=7), demo.orbit_cameras(5, 2.0, seed=7)
    np.testing.assert_array_equal(np.stack(same[0]), np.stack(same[1]))
    assert not np.allclose(np.stack(same[0]), np.stack(demo.orbit_cameras(5, 2.0, seed=8)))


@pytest.mark.parametrize("n, radius", [(0, 3.0), (4, -1.0)])
def test_orbit_cameras_reject_bad_input(n, radius):
    with pytest.raises(InputError):
        demo.orbit_cameras(n, radius)


# ---- rendering -----------------------------------------------------------------------------


def test_pixel_looking_at_sphere_centre_is_opaque_and_red():
    c2w = camera_facing_sphere()
    width, height = 40, 30
    image = demo.render_view(c2w, width, height, FOV)
    assert image.shape == (height, width, 4) and image.dtype == np.float32
    col, row = project(c2w, demo.SPHERE_CENTER, width, height, FOV)
    r, g, b, a = image[row, col]
    assert a == 1.0
    assert r > g + 0.15 and r > b + 0.15  # red/orange stripes, lit


def test_pixels_whose_rays_miss_the_scene_are_transparent():
    c2w = demo.orbit_cameras(1, demo.DEMO_CAMERA_RADIUS, elevation_range_deg=(20, 20))[0]
    size = 32
    image = demo.render_view(c2w, size, size, FOV)
    low, high = demo.scene_aabb()
    misses = [
        (i, j)
        for j in range(size)
        for i in range(size)
        if not ray_hits_box(c2w[:3, 3], pixel_ray(c2w, i, j, size, size, FOV), low, high)
    ]
    assert len(misses) > 50  # the corners and the top rows see only background
    alpha = np.array([image[j, i, 3] for i, j in misses])
    assert np.all(alpha == 0.0)
    assert np.all(image[..., 3] >= 0.0) and np.all(image <= 1.0)


def test_supersampling_gives_fractional_edges():
    c2w = camera_facing_sphere()
    alpha_aa = demo.render_view(c2w, 32, 32, FOV, supersample=3)[..., 3]
    alpha_hard = demo.render_view(c2w, 32, 32, FOV, supersample=1)[..., 3]
    assert np.any((alpha_aa > 0.05) & (alpha_aa < 0.95))
    assert set(np.unique(alpha_hard)) <= {0.0, 1.0}


def test_render_rejects_bad_camera():
    with pytest.raises(InputError):
        demo.render_view(np.eye(3), 8, 8, FOV)


# ---- files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # Equal counts, so only the seed keeps the test views off the training ones.
    return demo.write_demo_dataset(tmp_path_factory.mktemp("demo"), n_train=6, n_test=6, resolution=24, seed=5)


def load_split(root: Path, split: str) -> dict:
    return json.loads((root / f"transforms_{split}.json").read_text())


@pytest.mark.parametrize("split, count", [("train", 6), ("test", 6)])
def test_dataset_layout(dataset, split, count):
    meta = load_split(dataset, split)
    assert len(meta["frames"]) == count
    assert meta["w"] == meta["h"] == 24 and meta["cx"] == meta["cy"] == 12
    assert meta["fl_x"] == pytest.approx(12 / math.tan(0.5 * meta["camera_angle_x"]))
    assert meta["aabb"] == [list(v) for v in demo.scene_aabb()]
    for index, frame in enumerate(meta["frames"]):
        assert frame["file_path"] == f"./{split}/r_{index}.png"
        assert np.array(frame["transform_matrix"]).shape == (4, 4)
        with Image.open(dataset / frame["file_path"]) as image:
            assert image.format == "PNG" and image.mode == "RGBA" and image.size == (24, 24)


def test_sphere_centre_projects_onto_foreground(dataset):
    for split in ("train", "test"):
        meta = load_split(dataset, split)
        for frame in meta["frames"]:
            c2w = np.array(frame["transform_matrix"])
            col, row = project(c2w, demo.SPHERE_CENTER, meta["w"], meta["h"], meta["camera_angle_x"])
            alpha = np.asarray(Image.open(dataset / frame["file_path"]))[..., 3]
            assert alpha[row, col] > 0
            assert alpha[0, 0] == 0  # and the corner is background


def test_test_views_differ_from_training_views(dataset):
    eyes = {s: np.array([f["transform_matrix"] for f in load_split(dataset, s)["frames"]])[:, :3, 3]
            for s in ("train", "test")}
    gaps = np.linalg.norm(eyes["test"][:, None] - eyes["train"][None], axis=-1)
    assert gaps.min() > 0.1


def test_dataset_is_deterministic_per_seed(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    kwargs = dict(n_train=2, n_test=1, resolution=16)
    first = files(demo.write_demo_dataset(tmp_path / "a", seed=1, **kwargs))
    second = files(demo.write_demo_dataset(tmp_path / "b", seed=1, **kwargs))
    other = files(demo.write_demo_dataset(tmp_path / "c", seed=2, **kwargs))
    assert len(first) == 5 and first == second
    assert first["train/r_0.png"] != other["train/r_0.png"]


# ---- style image ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [("style.png", "PNG"), ("style.jpg", "JPEG")])
def test_style_image_size_format_and_palette(tmp_path, name, fmt):
    path = demo.write_demo_style(tmp_path / name, size=96, seed=0)
    with Image.open(path) as image:
        assert image.format == fmt and image.mode == "RGB" and image.size == (96, 96)
        pixels = np.asarray(image, dtype=np.float64) / 255.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 30
    assert np.all(pixels.reshape(-1, 3).std(axis=0) > 0.1)
    r, b = pixels[..., 0], pixels[..., 2]
    assert np.mean(b > r + 0.2) > 0.3  # mostly deep blues
    assert np.mean(r > b + 0.2) > 0.02  # with warm yellow swirls


def test_style_image_is_deterministic_and_seeded(tmp_path):
    a = demo.write_demo_style(tmp_path / "a.png", size=48, seed=4).read_bytes()
    b = demo.write_demo_style(tmp_path / "b.png", size=48, seed=4).read_bytes()
    c = demo.write_demo_style(tmp_path / "c.png", size=48, seed=5).read_bytes()
    assert a == b and a != c


def test_style_image_rejects_unknown_extension(tmp_path):
    with pytest.raises(InputError):
        demo.write_demo_style(tmp_path / "style.gif")
