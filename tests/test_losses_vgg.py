"""VGG-16 loss network: torchvision layout, weights loading / checking / caching, offline backbone."""

import hashlib
import io
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ins_core.device import hardware_description
from ins_core.errors import InputError
from ins_core.losses import vgg_weights
from ins_core.losses.backbone import resolve_backbone
from ins_core.losses.loss_precision import cpu_flags_have_bfloat16, loss_network_dtype, native_bfloat16
from ins_core.losses.vgg import (
    TAPS,
    build_vgg16_features,
    FeatureExtractor,
    features_from_weights,
    vgg16_parameter_shapes,
)
from ins_core.losses.vgg_offline import build_offline_vgg16, calibration_images
from ins_core.losses.vgg_weights import (
    BUNDLED_WEIGHTS,
    CACHE_FILENAME,
    OFFLINE_WARNING,
    download_weights,
    load_vgg_file,
    load_vgg_weights,
    sha256_matches,
    trim_and_cache,
)

# torchvision.models.vgg16().features, written out by hand: (index, out_channels, in_channels).
TORCHVISION_CONVS = [
    (0, 64, 3), (2, 64, 64),
    (5, 128, 64), (7, 128, 128),
    (10, 256, 128), (12, 256, 256), (14, 256, 256),
    (17, 512, 256), (19, 512, 512), (21, 512, 512),
    (24, 512, 512), (26, 512, 512), (28, 512, 512),
]  # fmt: skip
TORCHVISION_POOLS = [4, 9, 16, 23, 30]
NEEDED_CONVS = [entry for entry in TORCHVISION_CONVS if entry[0] <= 22]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _expected_keys(convs):
    return {f"{i}.{p}": ((o, c, 3, 3) if p == "weight" else (o,)) for i, o, c in convs for p in ("weight", "bias")}


def test_stack_matches_torchvision_features_layout():
    stack = build_vgg16_features()
    assert len(stack) == 23
    shapes = {key: tuple(value.shape) for key, value in stack.state_dict().items()}
    assert shapes == _expected_keys(NEEDED_CONVS)
    for index, module in enumerate(stack):
        if any(index == i for i, _, _ in NEEDED_CONVS):
            assert isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.padding == (1, 1)
        elif index in TORCHVISION_POOLS:
            assert isinstance(module, nn.MaxPool2d) and module.kernel_size == 2 and module.stride == 2
        else:
            assert isinstance(module, nn.ReLU) and not module.inplace, index
    assert {name: index for name, index in TAPS.items()} == {
        "relu1_2": 3, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu4_3": 22,
    }  # fmt: skip


def test_full_stack_and_parameter_shapes_match_torchvision():
    full = build_vgg16_features(30)
    assert len(full) == 31
    assert {k: tuple(v.shape) for k, v in full.state_dict().items()} == _expected_keys(TORCHVISION_CONVS)
    assert [i for i, m in enumerate(full) if isinstance(m, nn.MaxPool2d)] == TORCHVISION_POOLS
    assert vgg16_parameter_shapes() == {f"features.{k}": v for k, v in _expected_keys(NEEDED_CONVS).items()}
    with pytest.raises(ValueError):
        build_vgg16_features(31)


def _random_checkpoint(seed: int = 0) -> dict:
    """A torchvision-layout vgg16 state dict with random weights (classifier kept tiny: it is ignored)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for index, out_ch, in_ch in TORCHVISION_CONVS:
        state[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.05
        state[f"features.{index}.bias"] = torch.randn(out_ch, generator=gen) * 0.05
    for index in (0, 3, 6):
        state[f"classifier.{index}.weight"] = torch.randn(4, 4, generator=gen)
        state[f"classifier.{index}.bias"] = torch.randn(4, generator=gen)
    return state


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    state = _random_checkpoint()
    path = tmp_path_factory.mktemp("weights") / "vgg16_full.pth"
    torch.save(state, path)
    return path, state


def _relu1_2_by_hand(image: torch.Tensor, state: dict) -> torch.Tensor:
    x = (image - MEAN) / STD
    x = F.relu(F.conv2d(x, state["features.0.weight"].float(), state["features.0.bias"].float(), padding=1))
    return F.relu(F.conv2d(x, state["features.2.weight"].float(), state["features.2.bias"].float(), padding=1))


def test_loader_reads_full_torchvision_file_and_extractor_uses_its_weights(full_checkpoint):
    path, state = full_checkpoint
    weights = load_vgg_weights(path)
    assert set(weights) == set(_expected_keys(NEEDED_CONVS))  # classifier and features.24+ dropped
    assert all(t.dtype == torch.float32 for t in weights.values())
    extractor = FeatureExtractor(features_from_weights(weights))
    image = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    out = extractor(image, ["relu1_2", "relu2_2"])
    assert set(out) == {"relu1_2", "relu2_2"} and out["relu2_2"].shape == (2, 128, 6, 5)
    torch.testing.assert_close(out["relu1_2"], _relu1_2_by_hand(image, state), rtol=1e-5, atol=1e-6)


def test_trim_and_cache_writes_only_needed_keys_in_fp16_and_loads(full_checkpoint, tmp_path):
    path, state = full_checkpoint
    cached = trim_and_cache(path, tmp_path / "cache")
    assert cached == tmp_path / "cache" / CACHE_FILENAME
    assert [p.name for p in cached.parent.iterdir()] == [CACHE_FILENAME]  # no temporary file left behind
    raw = torch.load(cached, map_location="cpu", weights_only=True)
    assert set(raw) == {f"features.{k}" for k in _expected_keys(NEEDED_CONVS)}
    assert all(t.dtype == torch.float16 for t in raw.values())
    assert cached.stat().st_size < path.stat().st_size / 3
    extractor = FeatureExtractor(features_from_weights(load_vgg_weights(cached)))
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(extractor(image, ["relu1_2"])["relu1_2"], _relu1_2_by_hand(image, raw), rtol=1e-5, atol=1e-6)
    # fp16 rounding is the only change from the original weights
    torch.testing.assert_close(raw["features.21.weight"].float(), state["features.21.weight"], rtol=1e-3, atol=1e-4)


def test_trim_and_cache_is_atomic(full_checkpoint, tmp_path, monkeypatch):
    path, _ = full_checkpoint
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_FILENAME).write_bytes(b"previous cache")

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(vgg_weights.os, "replace", fail_replace)
    with pytest.raises(OSError):
        trim_and_cache(path, cache)
    assert (cache / CACHE_FILENAME).read_bytes() == b"previous cache"
    assert sorted(p.name for p in cache.iterdir()) == [CACHE_FILENAME]


def test_file_named_like_torchvision_with_wrong_hash_is_rejected(full_checkpoint, tmp_path):
    path, _ = full_checkpoint
    fake = tmp_path / "vgg16-397923af.pth"
    shutil.copy(path, fake)
    assert not sha256_matches(fake)
    with pytest.raises(InputError, match="SHA-256") as info:
        load_vgg_weights(fake)
    assert "vgg16-397923af.pth" in str(info.value) and "re-download" in str(info.value)


def test_file_named_with_its_own_hash_prefix_is_accepted(full_checkpoint, tmp_path):
    path, _ = full_checkpoint
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"vgg16-{digest[:8]}.pth"
    shutil.copy(path, named)
    assert sha256_matches(named, digest[:8])
    assert len(load_vgg_weights(named)) == 20


def test_checkpoint_missing_a_key_or_with_a_wrong_shape_is_rejected(full_checkpoint, tmp_path):
    state = dict(full_checkpoint[1])
    del state["features.12.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"features\.12\.weight"):
        load_vgg_weights(tmp_path / "missing.pth")
    state = dict(full_checkpoint[1])
    state["features.5.bias"] = torch.zeros(64)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(InputError, match=r"features\.5\.bias"):
        load_vgg_weights(tmp_path / "shape.pth")


def test_unreadable_or_absent_files_are_input_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="junk.pth"):
        load_vgg_weights(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="does not exist"):
        load_vgg_weights(tmp_path / "nowhere.pth")
    with pytest.raises(InputError, match="nowhere.pth"):
        resolve_backbone(tmp_path / "nowhere.pth", None, False, log=lambda m: None)


def test_offline_backbone_when_no_weights_and_no_downloads(tmp_path):
    messages: list[str] = []
    backbone = resolve_backbone(None, tmp_path, False, log=messages.append, bundled=None)
    assert backbone.pretrained is False
    assert "offline" in backbone.name
    assert backbone.note == OFFLINE_WARNING
    assert any(OFFLINE_WARNING in m for m in messages)
    assert "python -m ins_core weights" in OFFLINE_WARNING and "--vgg-weights PATH" in OFFLINE_WARNING
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written


def test_resolution_order_explicit_then_cache(full_checkpoint, tmp_path):
    path, state = full_checkpoint
    cache = tmp_path / "cache"
    trim_and_cache(path, cache)
    messages: list[str] = []
    from_cache = resolve_backbone(None, cache, False, log=messages.append, bundled=None)
    assert from_cache.pretrained and str(cache) in from_cache.note
    explicit = resolve_backbone(path, cache, False, log=messages.append)
    assert explicit.pretrained and str(path) in explicit.note
    torch.testing.assert_close(explicit.extractor.features[0].weight, state["features.0.weight"])
    assert not any(OFFLINE_WARNING in m for m in messages)


def test_damaged_cache_is_ignored_with_a_message(tmp_path):
    (tmp_path / CACHE_FILENAME).write_bytes(b"\x00" * 100)
    messages: list[str] = []
    backbone = resolve_backbone(None, tmp_path, False, log=messages.append, bundled=None)
    assert not backbone.pretrained
    assert any("ignoring the VGG weights in the cache" in m for m in messages)


def test_download_refused_unless_allowed(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a URL")

    monkeypatch.setattr(vgg_weights.urllib.request, "urlopen", no_network)
    with pytest.raises(InputError, match="not allowed"):
        download_weights(tmp_path / "cache", allow_download=False)
    assert not (tmp_path / "cache").exists()


def test_download_path_with_a_fake_server(full_checkpoint, tmp_path, monkeypatch):
    """No network here: urlopen is replaced by a file-like object serving the test checkpoint."""
    path, _ = full_checkpoint
    payload = path.read_bytes()
    monkeypatch.setattr(vgg_weights.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    cache = tmp_path / "cache"
    # Wrong hash (the payload is not torchvision's file): refused, nothing left behind; offline fallback.
    with pytest.raises(InputError, match="SHA-256"):
        download_weights(cache, allow_download=True)
    assert list(cache.iterdir()) == []
    messages: list[str] = []
    assert not resolve_backbone(None, cache, True, log=messages.append, bundled=None).pretrained
    assert any("SHA-256" in m for m in messages) and any(OFFLINE_WARNING in m for m in messages)
    # With the expected prefix set to the payload's hash, the file is trimmed into the cache.
    monkeypatch.setattr(vgg_weights, "VGG16_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    assert resolve_backbone(None, cache, True, log=messages.append, bundled=None).pretrained
    assert sorted(p.name for p in cache.iterdir()) == [CACHE_FILENAME]


def test_offline_backbone_is_deterministic_calibrated_and_frozen():
    first, second = build_offline_vgg16(), build_offline_vgg16()
    for (k1, v1), (k2, v2) in zip(first.state_dict().items(), second.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    extractor = FeatureExtractor(first)
    extractor.train()
    assert not extractor.training
    assert not any(p.requires_grad for p in extractor.parameters())
    with torch.no_grad():
        feats = extractor(calibration_images().float())
    # Calibrated pre-activations are zero-mean, unit-variance per channel, so after the ReLU the
    # second moment of every channel is about 1/2 at every depth (no vanishing or exploding).
    for name, value in feats.items():
        second_moment = value.pow(2).mean(dim=(0, 2, 3))
        assert 0.15 < float(second_moment.min()) and float(second_moment.max()) < 1.0, name
        assert abs(float(second_moment.mean()) - 0.5) < 0.05, name


def test_extractor_rejects_unknown_taps_and_bad_shapes():
    extractor = FeatureExtractor(build_vgg16_features(8))
    assert extractor.available_layers == ("relu1_2", "relu2_2")
    with pytest.raises(ValueError, match="relu3_3"):
        extractor(torch.rand(1, 3, 8, 8), ["relu3_3"])
    with pytest.raises(ValueError):
        extractor(torch.rand(3, 8, 8), ["relu1_2"])


def test_gradient_reaches_the_image_not_the_weights():
    extractor = FeatureExtractor(build_offline_vgg16())
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    extractor(image, ["relu4_3"])["relu4_3"].sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    assert all(p.grad is None for p in extractor.parameters())


def test_the_loss_network_in_bfloat16_gives_float32_features_and_nearly_the_same_gradient():
    """Stylization runs the loss network in bfloat16 where the hardware has it; the features it
    returns and the image gradient must stay those of float32 to within bfloat16's rounding."""
    assert BUNDLED_WEIGHTS.is_file(), "run `python -m ins_core weights` (the set-up does) first"
    weights, preprocessing = load_vgg_file(BUNDLED_WEIGHTS)
    extractor = FeatureExtractor(features_from_weights(weights), preprocessing=preprocessing)
    generator = torch.Generator().manual_seed(0)
    image = F.interpolate(torch.rand(1, 3, 8, 8, generator=generator), size=(64, 64), mode="bilinear", align_corners=False)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = image.clone().requires_grad_(True)
        features = extractor(x, ["relu2_2", "relu4_3"], dtype)
        assert all(f.dtype == torch.float32 for f in features.values())
        sum(f.pow(2).mean() for f in features.values()).backward()
        results[dtype] = features["relu4_3"].detach(), x.grad
    (full, full_grad), (half, half_grad) = results[torch.float32], results[torch.bfloat16]
    assert not torch.equal(half, full)  # it did compute in bfloat16
    assert float((half - full).norm() / full.norm()) < 0.05
    assert float(F.cosine_similarity(half_grad.flatten(), full_grad.flatten(), dim=0)) > 0.99
    assert all(p.dtype == torch.float32 for p in extractor.parameters())  # the bfloat16 copy leaves the weights alone


def test_the_loss_network_precision_setting():
    cpu = torch.device("cpu")
    assert loss_network_dtype("float32", cpu) == torch.float32
    assert loss_network_dtype("bfloat16", cpu) == torch.bfloat16
    assert loss_network_dtype("auto", cpu) == (torch.bfloat16 if native_bfloat16(cpu) else torch.float32)
    with pytest.raises(InputError, match="'half' is not one of auto, float32, bfloat16"):
        loss_network_dtype("half", cpu)
    assert cpu_flags_have_bfloat16("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni")
    assert cpu_flags_have_bfloat16("flags\t\t: fpu avx512f amx_bf16 amx_tile\nflags\t\t: fpu")
    assert not cpu_flags_have_bfloat16("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni")


def test_a_benchmark_figure_names_the_instructions_and_precision_its_cpu_computed_with():
    # Machines of one model name ("AMD EPYC") have run the same steps several-fold apart: the
    # hardware line says which instructions and loss precision a figure had, as /proc/cpuinfo lists them.
    import json
    from pathlib import Path

    info = json.loads(json.dumps(hardware_description(torch.device("cpu"))))  # as a bench line carries it
    assert info["cpu_cores"] >= 1 and info["cpu"]
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to check the flags against")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith(("flags", "Features"))).split(":", 1)[1].split())
    assert info["cpu_bfloat16"] == bool(flags & {"avx512_bf16", "amx_bf16"})
    needed = {"AVX512": "avx512f", "AVX2": "avx2"}.get(info["cpu_capability"])
    assert needed is None or needed in flags, (info["cpu_capability"], sorted(flags))
    assert info["cpu_capability"] != "DEFAULT" or "avx2" not in flags  # a CPU with AVX2 is named by it
