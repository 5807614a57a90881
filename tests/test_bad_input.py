"""Every bad input gives one sentence naming the file and field, exit status 2, and changes nothing."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ins_core.cli import main
from ins_core.data.dataset import load_dataset
from ins_core.errors import InputError

from scenes import sphere_views, write_dataset


@pytest.fixture(scope="module")
def good_data(tmp_path_factory):
    intr, views = sphere_views(6, 16)
    return write_dataset(tmp_path_factory.mktemp("good") / "data", intr, views)


@pytest.fixture
def data(good_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(good_data, copy)
    return copy


def _transforms(data):
    return json.loads((data / "transforms_train.json").read_text())


def _write_transforms(data, content):
    (data / "transforms_train.json").write_text(content if isinstance(content, str) else json.dumps(content))


def _fit(data, out, capsys):
    status = main(["fit", "--data", str(data), "--out", str(out), "--steps", "2", "--batch-rays", "16", "--device", "cpu"])
    err = capsys.readouterr().err
    return status, err


def _expect_error(data, tmp_path, capsys, *fragments):
    status, err = _fit(data, tmp_path / "out", capsys)
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_missing_transforms_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path / "empty", tmp_path, capsys, "transforms_train.json")


def test_malformed_json_names_line_and_column(data, tmp_path, capsys):
    _write_transforms(data, '{"camera_angle_x": 0.7,\n "frames": [}')
    _expect_error(data, tmp_path, capsys, "transforms_train.json", "line 2")


def test_missing_focal_length(data, tmp_path, capsys):
    content = _transforms(data)
    del content["camera_angle_x"]
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "camera_angle_x")


def test_frame_without_transform_matrix(data, tmp_path, capsys):
    content = _transforms(data)
    del content["frames"][2]["transform_matrix"]
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "frames[2]", "transform_matrix")


def test_frame_whose_image_is_missing(data, tmp_path, capsys):
    (data / "train" / "r_3.png").unlink()
    _expect_error(data, tmp_path, capsys, "frames[3]", "r_3")


def test_unreadable_image(data, tmp_path, capsys):
    (data / "train" / "r_1.png").write_bytes(b"not a png at all")
    _expect_error(data, tmp_path, capsys, "r_1.png", "not a readable image")


def test_image_of_another_size(data, tmp_path, capsys):
    Image.new("RGBA", (20, 16)).save(data / "train" / "r_4.png")
    _expect_error(data, tmp_path, capsys, "r_4", "20x16", "16x16")


def test_image_without_alpha(data, tmp_path, capsys):
    Image.new("RGB", (16, 16), (10, 20, 30)).save(data / "train" / "r_0.png")
    _expect_error(data, tmp_path, capsys, "r_0.png", "no alpha channel", "Transparent")


def test_non_invertible_camera_matrix(data, tmp_path, capsys):
    content = _transforms(data)
    content["frames"][1]["transform_matrix"] = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "frames[1]", "not an invertible camera matrix")


def test_empty_scene_box(data, tmp_path, capsys):
    content = _transforms(data)
    content["aabb"] = [[0, 0, 0], [1, -1, 1]]
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "aabb", "empty scene box")


def test_views_with_nothing_in_them(data, tmp_path, capsys):
    for path in (data / "train").glob("*.png"):
        Image.new("RGBA", (16, 16)).save(path)
    _expect_error(data, tmp_path, capsys, "no object")


def test_a_frames_missing_depth_file(data, tmp_path, capsys):
    content = _transforms(data)
    content["frames"][1]["depth_file_path"] = "./train/nowhere_depth.exr"  # a training view (frame 0 is held out, its depth unread)
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "nowhere_depth.exr", "does not exist", "depth_file_path")


def test_a_negative_depth_weight(data, tmp_path, capsys):
    status = main(["fit", "--data", str(data), "--out", str(tmp_path / "out"), "--steps", "2", "--device", "cpu", "--depth-weight", "-1"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: --depth-weight must be 0") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_output_folder_with_another_run_is_kept_unless_forced(data, good_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fit", "--data", str(good_data), "--out", str(out), "--steps", "2", "--batch-rays", "16", "--device", "cpu"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    content = _transforms(data)
    content["frames"] = content["frames"][:-1]  # really another dataset, not just a copy
    _write_transforms(data, content)
    status, err = _fit(data, out, capsys)
    assert status == 2 and "holds another run" in err and "--force" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["fit", "--data", str(data), "--out", str(out), "--steps", "2", "--batch-rays", "16", "--device", "cpu", "--force"]) == 0
    assert json.loads((out / "run.json").read_text())["data"]["path"] == str(data.resolve())


def test_output_folder_with_unrelated_files_is_never_emptied(good_data, tmp_path, capsys):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    status = main(["fit", "--data", str(good_data), "--out", str(out), "--steps", "2", "--device", "cpu", "--force"])
    assert status == 2 and "holds no run" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "precious"


def test_a_moved_copy_of_the_same_data_resumes_the_run(data, good_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fit", "--data", str(good_data), "--out", str(out), "--steps", "2", "--batch-rays", "16", "--device", "cpu"]) == 0
    assert main(["fit", "--data", str(data), "--out", str(out), "--steps", "4", "--batch-rays", "16", "--device", "cpu"]) == 0
    assert json.loads((out / "run.json").read_text())["step"] == 4


def test_straight_alpha_is_loaded_as_written(good_data):
    train, _ = load_dataset(good_data)
    written = np.asarray(Image.open(good_data / "train" / f"{train.names[0]}.png"))
    assert np.array_equal(train.images[0].numpy(), written)


def test_render_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["render", "--run", str(tmp_path), "--device", "cpu"]) == 2
    assert "not a trained run" in capsys.readouterr().err


def test_loader_raises_input_error_not_other_exceptions(tmp_path):
    with pytest.raises(InputError):
        load_dataset(tmp_path / "nowhere")


def test_instant_ngp_intrinsics_are_used_and_checked(data, capsys, tmp_path):
    content = _transforms(data)
    del content["camera_angle_x"]
    content.update({"fl_x": 20.0, "fl_y": 22.0, "cx": 7.5, "cy": 8.5, "w": 16, "h": 16})
    _write_transforms(data, content)
    train, _ = load_dataset(data)
    assert train.intrinsics[0].tolist() == [20.0, 22.0, 7.5, 8.5]
    half, _ = load_dataset(data, resolution=8)  # resizing scales the pixel intrinsics with the image
    assert half.intrinsics[0].tolist() == [10.0, 11.0, 3.75, 4.25]
    content["w"] = 32
    _write_transforms(data, content)
    _expect_error(data, tmp_path, capsys, "16x16", "w=32")
