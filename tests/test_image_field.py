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


def test_stylize_image_moves_towards_the_style_and_renders_at_any_resolution(tmp_path):
    import torch

    from ins_core.data.demo_scene import write_demo_style
    from ins_core.losses.style import style_statistics_distance
    from ins_core.losses.vgg import resolve_backbone

    content = _test_image(tmp_path / "content.png", size=64)
    style = write_demo_style(tmp_path / "style.png", 96)
    out = tmp_path / "stylized_image"
    assert main(["stylize-image", "--content", str(content), "--style", str(style), "--out", str(out),
                 "--fit-steps", "150", "--steps", "40", "--device", "cpu"]) == 0
    result = np.asarray(Image.open(out / "stylized_style.png").convert("RGB"), dtype=np.float32) / 255
    original = np.asarray(Image.open(content).convert("RGB"), dtype=np.float32) / 255
    target = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    extractor = resolve_backbone(log=lambda m: None).extractor
    before = style_statistics_distance(torch.from_numpy(original), torch.from_numpy(target), extractor)
    after = style_statistics_distance(torch.from_numpy(result), torch.from_numpy(target), extractor)
    assert after < before  # closer to the style's Gram statistics than the photograph was
    assert main(["render", "--run", str(out / "stylized"), "--width", "160", "--device", "cpu"]) == 0
    assert Image.open(out / "stylized" / "renders" / "image_160x160.png").size == (160, 160)


def test_stylize_image_computes_its_losses_in_the_precision_asked_for(tmp_path):
    """`stylize-image --loss-precision` reaches the loss network and the run records it; bfloat16
    gives the losses of float32 to within its rounding."""
    import json

    import torch

    from ins_core.data.demo_scene import write_demo_style
    from ins_core.losses.vgg import resolve_backbone
    from ins_core.train.loading import open_run
    from ins_core.train.stylize_image import ImageStyleObjective, ImageStylizeSettings

    content = _test_image(tmp_path / "content.png", size=64)
    style = write_demo_style(tmp_path / "style.png", 96)
    out = tmp_path / "stylized_image"
    assert main(["stylize-image", "--content", str(content), "--style", str(style), "--out", str(out),
                 "--fit-steps", "30", "--steps", "1", "--loss-precision", "bfloat16", "--device", "cpu"]) == 0
    assert json.loads((out / "stylized" / "run.json").read_text())["stylize"]["loss_precision"] == "bfloat16"
    run = open_run(out / "stylized", "cpu")
    extractor = resolve_backbone(log=lambda m: None).extractor
    painting = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    terms = {}
    for precision in ("float32", "bfloat16"):
        objective = ImageStyleObjective(run.model, extractor, [painting], run.data.image, ImageStylizeSettings(size=64, loss_precision=precision),
                                        torch.device("cpu"))
        with torch.no_grad():
            terms[precision] = objective.loss(0).extra
    for name in ("style", "content"):
        full, half = float(terms["float32"][name]), float(terms["bfloat16"][name])
        assert full != half and abs(half - full) < 0.05 * abs(full), name
