"""INS stylization on a tiny real content run: blend initialisation, style mixes, geometry term."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ins_core.cli import main
from ins_core.data.cameras import image_pixels, rays_from_pixels
from ins_core.data.demo_scene import write_demo_dataset, write_demo_style
from ins_core.data.styles import load_style_image
from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec, ResultManifest
from ins_core.protocol import RenderCommand
from ins_core.render_server import render_request, served_job
from ins_core.eval.evaluate import gram_fall
from ins_core.eval.stylization import depth_difference, painting_as_seen, painting_in_view
from ins_core.losses.style import GRAM_LAYERS, StyleTarget, palette_shortfall, principal_colours, total_variation
from ins_core.fields.stylization import StylizationConfig
from ins_core.render.views import render_view
from ins_core.stylize_options import AUTO_SPREADS, FULL_DETAIL_FROM, VIEW_MODE_ONLY, loss_network_size, resolved_style_detail
from ins_core.train.loading import open_run
from ins_core.train.scene_models import StylizedModel
from ins_core.train.stylize import StylizeRequest, start_stylize
from ins_core.train.stylize_settings import StylizeSettings


@pytest.fixture(scope="module")
def content_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stylization")
    data = write_demo_dataset(root / "data", n_train=16, n_test=2, resolution=32)
    write_demo_style(root / "style_a.png", 96, seed=0)
    # green, with enough texture that its colours have a covariance (a palette match needs one)
    noise = np.random.default_rng(0).normal(0, 25, (96, 96, 3))
    Image.fromarray((np.ones((96, 96, 3)) * [40, 180, 60] + noise).clip(0, 255).astype(np.uint8)).save(root / "style_b.png")
    run = root / "content"
    assert main(["fit", "--data", str(data), "--out", str(run), "--steps", "150", "--batch-rays", "512", "--device", "cpu"]) == 0
    return root


def _stylize(root, out, styles, **settings):
    base = {"steps": 30, "patch": 16, "stride": 2, "vgg_size": 64}
    session = start_stylize(StylizeRequest(run=root / "content", styles=[root / s for s in styles], out=root / out, device="cpu",
                                           settings={**base, **settings}, force=True))
    session.run_loop()
    return open_run(root / out, "cpu")


@pytest.mark.parametrize("grid_color_path", [False, True])
def test_untrained_amalgamate_module_reproduces_the_content_field_exactly(content_run, grid_color_path):
    content = open_run(content_run / "content", "cpu", load_data=False)
    stylized = StylizedModel(content.model, StylizationConfig(n_styles=2, grid_color_path=grid_color_path))
    points = content.model.field.aabb[0] + torch.rand(2000, 3) * (content.model.field.aabb[1] - content.model.field.aabb[0])
    directions = torch.nn.functional.normalize(torch.randn(2000, 3), dim=-1)
    with torch.no_grad():
        raw_c, h_c = content.model.field.density(points)
        raw_s, h_s = stylized.field.density(points)
        assert torch.equal(raw_s, raw_c)
        torch.testing.assert_close(stylized.field.color(h_s, directions), content.model.field.color(h_c, directions), atol=1e-6, rtol=0)


def test_the_nerf_grid_colour_path_changes_its_own_style_alone_and_a_mix_mixes_the_paths(content_run):
    """Each style's linear path from the SIM's grid adds to that style's colour logits alone, seen
    the same from every direction, and a mix of the styles adds the mix of their paths."""
    from ins_core.fields.activations import color_activation

    content = open_run(content_run / "content", "cpu", load_data=False)
    stylized = StylizedModel(content.model, StylizationConfig(n_styles=2, grid_color_path=True)).field
    aabb = content.model.field.aabb
    points = aabb[0] + torch.rand(500, 3) * (aabb[1] - aabb[0])
    directions = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    with torch.no_grad():
        stylized.grid_color.bias[:3] = 0.5  # style 0's path adds 0.5 to each colour logit
        h = content.model.field.density(points)[1]
        field = content.model.field
        logits = field.color_mlp(torch.cat([h, field.direction_encoding(directions)], dim=-1))
        torch.testing.assert_close(stylized.color(stylized.density(points)[1], directions), color_activation(logits + 0.5), atol=1e-4, rtol=0)
        stylized.set_style([0.0, 1.0])
        torch.testing.assert_close(stylized.color(stylized.density(points)[1], directions), content.model.field.color(h, directions), atol=1e-6, rtol=0)
        stylized.set_style([0.5, 0.5])
        torch.testing.assert_close(stylized.color(stylized.density(points)[1], directions), color_activation(logits + 0.25), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def two_styles(content_run):
    """A run stylized with both styles, inside a job folder (job/two_styles)."""
    return _stylize(content_run, "job/two_styles", ["style_a.png", "style_b.png"])


def test_style_mixes_are_convex_and_their_endpoints_are_the_single_styles(two_styles):
    trained = two_styles
    views = trained.data.test
    renders = {}
    for name, mix in {"a": [1.0, 0.0], "b": [0.0, 1.0], "mid": [0.5, 0.5]}.items():
        trained.model.set_style(mix)
        renders[name] = render_view(trained.model, views.c2w[0], views.intrinsics[0], views.width, views.height).rgb
    trained.model.field.set_style(torch.tensor([1.0, 0.0]))
    again = render_view(trained.model, views.c2w[0], views.intrinsics[0], views.width, views.height).rgb
    assert torch.equal(again, renders["a"])
    assert (renders["a"] - renders["b"]).abs().mean() > 1e-4  # two styles learned, not one
    assert (renders["mid"] - renders["a"]).abs().mean() > 0 and (renders["mid"] - renders["b"]).abs().mean() > 0
    for bad in ([0.7, 0.7], [1.0], [-0.5, 1.5]):
        with pytest.raises(ValueError):
            trained.model.set_style(bad)
    # the palette match gave both styles maps of one handedness, so a mix can turn one into the other
    determinants = [float(torch.linalg.det(m[:, :3])) for m in trained.model.field.color_maps]
    assert min(abs(d) for d in determinants) > 1e-6 and determinants[0] * determinants[1] > 0
    assert not torch.equal(trained.model.field.color_centres, torch.full((2, 3), 0.5))


def test_the_render_server_shows_each_job_in_the_mix_it_was_stylized_with_unless_asked_for_another(content_run, two_styles):
    # A job stylized with a mix bakes its mesh in that mix: its field, alone or beside another
    # job's, shows that mix when the frame names none (not the first style).
    paths = JobPaths(content_run / "job")
    JobSpec(mode="nerf", styles=["styles/a.png", "styles/b.png"], style_mix=[0.25, 0.75]).save(paths.job_json)
    paths.result_dir.mkdir(exist_ok=True)
    ResultManifest(mode="nerf", styles=["a", "b"], backbone={"name": "vgg16", "pretrained": True, "note": ""},
                   files={"run": "two_styles"}, aabb=[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]).save(paths.result_json)
    served = served_job(paths, "cpu")
    assert served.mix == [0.25, 0.75]
    views = two_styles.data.test
    c2w, (fx, fy, cx, cy) = views.c2w[0].tolist(), views.intrinsics[0].tolist()
    away = [[1.0, 0, 0, 100.0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]  # out of view
    beside = [{"job": str(paths.root), "placement": None, "style_mix": None, "motion": None}]
    frames = {}
    for name, mix, placement, others in (("own", None, None, []), ("first", [1.0, 0.0], None, []),
                                         ("asked", [0.25, 0.75], None, []), ("other", [1.0, 0.0], away, beside)):
        out = content_run / f"served_{name}.png"
        command = RenderCommand(request_id=name, c2w=c2w, fx=fx, fy=fy, cx=cx, cy=cy, width=views.width, height=views.height,
                                out=str(out), style_mix=mix, placement=placement, others=others)
        render_request(served, command, other_job=lambda job: served_job(JobPaths(Path(job)), "cpu"))
        frames[name] = np.asarray(Image.open(out)).astype(int)
    assert frames["own"][..., 3].max() == 255
    assert np.array_equal(frames["own"], frames["asked"])
    assert np.abs(frames["own"] - frames["first"]).mean() > 0.5  # the mix shows, not the first style
    # The frame's own field moved out of view in the first style: what shows is the other field, in its job's mix.
    assert np.abs(frames["other"] - frames["own"]).max() <= 1


def _half_a_turn_apart_maps():
    """A map and the same map turned half a turn about grey: a blue in one is an orange in the other."""
    turn = torch.linalg.matrix_exp(torch.pi * torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / 3 ** 0.5)
    first = torch.diag(torch.tensor([1.3, 0.8, 0.6]))
    centre = torch.full((3,), 0.5)
    maps = [torch.cat([m, (centre - m @ centre)[:, None]], dim=1) for m in (first, turn @ first)]
    return torch.stack(maps), centre.expand(2, 3).clone()


def test_a_style_mix_mixes_the_maps_through_their_rotation_and_stretch_in_the_renderer(content_run):
    """An untrained two-style model renders the content whatever the mix, so only the colour maps
    tell mixes apart: halfway between two maps half a turn apart, the renderer draws what one map
    halfway along the turn would give, not the flat average of the two."""
    from ins_core.fields.color_mix import mix_color_maps

    content = open_run(content_run / "content", "cpu")
    views = content.data.test
    maps, centres = _half_a_turn_apart_maps()

    def render(color_maps, weights):
        stylized = StylizedModel(content.model, StylizationConfig(n_styles=2)).eval()
        stylized.field.color_maps.copy_(color_maps)
        stylized.field.color_centres.copy_(centres)
        stylized.set_style(weights)
        return render_view(stylized, views.c2w[0], views.intrinsics[0], views.width, views.height, torch.ones(3))

    def chroma(render):
        """How far the object's colours stray from grey, on average."""
        rgb = render.rgb[render.opacity > 0.9]
        return float((rgb - rgb.mean(dim=-1, keepdim=True)).abs().mean())

    middle = render(maps, [0.5, 0.5])
    halfway_map = mix_color_maps(maps, centres, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(middle.rgb, render(halfway_map.expand(2, 3, 4), [1.0, 0.0]).rgb, atol=1e-5, rtol=0)
    # half a turn about grey, averaged, leaves grey alone: the object in shades of grey
    averaged = render(maps.mean(0).expand(2, 3, 4), [1.0, 0.0])
    assert chroma(averaged) < 0.005 < 0.5 * chroma(render(maps, [1.0, 0.0])) < chroma(middle)


def test_a_run_stylized_before_the_maps_had_centres_still_opens(content_run, recorded_run, tmp_path):
    from ins_core.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "old"
    shutil.copytree(content_run / "recorded", run)
    state = load_checkpoint(run / "checkpoints" / "last.pt", "cpu")
    del state["trainer"]["model"]["field.color_centres"]
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    old = open_run(run, "cpu", load_data=False)
    torch.testing.assert_close(old.model.field.color_centres, torch.full((1, 3), 0.5))
    torch.testing.assert_close(old.model.field.color_maps, recorded_run.model.field.color_maps)


def test_geometry_term_keeps_depth_closer_to_the_content(content_run):
    content = open_run(content_run / "content", "cpu")
    views = content.data.test
    # No colour transfer: a colour map after training moves no surface.
    with_term = _stylize(content_run, "with_geometry", ["style_a.png"], geometry_weight=1.0, steps=40, mode="patch", color_transfer=False)
    without = _stylize(content_run, "without_geometry", ["style_a.png"], geometry_weight=0.0, steps=40, mode="patch", color_transfer=False)

    def depth_change(trained):
        return np.mean([depth_difference(render_view(trained.model, views.c2w[k], views.intrinsics[k], views.width, views.height),
                                         render_view(content.model, views.c2w[k], views.intrinsics[k], views.width, views.height))
                        for k in range(len(views))])

    assert depth_change(with_term) < depth_change(without)


@pytest.fixture(scope="module")
def recorded_run(content_run):
    return _stylize(content_run, "recorded", ["style_a.png"], steps=5)


def test_stylized_run_records_styles_weights_and_backbone(content_run, recorded_run):
    config = recorded_run.config
    assert [s["name"] for s in config["styles"]] == ["style_a"] and (content_run / "recorded" / config["styles"][0]["file"]).is_file()
    assert config["stylize"]["geometry_weight"] == pytest.approx(0.1) and config["stylize"]["mode"] == "view"
    assert config["backbone"]["pretrained"] is True  # the ImageNet VGG-16 the set-up extracted
    assert config["recolored"] is True  # the palette was matched once training finished
    assert not torch.equal(recorded_run.model.field.color_maps[0], torch.eye(3, 4))


def test_stylize_refuses_what_is_not_a_finished_content_run(content_run, recorded_run, tmp_path, capsys):
    style = str(content_run / "style_a.png")
    assert main(["stylize", "--run", str(tmp_path), "--style", style, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "not a trained run" in capsys.readouterr().err
    assert main(["stylize", "--run", str(content_run / "recorded"), "--style", style, "--out", str(tmp_path / "o2"), "--device", "cpu"]) == 2
    assert "stylize a trained NeRF or SDF run" in capsys.readouterr().err
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(tmp_path / "none.jpg"), "--out", str(tmp_path / "o3"), "--device", "cpu"]) == 2
    assert "none.jpg" in capsys.readouterr().err and not (tmp_path / "o3").exists()


def test_render_style_mix_must_be_convex_and_one_per_style(content_run, recorded_run, capsys):
    run = str(content_run / "recorded")
    for mix, words in (("0.3", "sum to 1"), ("0.5,0.5", "one weight per style"), ("a", "not a list of numbers")):
        assert main(["render", "--run", run, "--style-mix", mix, "--device", "cpu", "--no-turntable"]) == 2
        assert words in capsys.readouterr().err


@pytest.mark.parametrize("mode, note", [("L", "grayscale"), ("CMYK", "CMYK"), ("RGBA", "transparent"), ("I;16", "16-bit"), ("P", "palette")])
def test_style_images_that_can_be_converted_are(tmp_path, mode, note):
    rgb = Image.fromarray((np.random.default_rng(0).random((80, 90, 3)) * 255).astype(np.uint8))
    image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / ("style.png" if mode != "CMYK" else "style.jpg")
    image.save(path)
    style = load_style_image(path)
    assert style.pixels.shape == (80, 90, 3) and style.pixels.dtype == np.float32
    assert any(note in n for n in style.notes), style.notes


def test_style_images_that_cannot_be_used_are_refused(tmp_path):
    Image.new("RGB", (40, 300)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="at least 64 px"):
        load_style_image(tmp_path / "tiny.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputError, match="not a readable image"):
        load_style_image(tmp_path / "broken.jpg")
    with pytest.raises(InputError, match="does not exist"):
        load_style_image(tmp_path / "missing.jpg")
    Image.new("RGB", (8400, 70), (200, 30, 30)).save(tmp_path / "huge.png")
    huge = load_style_image(tmp_path / "huge.png", working_size=512)
    assert max(huge.pixels.shape[:2]) == 512 and any("reduced" in n for n in huge.notes)


def test_eval_of_a_stylized_run_reports_style_content_geometry_and_consistency(content_run, recorded_run, capsys):
    import json

    run = content_run / "recorded"
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    style = metrics["styles"][0]
    for key in ("style_distance_before", "style_distance_after", "color_distance_before", "color_distance_after", "content_loss_after", "depth_l1_vs_content", "short_range_rmse", "long_range_rmse"):
        assert np.isfinite(style[key]), key
    assert style["long_range_degrees"] > style["short_range_degrees"]
    assert style["style_distance_after"] != style["style_distance_before"]  # compared with the content run, not itself
    assert style["silhouette_iou"] == pytest.approx(1.0) and 0 <= style["saturated_fraction"] < 0.05
    assert style["color_distance_after"] < 0.5 * style["color_distance_before"]  # in the painting's palette
    # the reference: the painting itself in the silhouette is nearer its own Gram than the content render
    assert style["style_distance_painting"] < style["style_distance_before"]
    # a view smaller than the loss network's working size cannot show the painting's finest detail:
    # against the painting as the view can show it, the pasted painting comes nearer still
    assert gram_fall(style, "style_distance_seen_painting") > gram_fall(style, "style_distance_painting")
    captured = capsys.readouterr()
    assert "Gram distance to the style" in captured.out and "the painting itself pasted" in captured.out
    assert "only the detail the view can show" in captured.out
    assert "evaluate: 100%" in captured.err  # progress counts every rendered view to the end
    picture = np.asarray(Image.open(run / metrics["picture"]))
    assert picture.shape[0] > 3 * 32 and picture.shape[1] >= 2 * 32  # a header, then content | stylized rows
    assert np.isfinite(style["palette_reference_short_range_rmse"]) and "the content through the style's colour map" in captured.out


def test_the_warp_reference_sees_the_content_through_the_styles_colour_map(content_run, recorded_run):
    """A colour map the same in every view adds no inconsistency, but stretches every colour
    difference: the content's warp error through it is the fair reference for the stylized run's."""
    from ins_core.eval.stylization import CameraView, consistency, orbit_views, through_palette, warp_consistency

    content = open_run(content_run / "content", "cpu", load_data=False)
    field = recorded_run.model.field
    aabb = content.model.field.aabb
    template = CameraView(torch.eye(4), torch.tensor([40.0, 40.0, 16.0, 16.0]), 32, 32)
    orbit = orbit_views(aabb, template, radius=2.5 * float((aabb[1] - aabb[0]).norm()) / 2, elevation=0.5, n=12)
    renders: list = []
    plain = consistency(content.model, orbit, renders_out=renders)
    saved = field.color_maps.clone()
    try:
        with torch.no_grad():
            field.color_maps[0] = torch.eye(3, 4)  # the identity: the same numbers
            assert warp_consistency(through_palette(renders, field), orbit) == plain
            field.color_maps[0] = torch.cat([0.5 * torch.eye(3), torch.full((3, 1), 0.25)], dim=1)  # halves every difference
            halved = warp_consistency(through_palette(renders, field), orbit)
    finally:
        field.color_maps.copy_(saved)
    assert plain["short_range_rmse"] > 0
    for key in ("short_range_rmse", "long_range_rmse"):
        assert halved[key] == pytest.approx(0.5 * plain[key], rel=1e-4)


def test_view_mode_keeps_the_geometry_exactly_and_changes_the_colours(content_run, recorded_run):
    content = open_run(content_run / "content", "cpu")
    views = content.data.test
    before = render_view(content.model, views.c2w[0], views.intrinsics[0], views.width, views.height)
    after = render_view(recorded_run.model, views.c2w[0], views.intrinsics[0], views.width, views.height)
    assert torch.equal(after.depth, before.depth) and torch.equal(after.opacity, before.opacity)
    assert (after.rgb - before.rgb).abs().max() > 0.02


@pytest.mark.parametrize("kind", ["nerf", "sdf"])
def test_surface_samples_reproduce_the_renderer(content_run, recorded_run, kind, tmp_path):
    """The kept samples and their weights give the renderer's own pixels (for NeRF to within the
    weight left behind a ray once its transmittance is below TRANSMITTANCE_EPS, where the march
    stops; for an SDF the style is taken at the interval's middle, which the renderer blends from its ends)."""
    if kind == "nerf":
        model = recorded_run.model
        views = recorded_run.data.test
    else:
        data = content_run / "data"
        assert main(["fit", "--data", str(data), "--field", "sdf", "--out", str(tmp_path / "sdf"), "--steps", "30", "--batch-rays", "256", "--device", "cpu"]) == 0
        sdf = open_run(tmp_path / "sdf", "cpu")
        model = StylizedModel(sdf.model, StylizationConfig()).eval()
        torch.nn.init.normal_(model.field.am.feature_head[-1].weight, std=0.5)  # a style that changes colours
        views = sdf.data.test
    from ins_core.data.cameras import image_pixels, rays_from_pixels
    from ins_core.render.nerf_march import TRANSMITTANCE_EPS

    origins, directions = rays_from_pixels(image_pixels(views.width, views.height), views.c2w[0], views.intrinsics[0])
    white = torch.ones(3)
    with torch.no_grad():
        reference = model.render(origins, directions, white.expand(origins.shape[0], 3)).rgb
        samples = model.surface_samples(origins, directions, chunk=300)
        drawn = samples.composite(model.field.surface_color(samples), white)
        halves = samples.rays_slice(0, 500), samples.rays_slice(500, samples.n_rays)
        parts = torch.cat([h.composite(model.field.surface_color(h), white) for h in halves])
    torch.testing.assert_close(parts, drawn)
    torch.testing.assert_close(drawn, reference, atol=TRANSMITTANCE_EPS if kind == "nerf" else 2e-2, rtol=0)


def test_deferred_back_propagation_gives_the_gradient_of_one_pass():
    from ins_core.train.deferred import deferred_backward

    torch.manual_seed(0)
    weights = torch.randn(12, 3, requires_grad=True)
    features = torch.randn(6 * 5, 12)
    target = torch.rand(6, 5, 3)

    def render(first, end):
        return torch.sigmoid(features[first:end] @ weights)

    def image_loss(image):
        return ((image - target) ** 2).mean() + image.mean(dim=(0, 1)).pow(2).sum(), {}

    direct = deferred_backward(render, 6, 5, image_loss, chunk=1000)
    one_pass = weights.grad.clone()
    weights.grad = None
    chunked = deferred_backward(render, 6, 5, image_loss, chunk=7)
    torch.testing.assert_close(weights.grad, one_pass)
    torch.testing.assert_close(chunked.loss, direct.loss)


def test_an_interrupted_stylization_resumes(content_run):
    request = StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "resumed", device="cpu",
                             settings={"steps": 12, "vgg_size": 64, "color_transfer": False}, force=True)  # a match resumes in its own test
    session = start_stylize(request)
    calls = iter(range(100))
    assert session.run_loop(should_stop=lambda: next(calls) >= 5) == "stopped"
    assert session.step == 5
    request.force = False
    again = start_stylize(request)
    assert again.step == 5  # picked up from the checkpoint, not from the content run
    assert again.run_loop() == "done" and again.step == 12
    history_steps = [h["step"] for h in again.history]
    assert history_steps == sorted(set(history_steps))


def test_a_palette_match_stopped_during_its_search_is_not_done_and_resumes_to_the_same_map(content_run, capsys):
    request = StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "match_stopped", device="cpu",
                             settings={"steps": 4, "vgg_size": 64}, force=True)
    session = start_stylize(request)
    calls = iter(range(1000))
    # 4 training steps ask once each, and once more to see that they are done; then each of the 16
    # views the match renders (the next test), then the search at each start it screens
    assert session.run_loop(should_stop=lambda: next(calls) >= 4 + 1 + 16 + 3) == "stopped"
    config = json.loads((content_run / "match_stopped" / "run.json").read_text())
    assert config["step"] == 4 and config["status"] == "training" and not config.get("recolored")
    assert torch.equal(session.model.field.color_maps[0], torch.eye(3, 4))  # nothing half-applied
    # the CLI does not call it "already stylized": it finishes the match
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
                 "--out", str(content_run / "match_stopped"), "--vgg-size", "64", "--steps", "4", "--device", "cpu"]) == 0
    assert "Matching each painting's palette, searching" in capsys.readouterr().err
    resumed = open_run(content_run / "match_stopped", "cpu", load_data=False)
    assert resumed.config["recolored"] is True and resumed.config["status"] == "done"
    request.out = content_run / "match_whole"
    whole = start_stylize(request)
    assert whole.run_loop() == "done"
    torch.testing.assert_close(resumed.model.field.color_maps, whole.model.field.color_maps, atol=1e-6, rtol=0)
    # and the search moved the map away from ARF's (the search's own tests say it lowers the loss)
    request.out, request.settings = content_run / "match_arf", {**request.settings, "palette_search_steps": 0}
    arf = start_stylize(request)
    assert arf.run_loop() == "done"
    assert (arf.model.field.color_maps - whole.model.field.color_maps).abs().max() > 1e-3
    with pytest.raises(SystemExit) as refused:
        main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
              "--out", str(content_run / "match_bad"), "--palette-search-steps", "-1", "--device", "cpu"])
    assert refused.value.code == 2
    with pytest.raises(InputError, match="palette search steps must be a whole number, 0 or more"):
        StylizeSettings.for_device(torch.device("cpu"), palette_search_steps=-1)


def test_a_palette_match_stops_while_it_renders_its_views(content_run):
    """Rendering the match's views (marching those training did not visit) asks before each view,
    so a job is cancelled there without waiting for the search."""
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "match_views_stopped",
                                           device="cpu", settings={"steps": 2, "vgg_size": 64}, force=True))
    asked, scored = [], []
    gram_loss = session.objective.gram_loss
    session.objective.gram_loss = lambda *args, **kwargs: scored.append(1) or gram_loss(*args, **kwargs)
    # 2 steps, the check that they are done, then the first view and the second
    assert session.run_loop(should_stop=lambda: asked.append(1) or len(asked) > 4) == "stopped"
    assert len(asked) == 5 and not scored
    assert not session.config.get("recolored") and torch.equal(session.model.field.color_maps[0], torch.eye(3, 4))


def test_a_stylization_with_the_same_seed_is_the_same_bit_for_bit(content_run):
    def stylized_state(out: str, seed: int, match: bool = True) -> dict:
        session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / out,
                                               device="cpu", settings={"steps": 6, "vgg_size": 64}, force=True, seed=seed))
        # stopped before the palette match where only the trained modules are compared
        assert session.run_loop(should_stop=None if match else lambda: session.step >= 6) == ("done" if match else "stopped")
        return session.model.state_dict()

    first, again = stylized_state("seeded", 0), stylized_state("seeded_again", 0)
    other = stylized_state("seeded_other", 1, match=False)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    # the style modules start elsewhere (the frozen content field and its grid are shared)
    assert any(not torch.equal(first[key], other[key]) for key in first if ".sim." in key or ".am." in key)


def test_total_variation_weight_is_chosen_by_mode_unless_given():
    from ins_core.train.stylize_settings import StylizeSettings

    cpu = torch.device("cpu")
    assert StylizeSettings.for_device(cpu).tv_weight == 100.0
    assert StylizeSettings.for_device(cpu, mode="patch").tv_weight == 0.0
    assert StylizeSettings.for_device(cpu, tv_weight=0.0).tv_weight == 0.0


@pytest.mark.parametrize("key, sentence", [("palette_weight", "palette weight"), ("consistency_weight", "consistency weight"),
                                           ("tv_weight", "total variation")])
def test_a_negative_loss_weight_is_refused_with_its_name(key, sentence):
    with pytest.raises(InputError, match=f"{sentence}.* 0 or more.*got -1"):
        StylizeSettings.for_device(torch.device("cpu"), **{key: -1.0})


@pytest.mark.parametrize("scale", [0.0, -2.0])
def test_a_grid_learning_rate_scale_that_is_not_positive_is_refused(scale):
    with pytest.raises(InputError, match=f"grid's learning-rate scale must be a positive number.*got {scale}"):
        StylizeSettings.for_device(torch.device("cpu"), grid_lr_scale=scale)


def test_total_variation_term_makes_the_stylized_views_smoother(content_run):
    def roughness(run):
        """What the term itself minimises (squared neighbour differences), over both held-out views,
        on the field as it trained: without the colour map the palette match chose afterwards, whose
        spread and rotation (chosen per run) would scale and turn the two runs' contrast differently."""
        views = run.data.test
        with torch.no_grad():
            run.model.field.color_maps.copy_(torch.eye(3, 4).expand_as(run.model.field.color_maps))
        renders = [render_view(run.model, views.c2w[i], views.intrinsics[i], views.width, views.height, torch.ones(3)).rgb for i in range(len(views))]
        return sum(float(total_variation(rgb.permute(2, 0, 1)[None])) for rgb in renders)

    # at the painting's full detail the run without the term paints fine speckle for it to remove
    # (with the view's detail it is smoother by itself, and the gap too near the bar to hold). The
    # object's own edges count too. While a fit with one seed was not bit-reproducible (the
    # occupancy grid's refresh, since mended), the content fixture differed from fit to fit: over
    # five fits the smooth run kept 0.60-0.73 of view 0's mean absolute differences (once 0.95 in
    # CI) but 0.44-0.54 of its squared ones; of both views' squared ones, 0.50-0.58 over three more
    # fits. Then it kept 0.47 on the 2-core Xeon, every run, but 0.89 on the 2-core EPYC (2026-12-05),
    # a hair under the bar: the speckle NNFM paints works against the term. With NNFM off, the term
    # is what is measured: 0.77 there.
    # Measured through the palette match's map, the ratio followed the map each run chose (0.77 with
    # the search by the Gram loss, 1.06 once it weighed the painting's mix of colours, 0.94 with ARF's);
    # on the field as it trained, 0.12 (the 2-core EPYC, 2026-12-05).
    # The colour transfer is off: the map it would choose after training is set aside here anyway.
    plain = {"lr": 0.05, "style_detail": "full", "nnfm_weight": 0.0, "color_transfer": False}
    rough = _stylize(content_run, "tv_off", ["style_a.png"], tv_weight=0.0, **plain)
    smooth = _stylize(content_run, "tv_on", ["style_a.png"], tv_weight=10000.0, **plain)
    assert roughness(smooth) < 0.9 * roughness(rough)


def test_render_scale_shows_the_loss_network_views_rendered_finer(content_run):
    """render_scale 2: each training view is rendered at twice the photographs' size (4x the rays,
    the same field of view) and stylization still trains from it."""
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "scaled",
                                           device="cpu", settings={"steps": 4, "vgg_size": 64, "render_scale": 2.0}, force=True))
    views, objective = session.data.train, session.objective
    fine = objective.view_samples(objective.view_indices[0])
    assert fine.n_rays == 4 * views.width * views.height
    # the same camera at twice the resolution sees the object over about 4x the pixels
    coarse = session.model.surface_samples(*rays_from_pixels(image_pixels(views.width, views.height), views.c2w[objective.view_indices[0]],
                                                               views.intrinsics[objective.view_indices[0]]))
    ratio = float((fine.opacity > 0.5).sum()) / max(1.0, float((coarse.opacity > 0.5).sum()))
    assert 3.0 < ratio < 5.0
    # trained to its last step (the palette match after it renders at the same scale, and is left out)
    assert session.run_loop(should_stop=lambda: session.step >= 4) == "stopped" and session.step == 4


def test_a_views_photograph_features_are_kept_and_the_loss_is_the_same(content_run, monkeypatch):
    """The content term's photograph features are taken once per view and style: a second step on
    the same view reuses them and gives the content loss of the first step, which took them afresh;
    the kept features stay in budget."""
    import ins_core.train.style_objective as objective_module

    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "kept",
                                           device="cpu", settings={"steps": 4, "vgg_size": 64}, force=True))
    objective, view = session.objective, session.objective.view_indices[0]
    first = objective.loss(0, view=view)
    assert list(objective.content_cache) == [(view, 0)]
    kept = objective.content_cache[view, 0]
    objective.model.zero_grad()
    second = objective.loss(0, view=view)
    assert objective.content_cache[view, 0] is kept
    torch.testing.assert_close(second.extra["content"], first.extra["content"], rtol=0, atol=0)
    # room for one view's features only: the oldest goes
    features, _ = kept
    monkeypatch.setattr(objective_module, "CONTENT_CACHE_BYTES", features.numel() * features.element_size())
    other = objective.view_indices[1]
    objective.loss(0, view=other)
    assert list(objective.content_cache) == [(other, 0)]


def test_a_step_runs_the_loss_network_on_the_objects_window_and_the_colour_heads_get_the_whole_views_gradient(content_run):
    """At the loss network's 256 px the demo scene's objects leave background beside them: a step's
    network sees their window only. What reaches the colour heads (the gradient with respect to
    the render, weighed by its opacity) must be the whole view's, and so must the Gram term."""
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "window",
                                           device="cpu", settings={"steps": 2, "vgg_size": 256}, force=True))
    objective = session.objective

    def covered_box(view):
        covered = objective.view_photo(view, 0)[0][..., 3] > 1 / 255
        return int(covered.any(dim=1).sum()) * int(covered.any(dim=0).sum())

    view = min(objective.view_indices, key=covered_box)
    rgba, photo = objective.view_photo(view, 0)
    samples = objective.view_samples(view)
    with torch.no_grad():
        render = samples.composite(session.model.field.surface_color(samples), objective.white).view(*objective.render_size, 3)
    seen = []
    # The extractor is the process's shared loss network: the hook comes off again.
    hook = objective.extractor.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[-2:]) if torch.is_grad_enabled() else None)
    gradients, terms = {}, {}
    try:
        for way, margin in {"whole": None, "window": objective.object_margin}.items():
            objective.object_margin = margin
            objective.content_cache.clear()
            image = render.clone().requires_grad_()
            total, terms[way] = objective.image_terms(image, photo, rgba[..., 3], 0, 256, (view, 0))
            gradients[way] = (torch.autograd.grad(total, image)[0] * samples.opacity.view(*objective.render_size, 1)).flatten().double()
    finally:
        hook.remove()
    whole_size, window_size = seen
    assert whole_size == (256, 256) and window_size[0] * window_size[1] < 256 * 256
    assert all(side % 8 == 0 for side in window_size)
    assert float(torch.nn.functional.cosine_similarity(gradients["whole"], gradients["window"], dim=0)) > 0.99999
    # (without the window's share of the view on the content and NNFM means: 0.99995 and 0.24 %)
    assert abs(float(gradients["window"].norm() / gradients["whole"].norm()) - 1) < 0.001
    assert float(terms["window"]["style"]) == pytest.approx(float(terms["whole"]["style"]), rel=1e-3)


def test_the_coarse_gram_loss_sees_the_view_and_the_painting_both_at_half_the_networks_size(content_run):
    """The palette match screens its starts with the Gram loss at half the loss network's size. The
    view and the painting are both halved there, so the painting seen as a view still scores near
    nothing, where against the painting at its full size it would not."""
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "coarse",
                                           device="cpu", settings={"steps": 2, "vgg_size": 128, "stroke_scale": 1.0, "style_detail": "full"},
                                           force=True))
    objective = session.objective
    painting = objective.targets.styles[0][0].permute(1, 2, 0)  # [H, W, 3], its longer side the network's size
    everywhere = torch.ones(painting.shape[:2])
    seen = []
    # The extractor is the process's shared loss network: the hook comes off again.
    hook = objective.extractor.register_forward_pre_hook(lambda module, args: seen.append(max(args[0].shape[-2:])))
    try:
        full = float(objective.gram_loss(painting, everywhere, 0))
        assert seen and set(seen) == {128}  # (the targets on first use, then the view)
        seen.clear()
        coarse = float(objective.gram_loss(painting, everywhere, 0, coarse=True))
        assert seen and set(seen) == {64}  # (the halved painting's targets, then the view)
        halved_view = torch.nn.functional.interpolate(painting.permute(2, 0, 1)[None], scale_factor=0.5, mode="bilinear")
        against_full_size = float(objective._gram_term(objective.extractor(halved_view, list(GRAM_LAYERS)), None, 0))
    finally:
        hook.remove()
    assert full < 1e-6 and coarse < 0.05 * against_full_size


def test_a_step_with_the_loss_network_in_bfloat16_has_the_losses_of_float32(content_run):
    """Where the hardware has bfloat16 the loss network computes in it; a step's losses must stay
    those of float32 to within its rounding, and the run records the precision it used."""
    terms = {}
    for precision in ("float32", "bfloat16"):
        session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / precision,
                                               device="cpu", settings={"steps": 2, "vgg_size": 64, "loss_precision": precision}, force=True))
        assert session.config["stylize"]["loss_precision"] == precision
        assert json.loads((content_run / precision / "run.json").read_text())["stylize"]["loss_precision"] == precision
        objective = session.objective
        terms[precision] = objective.loss(0, view=objective.view_indices[0]).extra
    for name in ("style", "content", "nnfm"):
        full, half = float(terms["float32"][name]), float(terms["bfloat16"][name])
        assert full != half and abs(half - full) < 0.05 * abs(full), name


def test_a_run_made_before_the_precision_and_detail_settings_resumes_as_it_was_trained(content_run):
    """run.json written before `loss_precision` and `style_detail` existed has no such keys; those
    runs computed in float32 against the painting at its own detail, and resuming one must not
    switch to bfloat16 or to other targets halfway."""
    request = StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / "old_precision",
                             device="cpu", settings={"steps": 2, "vgg_size": 64, "loss_precision": "bfloat16"}, force=True)
    new = start_stylize(request).objective
    assert new.loss_dtype == torch.bfloat16 and new.settings.style_detail == "view"
    config_path = content_run / "old_precision" / "run.json"
    config = json.loads(config_path.read_text())
    del config["stylize"]["loss_precision"], config["stylize"]["style_detail"]
    config_path.write_text(json.dumps(config))
    request.force = False
    resumed = start_stylize(request).objective
    assert resumed.loss_dtype == torch.float32 and resumed.settings.style_detail == "full"


def test_a_new_nerf_run_has_the_grid_colour_path_and_a_run_from_before_resumes_without_it(content_run):
    """New NeRF runs give the SIM's grid its own path to the colour, and the grid its own learning
    rate; a run.json written before either existed resumes as it was trained: no path, one rate."""
    def start(out, resume=False, **settings):
        return start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / out,
                                            device="cpu", settings={"steps": 2, "vgg_size": 64, **settings}, force=not resume))

    new = start("new_grid", grid_lr_scale=3.0)
    assert new.config["model"]["stylization"]["grid_color_path"] and new.model.field.grid_color is not None
    rates = {group["lr_scale"]: len(group["params"]) for group in new.trainer.optimizer.param_groups}
    assert rates == {1.0: rates[1.0], 3.0: 1}  # the SIM's hash table alone at 3x
    old = start("old_grid", grid_color_path=False, grid_lr_scale=1.0)
    old.save("training")
    config_path = content_run / "old_grid" / "run.json"
    config = json.loads(config_path.read_text())
    del config["model"]["stylization"]["grid_color_path"], config["stylize"]["grid_color_path"], config["stylize"]["grid_lr_scale"]
    config_path.write_text(json.dumps(config))
    resumed = start("old_grid", resume=True)
    assert resumed.model.field.grid_color is None and [g["lr_scale"] for g in resumed.trainer.optimizer.param_groups] == [1.0]
    assert resumed.config["stylize"]["grid_color_path"] is False


def test_an_sdf_run_is_stylized_and_recorded_without_the_grid_colour_path(content_run, tmp_path):
    """SDF fields have no grid colour path: the run's model and its settings both say so."""
    data = content_run / "data"
    assert main(["fit", "--data", str(data), "--field", "sdf", "--out", str(tmp_path / "sdf"), "--steps", "10", "--batch-rays", "256", "--device", "cpu"]) == 0
    session = start_stylize(StylizeRequest(run=tmp_path / "sdf", styles=[content_run / "style_a.png"], out=tmp_path / "styled",
                                           device="cpu", settings={"steps": 2, "vgg_size": 64}))
    assert session.config["model"]["stylization"]["grid_color_path"] is False and session.config["stylize"]["grid_color_path"] is False
    assert not hasattr(session.model.field, "grid_color")


def test_the_paintings_targets_keep_the_detail_a_view_can_show_as_the_evaluation_sees_it(content_run):
    """With style_detail "view" the Gram targets are those of the painting as the evaluation's
    `painting_as_seen` shows it at the render's size; with "full" those of the painting itself."""
    targets = {}
    for detail in ("view", "full"):
        session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / f"detail_{detail}",
                                               device="cpu", settings={"steps": 1, "vgg_size": 64, "loss_precision": "float32",
                                                                       "style_detail": detail}, force=True))
        objective = session.objective
        targets[detail] = objective.targets[0].grams
        painting = torch.from_numpy(objective.style_pixels[0])
    views = objective.views
    assert max(views.height, views.width) < 64  # so a view shows less than the painting's detail
    for detail, image in (("full", painting), ("view", painting_as_seen(painting, max(views.height, views.width), 64))):
        expected = StyleTarget.compute(image.permute(2, 0, 1)[None], objective.extractor, GRAM_LAYERS).grams
        for name in GRAM_LAYERS:
            assert torch.allclose(targets[detail][name], expected[name], rtol=1e-4, atol=1e-7), (detail, name)
    assert not torch.allclose(targets["view"][GRAM_LAYERS[0]], targets["full"][GRAM_LAYERS[0]], rtol=1e-2)


def test_auto_detail_asks_for_the_paintings_own_detail_only_of_views_near_the_loss_networks_size(content_run):
    """The default "auto" resolves by the views' size against the loss network's: the 32 px views
    fill 2/3 of a 48 px loss network, so the targets are the painting's own ("full"); at 64 px they
    fill half, so the painting as such a view shows it ("view"). run.json records what it became."""
    for vgg_size, expected in ((48, "full"), (64, "view")):
        out = content_run / f"auto_detail_{vgg_size}"
        objective = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=out, device="cpu",
                                                 settings={"steps": 1, "vgg_size": vgg_size, "loss_precision": "float32"}, force=True)).objective
        assert objective.settings.style_detail == expected
        assert json.loads((out / "run.json").read_text())["stylize"]["style_detail"] == expected
        if expected == "full":  # the painting as it was copied in (with "view" `style_pixels` are the painting as seen)
            painting = torch.from_numpy(objective.style_pixels[0])
        image = painting if expected == "full" else painting_as_seen(painting, 32, vgg_size)
        grams = StyleTarget.compute(image.permute(2, 0, 1)[None], objective.extractor, GRAM_LAYERS).grams
        assert torch.allclose(objective.targets[0].grams[GRAM_LAYERS[0]], grams[GRAM_LAYERS[0]], rtol=1e-4, atol=1e-7), vgg_size


def test_auto_detail_switches_between_the_view_sizes_measured():
    """Lego on a CPU's 256 px loss network: at 128 px views the painting's own detail came out as
    flickering speckle, at 160 px it held for all four paintings (docs/stylization.md); a detail
    asked for by name is kept at any size."""
    assert resolved_style_detail("auto", 128, 256) == "view"
    assert resolved_style_detail("auto", 160, 256) == "full"
    assert resolved_style_detail("auto", 320, 512) == "full"
    assert resolved_style_detail("view", 400, 256) == "view" and resolved_style_detail("full", 64, 256) == "full"


def test_the_loss_network_is_no_larger_than_the_views_need_for_the_paintings_own_detail():
    """Lego's 100 px views on a CPU: 160 px, not enlarged to 256; views from 160 px on a CPU and
    320 px on a GPU keep the device's size; sizes on the object window's 8 px grain, at which the
    views still count as holding the painting's own detail (auto detail: "full")."""
    assert loss_network_size(100, 256) == 160 and loss_network_size(160, 256) == 256 and loss_network_size(800, 256) == 256
    assert loss_network_size(400, 512) == 512 and loss_network_size(200, 512) == 320
    for side in (50, 100, 128, 150, 159, 199, 321):
        size = loss_network_size(side, 512)
        assert size % 8 == 0 and resolved_style_detail("auto", side, size) == "full", side
        assert side < FULL_DETAIL_FROM * (size + 8), side  # the smallest such size on the grain
    assert loss_network_size(20, 256) == 64 and loss_network_size(20, 48) == 48  # not below 64, nor above the device's


def test_the_loss_network_size_follows_the_views_unless_asked_for(content_run):
    """The 32 px views get the smallest network (64 px, twice their size: so the painting as they can
    show it), recorded in run.json with the painting read at that size; a size asked for, patch mode
    and settings without views keep theirs."""
    out = content_run / "network_size"
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=out, device="cpu",
                                           settings={"steps": 1}, force=True))
    assert session.objective.settings.vgg_size == 64 and session.objective.settings.style_detail == "view"
    recorded = json.loads((out / "run.json").read_text())["stylize"]
    assert (recorded["vgg_size"], recorded["style_size"]) == (64, 64)
    assert max(Image.open(next((out / "styles").glob("*.png"))).size) == 64
    cpu = torch.device("cpu")
    assert StylizeSettings.for_device(cpu, view_side=100).vgg_size == 160
    assert StylizeSettings.for_device(cpu, view_side=100, stroke_scale=2.0).style_size == 320
    assert StylizeSettings.for_device(cpu, view_side=80, render_scale=2.0).vgg_size == 256
    assert StylizeSettings.for_device(cpu, view_side=100, vgg_size=256).vgg_size == 256
    assert StylizeSettings.for_device(cpu, view_side=100, mode="patch").vgg_size == 256
    assert StylizeSettings.for_device(cpu).vgg_size == 256


def test_the_cli_passes_the_loss_network_precision(content_run):
    out = content_run / "cli_precision"
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"), "--out", str(out),
                 "--steps", "1", "--vgg-size", "64", "--loss-precision", "float32", "--no-color-transfer", "--device", "cpu", "--force"]) == 0
    assert json.loads((out / "run.json").read_text())["stylize"]["loss_precision"] == "float32"


def test_the_cli_passes_the_style_detail_and_refuses_an_unknown_one(content_run, capsys):
    out = content_run / "cli_detail"
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"), "--out", str(out),
                 "--steps", "1", "--vgg-size", "64", "--style-detail", "full", "--no-color-transfer", "--device", "cpu", "--force"]) == 0
    assert json.loads((out / "run.json").read_text())["stylize"]["style_detail"] == "full"
    with pytest.raises(InputError, match="style detail 'fine' is not one of auto, view, full"):
        StylizeSettings.for_device(torch.device("cpu"), style_detail="fine")


def _stripe_period(row: np.ndarray) -> float:
    """Mean period in pixels of a row of dark and light stripes."""
    light = row > row.mean()
    changes = np.count_nonzero(light[1:] != light[:-1])
    return 2 * len(row) / max(1, changes)


def test_stroke_scale_two_gives_the_loss_network_strokes_twice_as_big(content_run):
    """The loss network sees each view at vgg_size and the painting at vgg_size * stroke_scale:
    at stroke scale 2 each stripe of the painting spans twice as many of its pixels, so the strokes
    it asks of a view are twice as big (a small painting is enlarged to get there)."""
    stripes = np.zeros((120, 120, 3), np.uint8)
    stripes[:, (np.arange(120) // 6) % 2 == 1] = 255  # 12 px period
    Image.fromarray(stripes).save(content_run / "stripes.png")
    periods = {}
    for scale in (1.0, 2.0):
        out = content_run / f"strokes_{scale:g}"
        start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "stripes.png"], out=out, device="cpu",
                                     settings={"steps": 1, "vgg_size": 80, "stroke_scale": scale}, force=True))
        seen = np.asarray(Image.open(next((out / "styles").glob("*.png"))).convert("L"), dtype=np.float32)
        assert max(seen.shape) == round(80 * scale)
        periods[scale] = _stripe_period(seen[seen.shape[0] // 2])
    assert periods[1.0] == pytest.approx(12 * 80 / 120, rel=0.1)
    assert periods[2.0] == pytest.approx(2 * periods[1.0], rel=0.1)


def test_the_painting_in_a_view_is_the_crop_the_loss_network_compares_it_with():
    # A horizontal ramp 0..1 across a 64 x 256 painting; the loss network sees views at 128 px.
    painting = torch.linspace(0, 1, 256).expand(64, 256)[..., None].expand(64, 256, 3).contiguous()
    view = painting_in_view(painting, 40, 40, working_size=128)
    assert view.shape == (40, 40, 3)
    # 128 painting pixels across the view: the central half of the ramp, not the whole painting
    assert view[..., 0].min() == pytest.approx(0.25, abs=0.02) and view[..., 0].max() == pytest.approx(0.75, abs=0.02)
    # taller than the painting: tiled, so every row of the view still shows painting
    assert torch.allclose(view[0], view[-1], atol=1e-4) and view[..., 0].std(dim=1).min() > 0.1
    # without a working size the painting's pixels are the view's: a 40 px wide central strip
    direct = painting_in_view(painting, 40, 40, working_size=None)
    assert direct[..., 0].max() - direct[..., 0].min() == pytest.approx(39 / 255, abs=0.01)


def test_the_painting_as_a_small_view_shows_it_keeps_its_broad_strokes_and_loses_the_finest():
    # 128 x 128: one-pixel stripes (detail no 40 px view enlarged to 128 can hold) over a ramp (broad).
    ramp = torch.linspace(0, 1, 128).expand(128, 128)
    fine = (torch.arange(128) % 2).float().expand(128, 128) * 0.4 - 0.2
    painting = (0.1 + 0.8 * ramp.T + fine)[..., None].expand(128, 128, 3).contiguous()
    seen = painting_as_seen(painting, view_side=40, working_size=128)
    assert seen.shape == painting.shape
    assert (seen - (0.1 + 0.8 * ramp.T)[..., None]).abs()[8:-8, 8:-8].max() < 0.05  # the stripes are gone, the ramp kept
    # a view as large as the working size (or no working size) shows the painting as it is
    assert torch.equal(painting_as_seen(painting, view_side=128, working_size=128), painting)
    assert torch.equal(painting_as_seen(painting, view_side=40, working_size=None), painting)


def test_the_palette_term_widens_the_fields_own_colours_to_the_paintings_range(content_run):
    """Without the match after training, what the field renders is what it learnt: with the palette
    term its object spreads its colours over more of the painting's range than without (the demo
    style is far more colourful than the demo scene), and the term is in the history."""
    shortfalls = {}
    # 30 steps left the term mid-way: at 5 half the shortfall (0.50-0.51 of it, at this bar), at 10
    # 0.30-0.62 of it from run to run. After 60 steps at 10 it has settled at 0.35-0.38.
    for weight in (0.0, 10.0):
        trained = _stylize(content_run, f"palette_weight_{weight}", ["style_a.png"], palette_weight=weight, color_transfer=False, steps=60)
        views = trained.data.test
        renders = [render_view(trained.model, views.c2w[k], views.intrinsics[k], views.width, views.height) for k in range(len(views))]
        pixels = torch.cat([r.rgb[r.opacity > 0.5] for r in renders])
        # the range the term reaches for: the painting as these views can show it (the default detail)
        painting = torch.from_numpy(load_style_image(trained.run.root / trained.config["styles"][0]["file"]).pixels)
        variances, axes = principal_colours(painting_as_seen(painting, views.width, 64).reshape(-1, 3))
        shortfalls[weight] = float(palette_shortfall(pixels, variances, axes))
        history = json.loads((content_run / f"palette_weight_{weight}" / "history.json").read_text())
        assert all(("palette" in entry) == (weight > 0) for entry in history) and history
    assert shortfalls[10.0] < 0.5 * shortfalls[0.0]


def test_at_the_views_detail_the_palette_is_the_paintings_as_a_view_shows_it(content_run):
    """With style detail "view" the colours the palette term reaches for, the photographs' colour
    pre-transfer and the match after training all take the painting as the loss network's targets
    do (and as `eval` measures it): without the finest strokes, which a view cannot hold and whose
    colour variance would otherwise be stretched onto what detail the view has."""
    variances = {}
    for detail in ("view", "full"):
        session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / f"palette_{detail}",
                                               device="cpu", settings={"steps": 1, "vgg_size": 64, "style_detail": detail}, force=True))
        painting = torch.from_numpy(load_style_image(session.run.root / session.config["styles"][0]["file"]).pixels)
        as_seen = painting_as_seen(painting, session.data.train.width, 64)
        used = torch.as_tensor(session.objective.style_pixels[0])
        assert not torch.allclose(painting, as_seen, atol=0.05)  # the demo painting has detail a 32 px view loses
        assert torch.allclose(used, as_seen if detail == "view" else painting, atol=1 / 255)
        variances[detail] = float(session.objective.palettes[0][0].sum())
    assert variances["view"] < variances["full"]


def _train_one_view_beside_a_white_neighbour(content_run, weight: float, steps: int = 8) -> tuple[float, dict]:
    """Train the first training view alone while its nearest neighbour's last render is pure white;
    returns the mean brightness of its pixels that neighbour sees, and the last step's terms."""
    session = start_stylize(StylizeRequest(run=content_run / "content", styles=[content_run / "style_a.png"], out=content_run / f"pull_{weight}",
                                           device="cpu", force=True,
                                           # at the painting's full detail the view stays darker on its own, so a pull towards white shows plainly
                                           settings={"steps": steps, "vgg_size": 64, "consistency_weight": weight, "color_transfer": False,
                                                     "style_detail": "full"}))
    objective = session.objective
    nearest = int(objective.neighbours[0, 0])
    view, neighbour = objective.view_indices[0], objective.view_indices[nearest]
    objective.neighbours[:] = nearest  # the neighbour is always that one
    objective.last_render[neighbour, 0] = torch.ones(*objective.render_size, 3)
    landing, _ = objective.neighbour_agreement(view, 0)
    assert landing.visible.sum() > 20
    optimiser = torch.optim.Adam([p for p in session.model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        terms = objective.loss(0, view=view)
        optimiser.step()
    samples = objective.view_samples(view)
    with torch.no_grad():
        image = samples.composite(session.model.field.surface_color(samples), objective.white)
    return float(image[landing.visible].mean()), terms.extra


def test_the_consistency_term_pulls_a_view_towards_its_neighbours_last_render(content_run):
    """With the term on, the view's pixels that a (white) neighbour sees end up brighter than
    when the same view trains without it: the term reaches the style modules through the
    deferred back-propagation. It is reported only when it is on."""
    off, off_terms = _train_one_view_beside_a_white_neighbour(content_run, 0.0)
    on, on_terms = _train_one_view_beside_a_white_neighbour(content_run, 100.0)
    assert "consistency" in on_terms and "consistency" not in off_terms
    assert on > off + 0.1


def test_a_palette_gain_cap_limits_the_palette_match_after_training(content_run, capsys):
    """Blocks of pure red, green, blue and yellow are far more colourful than the demo scene:
    uncapped, the palette map stretches some colour direction well beyond 1.25x; capped, no
    direction is stretched more."""
    blocks = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
    Image.fromarray(np.kron(blocks.reshape(2, 2, 3), np.ones((48, 48, 1), dtype=np.uint8))).save(content_run / "vivid.png")
    gains = {}
    for cap in (None, 1.25):
        # ARF's map, unsearched: the cap applies to whatever map the match ends with
        run = _stylize(content_run, f"palette_{cap}", ["vivid.png"], steps=2, palette_max_gain=cap, palette_search_steps=0)
        gains[cap] = float(torch.linalg.svdvals(run.model.field.color_maps[0][:, :3]).max())
    assert gains[None] > 1.3 and gains[1.25] <= 1.25 + 1e-4
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
                 "--out", str(content_run / "palette_bad"), "--palette-max-gain", "0", "--device", "cpu"]) == 2
    assert "palette gain cap must be a positive number" in capsys.readouterr().err


def test_a_palette_spread_of_nought_turns_colours_as_the_full_match_does_without_stretching_them(content_run, capsys):
    """The same strokes (same seed and steps) matched in full and at spread 0: the same turn of
    colours, the full map's stretches gone and its shrinks kept, and both send one colour (the
    object's mean) to the same place."""
    maps = {}
    for spread in (1.0, 0.0):
        # ARF's map, unsearched: the spread applies to whatever map the search ends with
        run = _stylize(content_run, f"palette_spread_{spread:g}", ["style_a.png"], steps=2, palette_spread=spread, palette_search_steps=0)
        assert run.config["stylize"]["palette_spread"] == spread and run.config["palette_spreads"] == [spread]
        maps[spread] = run.model.field.color_maps[0].double()
    full, flat = maps[1.0], maps[0.0]
    u, gains, vh = torch.linalg.svd(full[:, :3])
    assert float(gains.max()) > 1.1  # the full match does stretch, so the two differ
    torch.testing.assert_close(flat[:, :3], u @ torch.diag(gains.clamp(max=1.0)) @ vh, atol=1e-4, rtol=0)
    difference, offset = full[:, :3] - flat[:, :3], flat[:, 3] - full[:, 3]
    agreed = torch.linalg.lstsq(difference, offset[:, None]).solution[:, 0]
    torch.testing.assert_close(difference @ agreed, offset, atol=1e-4, rtol=0)  # a colour both maps send to the same place
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
                 "--out", str(content_run / "spread_bad"), "--palette-spread", "1.5", "--device", "cpu"]) == 2
    assert "The palette spread must be between 0 and 1, got 1.5; use auto" in capsys.readouterr().err
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
                 "--out", str(content_run / "spread_bad"), "--palette-spread", "half", "--device", "cpu"]) == 2
    assert "The palette spread 'half' is neither auto nor a number; use auto" in capsys.readouterr().err
    assert not (content_run / "spread_bad").exists()


def test_the_auto_palette_spread_is_chosen_per_style_recorded_and_reported(content_run, capsys):
    """The default: each style's spread is one of the candidates, chosen after training, kept in
    run.json and told at the end of `stylize`."""
    out = content_run / "palette_spread_auto"
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"), "--style",
                 str(content_run / "style_b.png"), "--out", str(out), "--steps", "2", "--vgg-size", "64", "--palette-search-steps", "0",
                 "--device", "cpu", "--force"]) == 0  # the spread is chosen for ARF's map as for a searched one
    run = open_run(out, "cpu", load_data=False)
    assert run.config["stylize"]["palette_spread"] == "auto"
    chosen = run.config["palette_spreads"]
    assert len(chosen) == 2 and set(chosen) <= set(AUTO_SPREADS)
    assert f"palette spread (auto): {chosen[0]:g}, {chosen[1]:g}" in capsys.readouterr().out


def test_the_view_mode_only_list_names_the_stylizations_own_settings():
    """The job file and the CLI refuse these in patch mode by name: a setting renamed in the
    stylization must not drop out of that check unnoticed."""
    assert set(VIEW_MODE_ONLY) <= {field.name for field in dataclasses.fields(StylizeSettings)}


def test_auto_detail_is_no_view_mode_request_and_patch_mode_keeps_the_paintings_own_detail():
    """"auto" is the default, so asking for it in patch mode (a job file that writes every setting)
    is not refused; patch mode has no views to size it by and matches the painting's own detail."""
    settings = StylizeSettings.for_device(torch.device("cpu"), mode="patch", style_detail="auto")
    assert settings.style_detail == "full"
    with pytest.raises(InputError, match="--style-detail works in view mode only"):
        StylizeSettings.for_device(torch.device("cpu"), mode="patch", style_detail="view")


@pytest.mark.parametrize("option", [("--palette-weight", "1"), ("--render-scale", "2"), ("--consistency-weight", "10"), ("--style-detail", "view")])
def test_a_view_mode_option_with_patch_mode_is_refused_not_ignored(content_run, capsys, option):
    """Patch mode has no object mask, no whole view and no neighbouring view: a palette weight,
    render scale or consistency weight there would do nothing, so the user is told instead of
    getting a run without it."""
    out = content_run / f"patch_{option[0].strip('-')}"
    assert main(["stylize", "--run", str(content_run / "content"), "--style", str(content_run / "style_a.png"),
                 "--out", str(out), "--mode", "patch", *option, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} works in view mode only" in err and "Traceback" not in err
    assert not out.exists()
