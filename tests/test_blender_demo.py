"""The demo's overview picture: which training view it shows, and how the four pictures are laid out.

(`make demo` itself is the main job; it runs the whole pipeline and is not repeated here.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("bpy")

from ins_blender.demo import nearest_training_view, write_overview  # noqa: E402
from ins_core.data.demo_scene import write_demo_style  # noqa: E402

pytestmark = pytest.mark.blender


def camera_at(x: float, y: float, z: float) -> list[list[float]]:
    return [[1.0, 0.0, 0.0, x], [0.0, 1.0, 0.0, y], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]]


def test_the_training_view_nearest_the_scene_camera_is_shown(tmp_path):
    frames = [{"file_path": f"./train/r_{k}.png", "transform_matrix": camera_at(*position)}
              for k, position in enumerate([(0.0, 1.5, 0.3), (8.0, 1.0, 4.0), (-4.0, 0.0, 1.0)])]
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": frames}))
    # Nearer r_0's position but looking from r_1's side: the direction decides, not the distance.
    assert nearest_training_view(tmp_path, (1.5, 0.8, 0.6)) == tmp_path / "./train/r_1.png"
    assert nearest_training_view(tmp_path, (0.2, 5.0, 1.0)) == tmp_path / "./train/r_0.png"


def test_the_overview_shows_four_pictures_at_one_size_over_white(tmp_path):
    write_demo_style(tmp_path / "style.png", size=48)
    view = np.zeros((32, 32, 4), np.uint8)  # a transparent view with a red square
    view[8:24, 8:24] = (255, 0, 0, 255)
    Image.fromarray(view).save(tmp_path / "view.png")
    Image.fromarray(np.full((64, 64, 3), (0, 0, 255), np.uint8)).save(tmp_path / "cycles_mesh.png")
    engine = np.zeros((64, 64, 4), np.uint8)  # transparent film, a green object in the middle
    engine[16:48, 16:48] = (0, 255, 0, 255)
    Image.fromarray(engine).save(tmp_path / "ins_engine.png")

    path = write_overview(tmp_path, tmp_path / "view.png", size=64)
    overview = np.asarray(Image.open(path).convert("RGB")).astype(int)
    pad, cell = 4, 64  # image_grid's layout: every tile scaled to the cell, captions below
    assert overview.shape[1] == 4 * (cell + pad) + pad

    def tile(k: int) -> np.ndarray:
        x0 = pad + k * (cell + pad)
        return overview[pad : pad + cell, x0 : x0 + cell]

    view_tile, style_tile, mesh_tile, engine_tile = (tile(k) for k in range(4))
    assert (view_tile[2, 2] > 250).all() and (view_tile[32, 32] == (255, 0, 0)).all()  # 32 px shown at 64
    assert style_tile.std() > 10  # the painting, not an empty cell
    assert (np.abs(mesh_tile[32, 32] - (0, 0, 255)) <= 1).all()
    assert (engine_tile[2, 2] > 250).all() and (engine_tile[32, 32] == (0, 255, 0)).all()
