"""job.json / result.json: validation messages, round trips and atomic writes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ins_core import json_files
from ins_core.errors import InputError
from ins_core.job import (
    OVERRIDES,
    JobPaths,
    JobSpec,
    ResultManifest,
)
from ins_core.json_files import read_json, write_json_atomic


def full_job() -> dict:
    return {
        "version": 1,
        "mode": "sdf",
        "styles": ["styles/a.jpg", "styles/b.png"],
        "preset": "high",
        "overrides": {"stylize_steps": 500, "lr": 0.001, "nnfm": True, "style_weight": 2},
        "device": "cpu",
        "outputs": ["render_engine", "mesh"],
        "seed": 7,
        "vgg_weights": "/home/me/vgg16.pth",
        "allow_download": True,
        "cache_dir": "/home/me/.cache/ins",
        "style_mix": [0.25, 0.75],
    }


def full_result() -> dict:
    return {
        "version": 1,
        "mode": "nerf",
        "styles": ["starry_night"],
        "backbone": {"name": "vgg16", "pretrained": False, "note": "offline backbone"},
        "files": {"mesh_glb": "result/mesh.glb", "texture": "result/texture.png"},
        "metrics": {"psnr": 27.5, "ssim": 0.91},
        "timings_s": {"pretrain": 12.0, "stylize": 30.5},
        "aabb": [-1, -1, -0.5, 1, 1, 0.5],
        "created": "2024-05-01T12:00:00+00:00",
    }


# --------------------------------------------------------------------------- JobPaths


def test_job_paths_layout_and_make_dirs(tmp_path: Path) -> None:
    paths = JobPaths(str(tmp_path / "JOB"))
    root = tmp_path / "JOB"
    assert paths.root == root
    assert paths.job_json == root / "job.json"
    assert paths.dataset_dir == root / "dataset"
    assert paths.styles_dir == root / "styles"
    assert paths.checkpoints_dir == root / "checkpoints"
    assert paths.result_dir == root / "result"
    assert paths.result_json == root / "result" / "result.json"
    assert paths.metrics_json == root / "result" / "metrics.json"
    assert paths.renders_dir == root / "result" / "renders"
    assert paths.log_path == root / "log.txt"
    assert paths.cancel_path == root / "cancel"
    paths.make_dirs()
    paths.make_dirs()  # idempotent
    for d in (paths.dataset_dir, paths.styles_dir, paths.checkpoints_dir, paths.renders_dir):
        assert d.is_dir()
    assert not paths.cancel_path.exists()


def test_job_paths_resolve_and_relative(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path)
    assert paths.resolve("styles/a.jpg") == tmp_path / "styles" / "a.jpg"
    assert paths.relative(tmp_path / "result" / "preview_000001.png") == "result/preview_000001.png"
    with pytest.raises(InputError, match=r"\.\."):
        paths.resolve("../outside.jpg")
    with pytest.raises(InputError, match="absolute"):
        paths.resolve("/etc/passwd")


# --------------------------------------------------------------------------- JobSpec


def test_job_round_trip_through_dict_and_file(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(full_job())
    # outputs come back in canonical order, int weights as floats
    assert spec.outputs == ["mesh", "render_engine"]
    assert spec.overrides["style_weight"] == 2.0 and isinstance(spec.overrides["style_weight"], float)
    assert JobSpec.from_dict(spec.to_dict()) == spec
    path = tmp_path / "job.json"
    spec.save(path)
    assert JobSpec.load(path) == spec
    assert json.loads(path.read_text())["style_mix"] == [0.25, 0.75]


def test_job_defaults_from_minimal_dict() -> None:
    spec = JobSpec.from_dict({"mode": "nerf", "styles": ["./styles//a.jpg"]})
    assert spec.styles == ["styles/a.jpg"]
    assert (spec.version, spec.preset, spec.device, spec.outputs, spec.seed) == (
        1, "standard", "auto", ["mesh"], 0)
    assert spec.overrides == {} and spec.style_mix is None
    assert spec.allow_download is False and spec.vgg_weights is None and spec.cache_dir is None


def test_job_to_dict_is_a_copy() -> None:
    spec = JobSpec.from_dict(full_job())
    d = spec.to_dict()
    d["styles"].append("styles/c.jpg")
    d["overrides"]["lr"] = 5.0
    assert spec.styles == ["styles/a.jpg", "styles/b.png"]
    assert spec.overrides["lr"] == 0.001


def test_every_override_key_accepts_a_sensible_value() -> None:
    sample = {"nnfm": False, "color_transfer": True, "lr": 0.01, "stylize_mode": "view", "stroke_scale": 1.5, "palette_weight": 1.0,
              "palette_spread": 0.5, "style_detail": "full", "mesh_keep_unseen": True,
              "mesh_smooth": 0}
    overrides = {k: sample.get(k, 64) for k in OVERRIDES}
    assert JobSpec(mode="nerf", styles=["styles/a.jpg"], overrides=overrides).overrides == overrides
    automatic = {**overrides, "palette_spread": "auto"}  # the palette spread's default, chosen per painting
    assert JobSpec(mode="nerf", styles=["styles/a.jpg"], overrides=automatic).overrides == automatic


def test_a_patch_mode_job_may_turn_the_view_mode_terms_off() -> None:
    overrides = {"stylize_mode": "patch", "palette_weight": 0.0, "consistency_weight": 0.0}
    assert JobSpec(mode="nerf", styles=["styles/a.jpg"], overrides=overrides).overrides == overrides


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"mode": "voxel"}, "field 'mode' is 'voxel'; use one of 'nerf', 'sdf'"),
        ({"styles": ["/home/me/a.jpg"]}, r"field 'styles\[0\]' is the absolute path"),
        ({"styles": ["C:/Users/me/a.jpg"]}, r"field 'styles\[0\]' is the absolute path"),
        ({"styles": ["styles\\a.jpg"]}, r"field 'styles\[0\]'.*forward slashes"),
        ({"styles": ["styles/a.jpg", "styles/../../b.jpg"]}, r"field 'styles\[1\]'.*'\.\.'"),
        ({"styles": []}, "field 'styles' has 0 item"),
        ({"styles": "styles/a.jpg"}, "field 'styles' is 'styles/a.jpg'; use a list"),
        ({"styles": [""]}, r"field 'styles\[0\]' is empty"),
        ({"colour": "red", "zzz": 1}, "unknown field.*'colour', 'zzz'"),
        ({"style_mix": [0.5, 0.6]}, "field 'style_mix' sums to 1.1"),
        ({"style_mix": [1.0]}, "field 'style_mix' has 1 weight.*2 style"),
        ({"style_mix": [1.5, -0.5]}, r"field 'style_mix\[1\]' is -0.5"),
        ({"style_mix": "even"}, "field 'style_mix' is 'even'; use a list"),
        ({"preset": "ultra"}, "field 'preset' is 'ultra'"),
        ({"device": "tpu"}, "field 'device' is 'tpu'"),
        ({"outputs": []}, "field 'outputs' is empty"),
        ({"outputs": ["mesh", "video"]}, r"field 'outputs\[1\]' is 'video'"),
        ({"seed": -1}, "field 'seed' is -1; use an integer >= 0"),
        ({"seed": True}, "field 'seed' is true; use an integer"),
        ({"seed": 1.5}, "field 'seed' is 1.5; use an integer"),
        ({"allow_download": "yes"}, "field 'allow_download' is 'yes'; use true or false"),
        ({"vgg_weights": 3}, "field 'vgg_weights' is 3; use a string"),
        ({"cache_dir": ""}, "field 'cache_dir' is empty"),
        ({"version": 2}, "field 'version' is 2"),
        ({"overrides": {"learning_rate": 1}}, "field 'overrides' has unknown key 'learning_rate'"),
        ({"overrides": {"lr": "fast"}}, "field 'overrides.lr' is 'fast'; use a number"),
        ({"overrides": {"lr": 0}}, "field 'overrides.lr' is 0; use a number > 0"),
        ({"overrides": {"stylize_steps": 2.5}}, "field 'overrides.stylize_steps' is 2.5; use an integer"),
        ({"overrides": {"nnfm": 1}}, "field 'overrides.nnfm' is 1; use true or false"),
        ({"overrides": {"style_weight": float("inf")}}, "field 'overrides.style_weight'.*finite"),
        ({"overrides": {"palette_spread": 1.5}}, r"field 'overrides.palette_spread' is 1.5; use a number <= 1\."),
        ({"overrides": {"palette_spread": -0.1}}, "field 'overrides.palette_spread' is -0.1; use a number >= 0"),
        ({"overrides": {"palette_spread": "half"}}, r"field 'overrides.palette_spread' is 'half'; use \"auto\" or a number\.$"),
        ({"overrides": [1, 2]}, "field 'overrides' is \\[1, 2\\]; use a JSON object"),
        ({"overrides": {"stylize_mode": "patch", "style_detail": "full"}},
         r"field 'overrides.style_detail' works in view mode only; remove it, or set 'overrides.stylize_mode' to 'view'\.$"),
        ({"overrides": {"stylize_mode": "patch", "palette_weight": 2.0}}, "field 'overrides.palette_weight' works in view mode only"),
    ],
)
def test_job_rejections_name_the_field(change: dict, expected: str) -> None:
    d = full_job()
    d.update(change)
    with pytest.raises(InputError, match=expected) as info:
        JobSpec.from_dict(d, source="JOB/job.json")
    assert str(info.value).startswith("JOB/job.json")


def test_job_missing_required_field_and_non_object() -> None:
    d = full_job()
    del d["mode"]
    with pytest.raises(InputError, match="job.json is missing field.*'mode'"):
        JobSpec.from_dict(d)
    with pytest.raises(InputError, match="job.json: the content is \\[\\]; use a JSON object"):
        JobSpec.from_dict([])


def test_job_constructor_validates() -> None:
    with pytest.raises(InputError, match="field 'mode' is 'voxel'"):
        JobSpec(mode="voxel", styles=["styles/a.jpg"])


def test_job_save_refuses_an_invalid_spec_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    spec = JobSpec.from_dict(full_job())
    spec.save(path)
    before = path.read_bytes()
    spec.outputs = {"render_engine"}  # a set is fine: saved as a list
    spec.save(path)
    assert json.loads(path.read_text())["outputs"] == ["render_engine"]
    before = path.read_bytes()
    spec.styles.append("/abs/c.jpg")
    with pytest.raises(InputError, match=r"field 'styles\[2\]'"):
        spec.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["job.json"]


def test_job_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "job.json"
    with pytest.raises(InputError, match=re.escape(f"{path}: job file not found")):
        JobSpec.load(path)


def test_job_load_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text('{\n  "mode": "nerf",\n  "styles": ["styles/a.jpg",]\n}\n')
    with pytest.raises(InputError) as info:
        JobSpec.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "line 3, column" in message


def test_job_load_validation_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"mode": "voxel", "styles": ["styles/a.jpg"]}))
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: field 'mode' is 'voxel'")):
        JobSpec.load(path)


def test_read_json_non_utf8_and_directory(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError, match="bad.json: settings file is not UTF-8"):
        read_json(bad, "settings file")
    with pytest.raises(InputError, match="cannot read the settings file"):
        read_json(tmp_path, "settings file")
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good) == {"a": [1, 2]}


# --------------------------------------------------------------------------- atomic writes


def test_write_json_atomic_writes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("bad", [{"a": object()}, {"a": float("nan")}])
def test_write_json_atomic_serialisation_failure_keeps_old_file(tmp_path: Path, bad: dict) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises((TypeError, ValueError)):
        write_json_atomic(path, bad)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_write_json_atomic_failed_rename_removes_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})

    def broken_replace(src, dst):
        assert Path(src).parent == tmp_path  # temp file lives next to the target
        raise OSError("disk full")

    monkeypatch.setattr(json_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


# --------------------------------------------------------------------------- ResultManifest


def test_result_round_trip(tmp_path: Path) -> None:
    manifest = ResultManifest.from_dict(full_result())
    assert manifest.aabb == [-1.0, -1.0, -0.5, 1.0, 1.0, 0.5]
    assert ResultManifest.from_dict(manifest.to_dict()) == manifest
    path = tmp_path / "result.json"
    manifest.save(path)
    assert ResultManifest.load(path) == manifest
    assert os.listdir(tmp_path) == ["result.json"]


def test_result_created_defaults_to_now() -> None:
    d = full_result()
    del d["created"], d["files"], d["metrics"], d["timings_s"]
    manifest = ResultManifest.from_dict(d)
    assert manifest.created.endswith("+00:00") and manifest.files == {}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"aabb": [1, 0, 0, 0, 1, 1]}, "field 'aabb'.*each min < max"),
        ({"aabb": [0, 0, 0, 1, 1]}, "field 'aabb' has 5 item"),
        ({"aabb": [0, 0, 0, 1, 1, "2"]}, r"field 'aabb\[5\]' is '2'; use a number"),
        ({"created": "yesterday"}, "field 'created' is 'yesterday'; use an ISO 8601"),
        ({"backbone": {"name": "vgg16", "pretrained": True}}, "field 'backbone' is missing.*'note'"),
        ({"backbone": {"name": "vgg16", "pretrained": "no", "note": ""}},
         "field 'backbone.pretrained' is 'no'"),
        ({"files": {"mesh_glb": "/tmp/mesh.glb"}}, "field 'files.mesh_glb' is the absolute path"),
        ({"metrics": {"psnr": "high"}}, "field 'metrics.psnr' is 'high'; use a number"),
        ({"timings_s": {"stylize": -1}}, "field 'timings_s.stylize' is -1"),
        ({"styles": []}, "field 'styles' has 0 item"),
        ({"mode": "mesh"}, "field 'mode' is 'mesh'"),
        ({"extra": 1}, "unknown field.*'extra'"),
    ],
)
def test_result_rejections_name_the_field(change: dict, expected: str) -> None:
    d = full_result()
    d.update(change)
    with pytest.raises(InputError, match=expected) as info:
        ResultManifest.from_dict(d, source="result/result.json")
    assert str(info.value).startswith("result/result.json")


# --------------------------------------------------------------------------- import hygiene


def test_job_and_protocol_import_without_torch_numpy_or_bpy() -> None:
    code = (
        "import sys, ins_core.job, ins_core.protocol\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'bpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
