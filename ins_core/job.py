"""The job directory: the one contract between the Blender add-on and the worker.

`job.json` says what to do (`JobSpec`), `result/result.json` says what came out
(`ResultManifest`). Both are validated field by field so that a mistake reaches the user as
one sentence naming the file, the field and the fix (`InputError`), never as a traceback from
deep inside training. Plain Python only (no torch, numpy or bpy): Blender imports this module.

The field checks are `schema.py`'s (shared with `protocol.py`), the atomic JSON writes
`json_files.py`'s.
"""

import os
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InputError, require
from .json_files import read_json, write_json_atomic
from .schema import (
    Check,
    auto_or_field,
    bool_field,
    check_fields,
    choice_field,
    dataclass_kwargs,
    dict_field,
    int_field,
    list_field,
    nested,
    number_field,
    optional_field,
    plain_fields,
    quoted,
    record_field,
    relpath_field,
    show_value,
    str_field,
    version_field,
    weights_field,
)
from .stylize_options import STYLE_DETAILS, STYLIZE_MODES, view_mode_only_asked

JOB_VERSION = 1
MODES = ("nerf", "sdf")
PRESETS = ("preview", "standard", "high")
DEVICES = ("auto", "cpu", "cuda", "mps")
OUTPUTS = ("mesh", "render_engine")

# ---------------------------------------------------------------------------------------------
# The job directory.
# ---------------------------------------------------------------------------------------------


class _InJob:
    """Read-only attribute: a fixed path inside the job directory."""

    def __init__(self, relative: str) -> None:
        self.relative = relative

    def __get__(self, obj: "JobPaths | None", owner: type | None = None) -> Path:
        return obj.root / self.relative if obj is not None else self  # type: ignore[return-value]


@dataclass(frozen=True)
class JobPaths:
    """Where everything lives inside a job directory (layout in DESIGN.md)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    job_json = _InJob("job.json")
    dataset_dir = _InJob("dataset")
    styles_dir = _InJob("styles")
    checkpoints_dir = _InJob("checkpoints")
    result_dir = _InJob("result")
    result_json = _InJob("result/result.json")
    metrics_json = _InJob("result/metrics.json")
    renders_dir = _InJob("result/renders")
    log_path = _InJob("log.txt")
    cancel_path = _InJob("cancel")  # its presence asks the worker to stop

    def make_dirs(self) -> None:
        """Create the job's sub-directories (idempotent)."""
        for d in (self.dataset_dir, self.styles_dir, self.checkpoints_dir, self.renders_dir):
            d.mkdir(parents=True, exist_ok=True)

    def resolve(self, relative: str) -> Path:
        """Absolute path of a job-relative path from job.json/result.json; refuses escapes."""
        return self.root / relpath_field()(relative, f"{self.root}: path")

    def relative(self, path: str | os.PathLike) -> str:
        """Job-relative POSIX path of a file inside the job (what events and manifests store)."""
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root)).as_posix()


def _outputs_field() -> Check:
    """Non-empty selection of OUTPUTS; duplicates dropped, canonical order."""
    choice = choice_field(OUTPUTS)

    def check(value: Any, where: str) -> list[str]:
        require(isinstance(value, (list, tuple, set, frozenset)),
                f"{where} is {show_value(value)}; use a list of {quoted(OUTPUTS)}.")
        chosen = {choice(v, nested(where, f"[{i}]")) for i, v in enumerate(value)}
        require(bool(chosen), f"{where} is empty; choose at least one of {quoted(OUTPUTS)}.")
        return [o for o in OUTPUTS if o in chosen]

    return check


# Hyper-parameters a job may override, with the check each value must pass.
OVERRIDES: dict[str, Check] = {
    "pretrain_steps": int_field(0),
    "stylize_steps": int_field(0),
    "train_resolution": int_field(8),
    "patch_size": int_field(8),
    "stride": int_field(1),
    "batch_rays": int_field(1),
    "mesh_resolution": int_field(16),
    "texture_size": int_field(16),
    "mesh_faces": int_field(0),  # 0: no face budget
    "mesh_keep_unseen": bool_field(),  # keep the surfaces no camera saw (default: left out of the mesh)
    "mesh_smooth": int_field(0),  # rounds of smoothing of the mesh (0: as marched)
    "style_weight": number_field(0.0),
    "content_weight": number_field(0.0),
    "geometry_weight": number_field(0.0),
    "tv_weight": number_field(0.0),
    "lr": number_field(0.0, above=True),
    "nnfm": bool_field(),
    "color_transfer": bool_field(),
    "stroke_scale": number_field(0.0, above=True),  # 1: the painting's own scale against the view; 2: strokes twice as big
    "palette_weight": number_field(0.0),  # view mode: the painting's colour range as a loss while training (0: off)
    "palette_spread": auto_or_field(number_field(0.0, maximum=1.0)),  # how far the match after training stretches colours to the painting's spread
    "consistency_weight": number_field(0.0),  # view mode: neighbouring views made to agree while training (0: off, the default)
    "style_detail": choice_field(STYLE_DETAILS),  # view mode: the painting's detail as a view can show it, its own, or auto (by the views' size)
    "stylize_mode": choice_field(STYLIZE_MODES),
    "vgg_size": int_field(32),
}


_JOB_FIELDS: dict[str, Check] = {
    "version": version_field(JOB_VERSION),
    "mode": choice_field(MODES),
    "styles": list_field(relpath_field(), min_len=1),
    "preset": choice_field(PRESETS),
    "overrides": dict_field(OVERRIDES),
    "device": choice_field(DEVICES),
    "outputs": _outputs_field(),
    "seed": int_field(0),
    "vgg_weights": optional_field(str_field()),
    "allow_download": bool_field(),
    "cache_dir": optional_field(str_field()),
    "style_mix": optional_field(weights_field()),
}


class _JsonFile:
    """to_dict / from_dict / save / load for a validated dataclass with a `source` InitVar."""

    _what = "JSON file"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of the fields."""
        return plain_fields(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "") -> Any:
        """Validate a parsed JSON object; errors name `source`, the field and the fix."""
        source = source or cls._default_source
        return cls(**dataclass_kwargs(cls, d, source), source=source)

    def save(self, path: str | os.PathLike) -> None:
        """Validate again (fields may have been changed since) and write atomically."""
        checked = type(self).from_dict(self.to_dict(), source=str(path))
        write_json_atomic(path, checked.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any:
        """Read and validate; every problem is an InputError naming the file."""
        return cls.from_dict(read_json(path, cls._what), source=str(path))


@dataclass(kw_only=True)
class JobSpec(_JsonFile):
    """job.json: what the worker is asked to do. Validated on construction."""

    version: int = JOB_VERSION
    mode: str
    styles: list[str]  # relative to the job directory, e.g. "styles/a.jpg"
    preset: str = "standard"
    overrides: dict[str, int | float | bool | str] = field(default_factory=dict)
    device: str = "auto"
    outputs: list[str] = field(default_factory=lambda: ["mesh"])
    seed: int = 0
    vgg_weights: str | None = None
    allow_download: bool = False
    cache_dir: str | None = None
    style_mix: list[float] | None = None  # one weight per style
    source: InitVar[str] = "job.json"  # names the origin in error messages

    _what = "job file"
    _default_source = "job.json"

    def __post_init__(self, source: str) -> None:
        check_fields(self, _JOB_FIELDS, source)
        require(self.style_mix is None or len(self.style_mix) == len(self.styles),
                f"{source}: field 'style_mix' has {len(self.style_mix or ())} weight(s) for "
                f"{len(self.styles)} style(s); give one weight per style.")
        if self.overrides.get("stylize_mode") == "patch":
            # Patch mode renders scattered pixels, not views: these would be refused by the
            # stylization later in the CLI's words, so name the job's own field here instead.
            asked = view_mode_only_asked(self.overrides)
            if asked:
                raise InputError(f"{source}: field 'overrides.{asked[0]}' works in view mode only; remove it, or set "
                                 f"'overrides.stylize_mode' to 'view'.")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _iso_field() -> Check:
    def check(value: Any, where: str) -> str:
        str_field()(value, where)
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise InputError(f"{where} is {show_value(value)}; use an ISO 8601 timestamp "
                             f"like '2024-05-01T12:00:00+00:00'.") from None
        return value

    return check


def _aabb_field() -> Check:
    six = list_field(number_field(), length=6)

    def check(value: Any, where: str) -> list[float]:
        box = six(value, where)
        require(all(box[i] < box[i + 3] for i in range(3)),
                f"{where} is {show_value(box)}; give min x, y, z then max x, y, z with each min < max.")
        return box

    return check


_RESULT_FIELDS: dict[str, Check] = {
    "version": version_field(JOB_VERSION),
    "mode": choice_field(MODES),
    "styles": list_field(str_field(), min_len=1),
    "backbone": record_field({"name": str_field(), "pretrained": bool_field(),
                              "note": str_field(nonempty=False)}),
    "files": dict_field(relpath_field()),
    "metrics": dict_field(number_field()),
    "timings_s": dict_field(number_field(0.0)),
    "aabb": _aabb_field(),
    "created": _iso_field(),
}


@dataclass(kw_only=True)
class ResultManifest(_JsonFile):
    """result/result.json: what the worker produced; file paths are relative to the job."""

    version: int = JOB_VERSION
    mode: str
    styles: list[str]  # style names, e.g. "starry_night"
    backbone: dict[str, Any]  # {"name": str, "pretrained": bool, "note": str}
    files: dict[str, str] = field(default_factory=dict)  # mesh_glb, mesh_npz, texture, ...
    metrics: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    aabb: list[float]  # min x, y, z then max x, y, z
    created: str = field(default_factory=_now_iso)
    source: InitVar[str] = "result.json"

    _what = "result manifest"
    _default_source = "result.json"

    def __post_init__(self, source: str) -> None:
        check_fields(self, _RESULT_FIELDS, source)
