"""Image fields (hash grid and SIREN) fit an image and render it at any resolution."""

import numpy as np
import pytest
from PIL import Image

from ins_core.cli import main


def _pattern(size):
    """Smooth colour waves [size, size, 3] and the pixel positions (y, x) in [0, 1)."""
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([0.5 + 0.5 * np.sin(6 * x), 0.5 + 0.5 * np.cos(5 * y), (x + y) / 2], -1), y, x


def _stylize_image(tmp_path, content, steps):
    """`stylize-image` of `content` with the demo's painting: (the result as float RGB, the painting's path)."""
    from ins_core.data.demo_scene import write_demo_style

    style = write_demo_style(tmp_path / "style.png", 96)
    out = tmp_path / "stylized_image"
    assert main(["stylize-image", "--content", str(content), "--style", str(style), "--out", str(out),
                 "--fit-steps", "150", "--steps", str(steps), "--device", "cpu"]) == 0
    return np.asarray(Image.open(out / "stylized_style.png").convert("RGB"), dtype=np.float32) / 255, style


def _test_image(path, size=48):
    rgb, _, _ = _pattern(size)
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
    assert "--data takes one image file" in capsys.readouterr().err


@pytest.mark.parametrize("content, says", [("missing.png", "does not exist; check the path given to --content"),
                                            ("notes.txt", "pass a PNG or JPEG with --content"),
                                            (".", "is a folder; --content takes one image file")])
def test_stylize_image_names_a_bad_content_image_and_writes_nothing(tmp_path, capsys, content, says):
    (tmp_path / "notes.txt").write_text("not an image")
    style = _test_image(tmp_path / "style.png")
    out = tmp_path / "out"
    assert main(["stylize-image", "--content", str(tmp_path / content), "--style", str(style), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_stylize_image_moves_towards_the_style_and_renders_at_any_resolution(tmp_path):
    import torch

    from ins_core.losses.style import style_statistics_distance
    from ins_core.losses.backbone import resolve_backbone

    content = _test_image(tmp_path / "content.png", size=64)
    result, style = _stylize_image(tmp_path, content, steps=40)
    out = tmp_path / "stylized_image"
    original = np.asarray(Image.open(content).convert("RGB"), dtype=np.float32) / 255
    target = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    extractor = resolve_backbone(log=lambda m: None).extractor
    before = style_statistics_distance(torch.from_numpy(original), torch.from_numpy(target), extractor)
    after = style_statistics_distance(torch.from_numpy(result), torch.from_numpy(target), extractor)
    assert after < before  # closer to the style's Gram statistics than the photograph was
    import json

    config = json.loads((out / "stylized" / "run.json").read_text())
    assert config["model"]["stylization"]["grid_color_path"] and config["stylize"]["grid_lr_scale"] == 10.0
    assert main(["render", "--run", str(out / "stylized"), "--width", "160", "--device", "cpu"]) == 0
    assert Image.open(out / "stylized" / "renders" / "image_160x160.png").size == (160, 160)


def test_stylize_image_computes_its_losses_in_the_precision_asked_for(tmp_path):
    """`start_image_stylize(loss_precision=...)` (what `stylize-image --loss-precision` passes)
    reaches the loss network and the run records it, with a note where the CPU only emulates
    bfloat16; bfloat16 gives the losses of float32 to within its rounding. The run stops after
    its one step, before the palette match: through a loss network in bfloat16 on a CPU without
    bfloat16 arithmetic (AVX2 alone, each pass 6x float32's) that took 5 minutes."""
    import json

    import torch

    from ins_core.data.demo_scene import write_demo_style
    from ins_core.losses.backbone import resolve_backbone
    from ins_core.losses.loss_precision import native_bfloat16
    from ins_core.train.stylize_image import ImageStyleObjective, ImageStylizeSettings, start_image_stylize

    content = _test_image(tmp_path / "content.png", size=64)
    style = write_demo_style(tmp_path / "style.png", 96)
    out = tmp_path / "stylized_image"
    notes = []
    fit, make_session = start_image_stylize(content, [style], out, "cpu", steps=1, fit_steps=30, loss_precision="bfloat16", log=notes.append)
    # Said where the CPU only emulates bfloat16, and only there.
    assert any("emulates" in note for note in notes) == (not native_bfloat16(torch.device("cpu"))), notes
    fit.run_loop()
    session = make_session()
    assert session.objective.loss_dtype == torch.bfloat16
    assert session.run_loop(should_stop=lambda: session.step >= 1) == "stopped" and session.step == 1
    assert json.loads((out / "stylized" / "run.json").read_text())["stylize"]["loss_precision"] == "bfloat16"
    extractor = resolve_backbone(log=lambda m: None).extractor
    painting = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    terms = {}
    for precision in ("float32", "bfloat16"):
        objective = ImageStyleObjective(session.model, extractor, [painting], session.data.image,
                                        ImageStylizeSettings(size=64, loss_precision=precision), torch.device("cpu"))
        with torch.no_grad():
            terms[precision] = objective.loss(0).extra
    for name in ("style", "content"):
        full, half = float(terms["float32"][name]), float(terms["bfloat16"][name])
        assert full != half and abs(half - full) < 0.05 * abs(full), name


def _cut_out_image(path, size):
    """The test pattern on a disc, transparent around it (an object cut out of its background)."""
    rgb, y, x = _pattern(size)
    alpha = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.3**2).astype(np.float64)
    Image.fromarray((np.concatenate([rgb, alpha[..., None]], -1) * 255).round().astype(np.uint8)).save(path)  # RGBA from the shape
    return path, alpha > 0


def test_stylize_image_paints_a_cut_out_object_and_keeps_its_background(tmp_path):
    """With transparency the style is matched over the object alone and the background stays as it was."""
    import json

    import torch

    from ins_core.losses.style import object_style_distance, painting_grams
    from ins_core.losses.backbone import resolve_backbone

    content, inside = _cut_out_image(tmp_path / "content.png", 64)
    result, style = _stylize_image(tmp_path, content, steps=60)
    photo = np.asarray(Image.open(content).convert("RGBA"), dtype=np.float32) / 255
    on_white = photo[..., :3] * photo[..., 3:] + (1 - photo[..., 3:])
    outside = ~inside
    outside[1:-1, 1:-1] &= outside[:-2, 1:-1] & outside[2:, 1:-1] & outside[1:-1, :-2] & outside[1:-1, 2:]  # off the edge
    assert np.abs(result - on_white)[outside].max() < 0.03  # the background is the photograph's white
    extractor = resolve_backbone(log=lambda m: None).extractor
    targets = painting_grams(np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255, extractor)
    mask = torch.from_numpy(inside.astype(np.float32))
    before = object_style_distance(torch.from_numpy(on_white), mask, targets, extractor)
    after = object_style_distance(torch.from_numpy(result), mask, targets, extractor)
    assert after < 0.9 * before  # the object took the style
    from ins_core.eval.stylization import color_statistics_distance

    painting = torch.from_numpy(np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255)
    colours = [color_statistics_distance([torch.from_numpy(image)], [torch.from_numpy(inside)], painting) for image in (on_white, result)]
    # and its colours, through the palette match after training (0.30x here; 1.18x with the same
    # field drawn without its map)
    assert colours[1] < 0.5 * colours[0]
    run = tmp_path / "stylized_image" / "stylized"
    assert json.loads((run / "run.json").read_text())["recolored"] is True
    # `eval` measures the same over the object, from the painting the run kept, and draws it.
    assert (run / "styles" / "00_style.png").is_file()
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["styles"][0]
    assert metrics["gram_fall"] > 0.1 and metrics["color_fall"] > 0.2 and metrics["background_change"] < 0.01, metrics
    assert Image.open(run / "eval.png").size[0] > 3 * 64


def test_stylize_image_teaches_the_field_between_the_pixels_it_sees(tmp_path):
    """The losses see each pixel at a random point of its cell, so a render larger than what they saw
    has no noise between the points: far less detail finer than that than with the centres alone."""
    import torch
    import torch.nn.functional as F

    from ins_core.data.demo_scene import write_demo_style
    from ins_core.fields.stylization import StylizationConfig
    from ins_core.losses.backbone import resolve_backbone
    from ins_core.render.views import render_image_field
    from ins_core.train.loading import open_run
    from ins_core.train.scene_models import StylizedImageModel
    from ins_core.train.stylize_image import ImageStyleObjective, ImageStylizeSettings
    from ins_core.train.trainer import Trainer

    content, _ = _cut_out_image(tmp_path / "content.png", 128)
    style = write_demo_style(tmp_path / "style.png", 96)
    assert main(["fit", "--field", "image", "--data", str(content), "--out", str(tmp_path / "fit"), "--steps", "150", "--device", "cpu"]) == 0
    run = open_run(tmp_path / "fit", "cpu")
    extractor = resolve_backbone(log=lambda m: None).extractor
    painting = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    mask = F.interpolate(run.data.image_alpha.permute(2, 0, 1)[None], size=(128, 128), mode="area")[0, 0]
    finer = {}
    for jitter in (False, True):
        torch.manual_seed(0)
        model = StylizedImageModel(run.model, StylizationConfig(n_styles=1))
        settings = ImageStylizeSettings(size=32, jitter_pixels=jitter)
        objective = ImageStyleObjective(model, extractor, [painting], run.data.image, settings, torch.device("cpu"), run.data.image_alpha)
        trainer = Trainer(model, objective.batch, settings.lr, 150, loss_fn=objective.loss)
        for _ in range(150):
            trainer.step()
        with torch.no_grad():
            large = render_image_field(model.field, 128, 128).permute(2, 0, 1)[None]
        seen = F.interpolate(F.interpolate(large, size=(32, 32), mode="area"), size=(128, 128), mode="bicubic", align_corners=False)
        finer[jitter] = float((((large - seen) ** 2).sum(1)[0] * mask).sum() / (3 * mask.sum())) ** 0.5
    assert finer[True] < 0.7 * finer[False], finer


def test_stylized_image_colour_map_paints_the_object_and_leaves_the_background():
    """The style's change and the palette map act on the object's share of each colour: the identity
    changes nothing exactly, a map or a change leaves transparent places as they were and acts fully
    on opaque ones; fields saved before the maps existed load with none."""
    import torch

    from ins_core.fields.image import ImageField
    from ins_core.fields.stylization import StylizationConfig, StylizedImageField

    torch.manual_seed(0)
    field = StylizedImageField(ImageField(), StylizationConfig(n_styles=1))
    uv = torch.rand(500, 2)
    plain = field(uv)
    alpha = torch.zeros(8, 8)
    alpha[:, 4:] = 1.0  # the right half is the object
    field.set_object_alpha(alpha)
    assert torch.equal(field(uv), plain)
    affine = torch.tensor([[0.5, 0.0, 0.0, 0.1], [0.0, 0.5, 0.0, 0.2], [0.0, 0.0, 0.5, 0.3]])
    field.compose_color_map(0, affine, torch.full((3,), 0.5))
    mapped = field(uv)
    left, right = uv[:, 0] < 0.4, uv[:, 0] > 0.6
    assert torch.allclose(mapped[left], plain[left], atol=1e-6)  # the background's colour as it was
    assert torch.allclose(mapped[right], (plain[right] @ affine[:, :3].T + affine[:, 3]).clamp(0, 1), atol=1e-6)
    with torch.no_grad():
        field.color_head[-1].bias.fill_(1.0)  # a style's change to every colour
    changed = field(uv)
    assert torch.allclose(changed[left], plain[left], atol=1e-6)
    assert (changed[right] - mapped[right]).abs().max() > 0.05
    with torch.no_grad():
        field.color_head[-1].bias.zero_()
    saved = {key: value for key, value in field.state_dict().items() if key not in ("object_alpha", "color_maps", "color_centres")}
    old = StylizedImageField(ImageField(), StylizationConfig(n_styles=1))
    old.load_state_dict(saved)
    assert torch.equal(old(uv), plain)


def test_the_grid_colour_path_starts_at_the_content_and_each_style_has_its_own():
    """The linear path from the SIM's grid to the colour changes nothing until trained, and each
    style's path changes that style alone; a mix of the styles mixes what their paths add."""
    import torch

    from ins_core.fields.activations import color_activation
    from ins_core.fields.image import ImageField
    from ins_core.fields.stylization import StylizationConfig, StylizedImageField

    torch.manual_seed(0)
    field = StylizedImageField(ImageField(), StylizationConfig(n_styles=2, grid_color_path=True))
    uv = torch.rand(300, 2)
    content = field.content(uv)
    assert torch.equal(field(uv), content)
    with torch.no_grad():
        field.grid_color.bias[:3] = 0.5  # style 0's path adds 0.5 to each colour's logit
    logits = field.content.features_and_logits(uv)[1]
    assert torch.allclose(field(uv), color_activation(logits + 0.5), atol=1e-6)
    field.set_style([0.0, 1.0])
    assert torch.equal(field(uv), content)
    field.set_style([0.5, 0.5])
    assert torch.allclose(field(uv), color_activation(logits + 0.25), atol=1e-6)
    assert StylizedImageField(ImageField(), StylizationConfig(n_styles=2)).grid_color is None  # runs from before


def test_stylize_image_stroke_scale_sets_the_paintings_size_and_a_resumed_run_keeps_its_own(tmp_path, capsys):
    from ins_core.train.stylize_image import PAINTING_SIZE, start_image_stylize

    content = _test_image(tmp_path / "content.png", size=32)
    style = _test_image(tmp_path / "style.png", size=200)
    out = tmp_path / "out"

    def painting_side(stroke_scale):
        fit, make_session = start_image_stylize(content, [style], out, "cpu", steps=1, fit_steps=5, stroke_scale=stroke_scale, log=lambda m: None)
        fit.run_loop()
        session = make_session()
        # Stopped at the palette match's start: the painting's size is set by then, and the run kept.
        assert session.run_loop(should_stop=lambda: session.step >= 1) == "stopped"
        return max(session.objective.style_pixels[0].shape[:2])

    assert painting_side(2.0) == 2 * PAINTING_SIZE  # enlarged from 200 px: strokes twice as big against the image
    assert painting_side(0.5) == 2 * PAINTING_SIZE  # the finished run keeps the scale it was made with
    assert main(["stylize-image", "--content", str(content), "--style", str(style), "--out", str(tmp_path / "bad"),
                 "--stroke-scale", "0", "--device", "cpu"]) == 2
    assert "stroke scale must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
