"""The worker protocol: JSON-lines events on the worker's stdout, commands on its stdin.

The worker tells the add-on what it is doing (stage, progress, previews, result, errors) one
JSON object per line, so the add-on can poll a pipe without blocking Blender. The long-lived
render server (the INS render engine) also reads commands, one JSON object per line, so F12
does not reload the model each frame. Every message is a small frozen dataclass whose fields
are validated by one table (`_schema`), both when built and when decoded. Plain Python only:
Blender imports this module.
"""

import json
import math
from dataclasses import dataclass, fields
from typing import IO, Any, ClassVar, Union, get_args

from .errors import InputError
from .schema import (
    Check,
    bool_field,
    choice_field,
    dataclass_kwargs,
    check_fields,
    int_field,
    list_field,
    number_field,
    optional_field,
    optional_number_field,
    record_field,
    str_field,
    weights_field,
)

STAGES = ("capture", "pretrain", "stylize", "export", "render")
ERROR_KINDS = ("bad_input", "out_of_memory", "internal")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ProtocolError(ValueError):
    """A JSON message that breaks the protocol: a bug on the other side, not a user mistake."""


class _Message:
    """Validation shared by every message: run the class's field table on construction."""

    _tag_key: ClassVar[str]
    _schema: ClassVar[dict[str, Check]] = {}

    @property
    def tag(self) -> str:
        """The value of the message's tag key ("stage", "render", ...)."""
        return getattr(self, self._tag_key)

    def __post_init__(self) -> None:
        where = f"{self._tag_key} '{self.tag}'"
        try:
            check_fields(self, self._schema, where)
            self._check_together(where)
        except InputError as e:
            raise ProtocolError(str(e)) from None

    def _check_together(self, where: str) -> None:
        """Cross-field checks; most messages have none."""


class _Event(_Message):
    _tag_key = "event"
    event: ClassVar[str]


class _Command(_Message):
    _tag_key = "command"
    command: ClassVar[str]


_steps = int_field(0)
_text = str_field()


@dataclass(frozen=True)
class StageEvent(_Event):
    """A new stage began; progress events that follow count up to `total_steps`."""

    stage: str
    total_steps: int = 0
    event: ClassVar[str] = "stage"
    _schema = {"stage": choice_field(STAGES), "total_steps": _steps}


@dataclass(frozen=True)
class ProgressEvent(_Event):
    """One step done; loss/psnr/eta_s are None when unknown (NaN/inf are sent as null)."""

    step: int
    total_steps: int
    loss: float | None = None
    psnr: float | None = None
    eta_s: float | None = None
    event: ClassVar[str] = "progress"
    _schema = {"step": _steps, "total_steps": _steps, "loss": optional_number_field(),
               "psnr": optional_number_field(), "eta_s": optional_number_field(0.0)}

    def _check_together(self, where: str) -> None:
        if self.step > self.total_steps:
            raise ProtocolError(f"{where}: field 'step' is {self.step} but 'total_steps' is "
                                f"{self.total_steps}; step must not exceed total_steps.")


@dataclass(frozen=True)
class PreviewEvent(_Event):
    """A preview image was written (path relative to the job directory)."""

    path: str
    event: ClassVar[str] = "preview"
    _schema = {"path": _text}


@dataclass(frozen=True)
class ResultEvent(_Event):
    """The job finished; `path` is the result manifest, relative to the job directory."""

    path: str
    event: ClassVar[str] = "result"
    _schema = {"path": _text}


@dataclass(frozen=True)
class ErrorEvent(_Event):
    """The job failed; `message` is the one sentence for the user, `log` the full log."""

    kind: str
    message: str
    log: str = "log.txt"
    event: ClassVar[str] = "error"
    _schema = {"kind": choice_field(ERROR_KINDS), "message": _text, "log": _text}


@dataclass(frozen=True)
class CancelledEvent(_Event):
    """The worker stopped on request after saving a checkpoint; a re-run resumes."""

    event: ClassVar[str] = "cancelled"


@dataclass(frozen=True)
class LogEvent(_Event):
    """A line for the add-on's status bar / console."""

    level: str
    message: str
    event: ClassVar[str] = "log"
    _schema = {"level": choice_field(LOG_LEVELS), "message": str_field(nonempty=False)}


@dataclass(frozen=True)
class ReadyEvent(_Event):
    """The render server loaded its model and reads commands now."""

    event: ClassVar[str] = "ready"


@dataclass(frozen=True)
class RenderedEvent(_Event):
    """The render server wrote the image asked for by `request_id` to `path`."""

    request_id: str
    path: str
    event: ClassVar[str] = "rendered"
    _schema = {"request_id": _text, "path": _text}


_finite = number_field()
# The Z pass where a ray meets no surface: what Cycles writes there.
NO_DEPTH = 1e10


# The most rays a pixel a render may ask for (8 x 8).
MAX_SAMPLES = 64


def square_samples(value: Any, where: str) -> int:
    """Rays a pixel as every renderer here takes them (the protocol, the CLI, render_frame): a
    square number from 1 to MAX_SAMPLES, a k x k grid in each pixel; InputError otherwise."""
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SAMPLES
            and math.isqrt(value) ** 2 == value):
        raise InputError(f"{where} is {value!r}; use a square number from 1 to {MAX_SAMPLES} (1, 4, 9, 16, ...).")
    return value


def _blades(value: Any, where: str) -> int:
    int_field(0)(value, where)
    if value in (1, 2):
        raise InputError(f"{where} is {value}; use 0 for a round aperture or 3 or more blades.")
    return value


# A camera's depth of field (ins_core.data.lens.ThinLens's fields).
_LENS = record_field({"focus_distance": number_field(0.0, above=True), "aperture_radius": number_field(0.0),
                      "ratio": number_field(0.0, above=True), "blades": _blades, "rotation": _finite})


# Field-to-world: a 4 x 4 of finite numbers (the server checks it is a move, a turn and one scale).
_PLACEMENT = list_field(list_field(_finite, length=4), length=4)
# The camera's poses over the shutter, evenly spaced in time: two or more 4 x 4s.
_MOTION = list_field(_PLACEMENT, min_len=2)


@dataclass(frozen=True)
class RenderCommand(_Command):
    """Render one view: camera-to-world (Blender `matrix_world`), pinhole intrinsics in pixels.

    `out` gets an RGBA PNG: straight alpha over a transparent background, or, with `background`
    (linear RGB, Blender's world colour when Film > Transparent is off), the field over that colour
    and opaque. `depth_out`, when given, gets the Z pass as Blender keeps it: the distance along
    the camera's viewing axis, `NO_DEPTH` where no surface is, float32 little-endian, top row first.
    `mist`, when given ({"start", "depth", "exponent", "out"}: the world's mist settings, the falloff
    as an exponent), has the Mist pass written to its `out` the same way. `normal_out`, when given,
    gets the Normal pass: world-space normals facing the camera, three float32 a pixel (x, y, z).
    An `orthographic` view's fx, fy are pixels per world unit (its rays parallel, from the camera's
    plane: ins_core.data.cameras.rays_from_pixels). `samples` rays a pixel (a square number, k x k
    inside it) anti-alias the image, Mist and Normal; the Z pass is the centre-most sample's.
    `lens`, when given (the camera's Depth of Field: {"focus_distance", "aperture_radius", "ratio",
    "blades", "rotation"}, ins_core.data.lens.ThinLens), starts each of those rays at its own point of
    the aperture: what lies off the plane in focus blurs. `motion`, when given (motion blur: the
    camera-to-world matrices at evenly spaced times from the shutter's opening to its closing, two
    or more), casts each ray at its own time in the shutter (ins_core.data.motion). `placement`,
    when given (field-to-world: the `matrix_world` of the object the field follows, a move, a turn
    and one scale), puts the field there instead of where it was captured (ins_core.data.placement);
    every other field of the command stays in world units. `others`, when given, are more finished
    jobs' fields to render in the same frame ({"job": its folder, "placement", "style_mix" and
    "motion" as above or null: every stylized object the scene shows, its motion the camera's relative
    to that object; a null style mix: the one its job was stylized with); the server loads each
    once, renders each along the same rays and lays them together, nearest first ray by ray
    (ins_core.render.frame.render_fields), the passes too.
    """

    request_id: str
    c2w: list[list[float]]
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    out: str
    style_mix: list[float] | None = None
    background: list[float] | None = None
    depth_out: str | None = None
    mist: dict | None = None
    normal_out: str | None = None
    orthographic: bool = False
    samples: int = 1
    lens: dict | None = None
    motion: list[list[list[float]]] | None = None
    placement: list[list[float]] | None = None
    others: list[dict] | None = None
    command: ClassVar[str] = "render"
    _schema = {
        "request_id": _text,
        "c2w": list_field(list_field(_finite, length=4), length=4),
        "fx": number_field(0.0, above=True),
        "fy": number_field(0.0, above=True),
        "cx": _finite,
        "cy": _finite,
        "width": int_field(1),
        "height": int_field(1),
        "out": _text,
        "style_mix": optional_field(weights_field()),
        "background": optional_field(list_field(number_field(0.0), length=3)),
        "depth_out": optional_field(_text),
        "mist": optional_field(record_field({"start": _finite, "depth": number_field(0.0), "exponent": number_field(0.0, above=True),
                                             "out": _text})),
        "normal_out": optional_field(_text),
        "orthographic": bool_field(),
        "samples": square_samples,
        "lens": optional_field(_LENS),
        "motion": optional_field(_MOTION),
        "placement": optional_field(_PLACEMENT),
        "others": optional_field(list_field(record_field({"job": _text, "placement": optional_field(_PLACEMENT),
                                                          "style_mix": optional_field(weights_field()),
                                                          "motion": optional_field(_MOTION)}))),
    }


@dataclass(frozen=True)
class QuitCommand(_Command):
    """Ask the render server to exit cleanly."""

    command: ClassVar[str] = "quit"


Event = Union[StageEvent, ProgressEvent, PreviewEvent, ResultEvent, ErrorEvent, CancelledEvent,
              LogEvent, ReadyEvent, RenderedEvent]
Command = Union[RenderCommand, QuitCommand]
Message = Union[Event, Command]

EVENTS: dict[str, type] = {c.event: c for c in get_args(Event)}
COMMANDS: dict[str, type] = {c.command: c for c in get_args(Command)}


def _nulls_for_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_nulls_for_nonfinite(v) for v in value]
    if isinstance(value, dict):
        return {k: _nulls_for_nonfinite(v) for k, v in value.items()}
    return value


def encode(msg: Message) -> str:
    """One compact JSON line (no newline) for an event or command; NaN/inf become null."""
    body = {msg._tag_key: msg.tag, **{f.name: getattr(msg, f.name) for f in fields(msg)}}
    return json.dumps(_nulls_for_nonfinite(body), separators=(",", ":"), allow_nan=False)


def write_message(msg: Message, stream: IO[str]) -> None:
    """Write one message line and flush, so the reader sees it at once (pipes buffer)."""
    stream.write(encode(msg) + "\n")
    stream.flush()


def _decode(line: str | bytes, registry: dict[str, type], key: str) -> Any:
    """Parse one line; None unless it is a JSON object (workers may print stray text)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    tag = obj.get(key)
    if not (isinstance(tag, str) and tag in registry):
        raise ProtocolError(f"{key} message: field '{key}' is {json.dumps(tag)}; use one of "
                            f"{', '.join(map(repr, registry))}.")
    cls = registry[tag]
    try:
        # Unknown extra fields are ignored so that a newer worker can add fields.
        kwargs = dataclass_kwargs(cls, obj, f"{key} '{tag}'", ignore=(key,), allow_unknown=True)
    except InputError as e:
        raise ProtocolError(str(e)) from None
    return cls(**kwargs)


def decode_event(line: str | bytes) -> Event | None:
    """Event from one stdout line of the worker; None for blank or non-JSON-object lines."""
    return _decode(line, EVENTS, "event")


def decode_command(line: str | bytes) -> Command | None:
    """Command from one stdin line of the render server; None for blank or non-object lines."""
    return _decode(line, COMMANDS, "command")
