"""The job directory: the one contract between the Blender add-on and the worker.

`job.json` says what to do (`JobSpec`), `result/result.json` says what came out
(`ResultManifest`). Both are validated field by field so that a mistake reaches the user as
one sentence naming the file, the field and the fix (`InputError`), never as a traceback from
deep inside training. Plain Python only (no torch, numpy or bpy): Blender imports this module.

The small field checks below (`int_field`, `list_field`, ...) are shared with `protocol.py`.
"""

import copy
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, InitVar, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import InputError, require
from .stylize_options import PALETTE_SPREAD_AUTO, STYLE_DETAILS, STYLIZE_MODES, view_mode_only_asked

JOB_VERSION = 1
MODES = ("nerf", "sdf")
PRESETS = ("preview", "standard", "high")
DEVICES = ("auto", "cpu", "cuda", "mps")
OUTPUTS = ("mesh", "render_engine")
MIX_TOLERANCE = 1e-6

# ---------------------------------------------------------------------------------------------
# Field checks: each takes (value, where) and returns the normalised value or raises InputError.
# `where` reads like "job.json: field 'seed'", so every message names the file and the field.
# ---------------------------------------------------------------------------------------------

Check = Callable[[Any, str], Any]


def _show(value: Any) -> str:
    """Short rendering of a bad value for an error message."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _quoted(options: Iterable[Any]) -> str:
    return ", ".join(repr(o) for o in options)


def _sub(where: str, suffix: str) -> str:
    """"x: field 'styles'" + "[0]" -> "x: field 'styles[0]'" (names nested fields exactly)."""
    return where[:-1] + suffix + "'" if where.endswith("'") else where + suffix


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_field(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer (never a bool) within optional bounds."""

    def check(value: Any, where: str) -> int:
        require(_is_int(value), f"{where} is {_show(value)}; use an integer.")
        require(minimum is None or value >= minimum,
                f"{where} is {value}; use an integer >= {minimum}.")
        require(maximum is None or value <= maximum,
                f"{where} is {value}; use an integer <= {maximum}.")
        return int(value)

    return check


def number_field(minimum: float | None = None, *, above: bool = False, maximum: float | None = None) -> Check:
    """A finite number, returned as float; `above` makes the minimum exclusive; `maximum` is inclusive."""

    def check(value: Any, where: str) -> float:
        require(_is_number(value), f"{where} is {_show(value)}; use a number.")
        value = float(value)
        require(math.isfinite(value), f"{where} is {_show(value)}; use a finite number.")
        if minimum is not None:
            ok = value > minimum if above else value >= minimum
            require(ok, f"{where} is {value:g}; use a number {'>' if above else '>='} {minimum:g}.")
        if maximum is not None:
            require(value <= maximum, f"{where} is {value:g}; use a number <= {maximum:g}.")
        return value

    return check


def optional_number_field(minimum: float | None = None) -> Check:
    """A number or null; NaN/inf become None (a diverged loss is reported as 'unknown')."""
    finite = number_field(minimum)

    def check(value: Any, where: str) -> float | None:
        if value is None or (_is_number(value) and not math.isfinite(value)):
            return None
        return finite(value, where)

    return check


def bool_field() -> Check:
    """true or false (not 0/1, not "yes")."""

    def check(value: Any, where: str) -> bool:
        require(isinstance(value, bool), f"{where} is {_show(value)}; use true or false.")
        return value

    return check


def str_field(nonempty: bool = True) -> Check:
    """A string, by default non-empty."""

    def check(value: Any, where: str) -> str:
        require(isinstance(value, str), f"{where} is {_show(value)}; use a string.")
        require(not nonempty or value.strip(), f"{where} is empty; give a non-empty string.")
        return value

    return check


def choice_field(options: Iterable[str]) -> Check:
    """One string out of a fixed set."""
    options = tuple(options)

    def check(value: Any, where: str) -> str:
        require(isinstance(value, str) and value in options,
                f"{where} is {_show(value)}; use one of {_quoted(options)}.")
        return value

    return check


def auto_or_field(inner: Check) -> Check:
    """The string "auto" (`PALETTE_SPREAD_AUTO`), or whatever `inner` accepts."""

    def check(value: Any, where: str) -> Any:
        if isinstance(value, str):
            require(value == PALETTE_SPREAD_AUTO, f"{where} is {_show(value)}; use \"{PALETTE_SPREAD_AUTO}\" or a number.")
            return value
        return inner(value, where)

    return check


def optional_field(inner: Check) -> Check:
    """null, or whatever `inner` accepts."""

    def check(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)

    return check


def list_field(item: Check, *, min_len: int = 0, length: int | None = None) -> Check:
    """A list (or tuple) whose items pass `item`; returned as a new list."""

    def check(value: Any, where: str) -> list:
        require(isinstance(value, (list, tuple)), f"{where} is {_show(value)}; use a list.")
        if length is not None:
            require(len(value) == length,
                    f"{where} has {len(value)} item(s); give exactly {length}.")
        require(len(value) >= min_len,
                f"{where} has {len(value)} item(s); give at least {min_len}.")
        return [item(v, _sub(where, f"[{i}]")) for i, v in enumerate(value)]

    return check


def dict_field(values: Check | Mapping[str, Check]) -> Check:
    """A JSON object with non-empty string keys.

    `values` is one check for every value, or a table key -> check that also fixes the keys.
    """
    table = values if isinstance(values, Mapping) else None

    def check(value: Any, where: str) -> dict:
        require(isinstance(value, Mapping), f"{where} is {_show(value)}; use a JSON object.")
        out = {}
        for key, v in value.items():
            require(isinstance(key, str) and key,
                    f"{where} has key {_show(key)}; use non-empty string keys.")
            require(table is None or key in table,
                    f"{where} has unknown key {key!r}; use one of {_quoted(table or ())}.")
            out[key] = (values if table is None else table[key])(v, _sub(where, f".{key}"))
        return out

    return check


def record_field(table: Mapping[str, Check]) -> Check:
    """A JSON object with exactly the keys of `table`, each checked by its entry."""

    def check(value: Any, where: str) -> dict:
        require(isinstance(value, Mapping), f"{where} is {_show(value)}; use a JSON object.")
        _check_key_sets(value, table, where, required=table)
        return {k: c(value[k], _sub(where, f".{k}")) for k, c in table.items()}

    return check


def relpath_field() -> Check:
    """A path relative to the job directory that stays inside it (the job must be portable)."""

    def check(value: Any, where: str) -> str:
        str_field()(value, where)
        fix = "copy the file into the job directory and give its path relative to it, e.g. 'styles/a.jpg'"
        require("\\" not in value, f"{where} is {_show(value)}; use forward slashes, e.g. 'styles/a.jpg'.")
        absolute = PurePosixPath(value).is_absolute() or bool(PureWindowsPath(value).anchor)
        require(not absolute, f"{where} is the absolute path {_show(value)}; {fix}.")
        parts = PurePosixPath(value).parts
        require(".." not in parts, f"{where} is {_show(value)} which leaves the job directory ('..'); {fix}.")
        require(bool(parts), f"{where} is {_show(value)} which names no file; {fix}.")
        return PurePosixPath(*parts).as_posix()

    return check


def weights_field() -> Check:
    """Non-negative mixing weights that sum to 1 (within MIX_TOLERANCE)."""
    items = list_field(number_field(0.0), min_len=1)

    def check(value: Any, where: str) -> list[float]:
        weights = items(value, where)
        total = math.fsum(weights)
        require(abs(total - 1.0) <= MIX_TOLERANCE,
                f"{where} sums to {total:.9g}; give weights that sum to 1.")
        return weights

    return check


def version_field(current: int) -> Check:
    """The file format version this code reads."""

    def check(value: Any, where: str) -> int:
        int_field()(value, where)
        require(value == current,
                f"{where} is {value}; this INS version reads version {current}, "
                f"so re-create the file or update INS for Blender.")
        return value

    return check


# ---------------------------------------------------------------------------------------------
# Dataclass plumbing shared by JobSpec, ResultManifest and the protocol messages.
# ---------------------------------------------------------------------------------------------


def _check_key_sets(d: Mapping, allowed: Iterable[str], where: str, required: Iterable[str]) -> None:
    allowed = list(allowed)
    unknown = sorted(str(k) for k in d if k not in allowed)
    require(not unknown, f"{where} has unknown field(s) {_quoted(unknown)}; remove them "
                         f"(known fields: {_quoted(allowed)}).")
    missing = [k for k in required if k not in d]
    require(not missing, f"{where} is missing field(s) {_quoted(missing)}; add them.")


def dataclass_kwargs(cls: type, d: Any, source: str, *, ignore: Iterable[str] = (),
                     allow_unknown: bool = False) -> dict[str, Any]:
    """Check a JSON object's keys against a dataclass's fields and return them as kwargs.

    Unknown keys are an error (a typo must not be silently ignored) unless `allow_unknown`.
    """
    require(isinstance(d, Mapping), f"{source}: the content is {_show(d)}; use a JSON object {{...}}.")
    ignore = set(ignore)
    names = [f.name for f in fields(cls) if f.init]
    required = [f.name for f in fields(cls)
                if f.init and f.default is MISSING and f.default_factory is MISSING]
    body = {k: v for k, v in d.items() if k not in ignore and (not allow_unknown or k in names)}
    _check_key_sets(body, names, source, required)
    return body


def check_fields(obj: Any, table: Mapping[str, Check], source: str) -> None:
    """Validate and normalise `obj`'s fields in place (works on frozen dataclasses too)."""
    for name, check in table.items():
        object.__setattr__(obj, name, check(getattr(obj, name), f"{source}: field '{name}'"))


def _plain(obj: Any) -> dict[str, Any]:
    """Dataclass fields -> dict, copying lists and dicts so callers cannot alias them."""
    return {f.name: copy.deepcopy(getattr(obj, f.name)) for f in fields(obj)}


# ---------------------------------------------------------------------------------------------
# JSON files.
# ---------------------------------------------------------------------------------------------


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON so that readers see either the old file or the whole new one.

    Serialises first (a failure there touches nothing), then writes a temp file in the same
    directory, flushes and fsyncs it and renames it over `path`. NaN/inf are refused because
    they are not JSON.
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable where the OS allows it (not on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file; every failure is an InputError naming the file (and line/column)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found; check the path.") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: {what} is not UTF-8 text ({e.reason}); re-create it.") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror}); check the path.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: {what} is not valid JSON at line {e.lineno}, column {e.colno} "
                         f"({e.msg}); fix or re-create it.") from None


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
                f"{where} is {_show(value)}; use a list of {_quoted(OUTPUTS)}.")
        chosen = {choice(v, _sub(where, f"[{i}]")) for i, v in enumerate(value)}
        require(bool(chosen), f"{where} is empty; choose at least one of {_quoted(OUTPUTS)}.")
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
        return _plain(self)

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
            raise InputError(f"{where} is {_show(value)}; use an ISO 8601 timestamp "
                             f"like '2024-05-01T12:00:00+00:00'.") from None
        return value

    return check


def _aabb_field() -> Check:
    six = list_field(number_field(), length=6)

    def check(value: Any, where: str) -> list[float]:
        box = six(value, where)
        require(all(box[i] < box[i + 3] for i in range(3)),
                f"{where} is {_show(box)}; give min x, y, z then max x, y, z with each min < max.")
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
