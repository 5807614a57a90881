"""Image fields (hash grid and SIREN) fit an image and render it at any resolution."""

import numpy as np
import pytest
from PIL import Image

from ins_core.cli import main


def _test_image(path, size=48):
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.5 + 0.5 * np.sin(6 * x), 0.5 + 0.5 * np.cos(5 * y), (x + y) / 2], -1)
    rgb[12:30, 16:34] = [0.9, 0.1, 0.1]  # a sharp-edged square
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("backbone, steps, bar", [("hashgrid", 300, 28.0), ("siren", 150, 18.0)])
def test_image_field_fits_and_renders_at_any_resolution(tmp_path, backbone, steps, bar):
    image = _test_image(tmp_path / "pattern.png")
    run = tmp_path / backbone
    assert main(["fit", "--field", "image", "--image-backbone", backbone, "--data", str(image), "--out", str(run),
                 "--steps", str(steps), "--batch-rays", "2048", "--device", "cpu"]) == 0
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "image" and metrics["psnr"] > bar, metrics  # the mean colour alone scores ~10 dB
    assert main(["render", "--run", str(run), "--width", "96", "--device", "cpu"]) == 0
    big = Image.open(run / "renders" / "image_96x96.png")
    assert big.size == (96, 96)
    # The upsampled render keeps the red square where it was.
    red, green, blue = np.asarray(big)[40, 50].tolist()[:3]
    assert red > 180 and green < 120 and blue < 120


def test_image_field_refuses_a_folder(tmp_path, capsys):
    assert main(["fit", "--field", "image", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "fits one image file" in capsys.readouterr().err
