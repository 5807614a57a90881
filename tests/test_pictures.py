"""Pictures: depth colours, PNG round trips, grids, charts, GIF and MP4 videos."""

import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from ins_core.errors import InputError
from ins_core.eval.pictures import MASK_GREY, colorize_depth, image_grid, plot_curves, save_png, with_caption, write_video


def _gradient(height: int, width: int) -> np.ndarray:
    """A float RGB image whose pixels all differ, so frames and crops are easy to tell apart."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([ys / max(height - 1, 1), xs / max(width - 1, 1), np.full((height, width), 0.5)], axis=-1)


def test_colorize_depth_near_far_and_mask():
    depth = np.tile(np.linspace(1.0, 5.0, 16), (8, 1))
    opacity = np.ones_like(depth)
    opacity[:, 7] = 0.2
    image = colorize_depth(depth, opacity)
    assert image.shape == (8, 16, 3) and image.dtype == np.uint8
    assert not np.array_equal(image[0, 0], image[0, -1])
    assert image[0, 2, 2] > image[0, 2, 0]  # near is blue
    assert image[0, -3, 0] > image[0, -3, 2]  # far is red
    assert (image[:, 7] == MASK_GREY).all()


def test_colorize_depth_explicit_range_and_no_valid_pixels():
    depth = np.full((4, 4), 2.0)
    assert not np.array_equal(colorize_depth(depth, near=0.0, far=4.0)[0, 0], colorize_depth(depth, near=2.0, far=4.0)[0, 0])
    assert (colorize_depth(depth, np.zeros((4, 4, 1))) == MASK_GREY).all()
    with pytest.raises(InputError, match="opacity map"):
        colorize_depth(depth, np.ones((3, 4)))


def test_save_png_round_trip(tmp_path):
    image = _gradient(6, 5)
    path = tmp_path / "nested" / "dir" / "float.png"
    save_png(path, image)
    assert np.array_equal(np.asarray(Image.open(path)), (image * 255 + 0.5).astype(np.uint8))

    rgba = (np.random.default_rng(0).random((5, 7, 4)) * 255).astype(np.uint8)
    save_png(tmp_path / "rgba.png", rgba)
    with Image.open(tmp_path / "rgba.png") as picture:
        assert picture.mode == "RGBA"
        assert np.array_equal(np.asarray(picture), rgba)

    grey = np.linspace(0, 1, 12).reshape(3, 4, 1)
    save_png(tmp_path / "grey.png", grey)
    with Image.open(tmp_path / "grey.png") as picture:
        assert picture.mode == "L" and picture.size == (4, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png", "nested", "rgba.png"]  # no temp files left


def test_save_png_rejects_bad_channel_count(tmp_path):
    with pytest.raises(InputError, match="channels"):
        save_png(tmp_path / "bad.png", np.zeros((4, 4, 2)))
    assert not (tmp_path / "bad.png").exists()


def test_image_grid_size():
    images = [_gradient(10, 12), (_gradient(8, 12) * 255).astype(np.uint8), _gradient(10, 9)[..., :1]]
    plain = image_grid(images, columns=2)
    assert plain.dtype == np.uint8 and plain.shape == (2 * 10 + 3 * 4, 2 * 12 + 3 * 4, 3)
    labelled = image_grid(images, ["prediction", "ground truth", "a label far too long to fit"], columns=3)
    assert labelled.shape[1] == 3 * 12 + 4 * 4
    assert labelled.shape[0] > 10 + 2 * 4
    with pytest.raises(InputError, match="labels"):
        image_grid(images, ["only one"])


def test_a_long_label_wraps_onto_a_second_line_instead_of_losing_its_end():
    """A painting's file name is often one long hyphenated word: under a 100 px thumbnail it
    breaks after a hyphen, every character kept, and the caption band grows by one line."""
    from ins_core.eval.pictures import _wrap_text

    label = "woman-with-hat-matisse, view 0"
    lines = _wrap_text(label, 100)
    assert len(lines) == 2 and "".join(lines) == label and lines[0].endswith("-")
    assert _wrap_text("content, view 0", 100) == ["content, view 0"]
    assert _wrap_text("one two three four five six seven eight nine", 60, max_lines=2)[-1].endswith("...")
    image = np.full((100, 100, 3), 0.5)
    one_line = image_grid([image, image], ["content, view 0", "starry, view 0"])
    two_lines = image_grid([image, image], ["content, view 0", label])
    assert two_lines.shape[1] == one_line.shape[1] and two_lines.shape[0] > one_line.shape[0]
    band = two_lines[100 + 4:, 100 + 2 * 4:]  # under the second image
    assert (band.min(axis=-1) < 128).any(axis=1).sum() > (one_line[100 + 4:, 100 + 2 * 4:].min(axis=-1) < 128).any(axis=1).sum()


def test_a_caption_wider_than_its_image_widens_the_picture_instead_of_losing_its_end():
    """A quick run's eval picture is a few dozen pixels wide; its metrics must still be readable
    to the last figure, so the canvas grows to the caption and the image stays whole below it."""
    image = _gradient(24, 40)
    long_line = "shipwreck: warp RMSE 0.041 / 0.076 (content via its colour map 0.046 / 0.098)"
    captioned = with_caption(image, ["short", long_line])
    assert captioned.shape[1] > 300
    ink = (captioned[:-24].min(axis=-1) < 128).any(axis=0).nonzero()[0]
    assert ink.max() > 0.9 * captioned.shape[1]  # the line runs to the widened edge: nothing cut off
    left = (captioned.shape[1] - 40) // 2
    assert np.array_equal(captioned[-24:, left:left + 40], (image * 255).round().astype(np.uint8))
    assert with_caption(_gradient(24, 400), ["short"]).shape[1] == 400  # a wide image keeps its width


def test_plot_curves_draws_a_coloured_chart(tmp_path):
    path = tmp_path / "charts" / "loss.png"
    series = {
        "loss": [(step, 1.0 / (1 + step)) for step in range(50)],
        "ema loss": [(step, 0.8 / (1 + step) + 1e-3) for step in range(0, 50, 5)],
        "single": [(10.0, 0.05)],
        "nothing usable": [(1.0, float("nan"))],
    }
    plot_curves(path, series, "Training loss", "step", "loss", log_y=True)
    plot_curves(tmp_path / "linear.png", {"psnr": [(0.5, 20.0), (1.0, 25.0), (3.0, 28.5)]}, "Time to PSNR", "s", "dB")
    for picture_path in (path, tmp_path / "linear.png"):
        pixels = np.asarray(Image.open(picture_path).convert("RGB")).reshape(-1, 3)
        assert pixels.std() > 0
        # Count saturated colours (lines and legend), ignoring black, white and the greys.
        saturated = pixels[(pixels.max(axis=1).astype(int) - pixels.min(axis=1)) > 60]
        assert len(np.unique(saturated, axis=0)) >= (3 if picture_path == path else 1)


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    return [np.roll(_gradient(height, width), shift, axis=1) for shift in range(count)]


def test_gif_has_every_frame(tmp_path):
    path = tmp_path / "turntable.gif"
    write_video(path, _frames(5, 16, 12), fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 5
        assert gif.info.get("loop") == 0


def _decoded_frame_count(path, height: int, width: int) -> int:
    """Decode with the ffmpeg binary to raw RGB and count whole frames."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    )  # fmt: skip
    frame_bytes = height * width * 3
    assert len(result.stdout) % frame_bytes == 0
    return len(result.stdout) // frame_bytes


def test_mp4_pads_odd_sizes_and_keeps_every_frame(tmp_path):
    path = tmp_path / "video" / "orbit.mp4"
    write_video(path, _frames(7, 17, 33), fps=24)
    assert path.stat().st_size > 0
    assert _decoded_frame_count(path, 18, 34) == 7
    assert [p.name for p in path.parent.iterdir()] == ["orbit.mp4"]


def test_video_errors(tmp_path):
    with pytest.raises(InputError, match=r"orbit\.avi.*\.gif, \.mp4"):
        write_video(tmp_path / "orbit.avi", _frames(2, 4, 4))
    with pytest.raises(InputError, match="one size"):
        write_video(tmp_path / "orbit.gif", [_gradient(4, 4), _gradient(4, 6)])


def test_mp4_failure_reports_the_encoder_error(tmp_path, monkeypatch):
    # Python rejects ffmpeg's options, which stands in for an ffmpeg that fails.
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: sys.executable)
    with pytest.raises(RuntimeError, match="ffmpeg failed.*-y"):
        write_video(tmp_path / "broken.mp4", _frames(2, 4, 4))
    assert list(tmp_path.iterdir()) == []
