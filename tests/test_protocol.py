"""Worker protocol: JSON-lines round trips, stray output, and validation messages."""

import io
import json
import math

import pytest

from ins_core.protocol import (
    COMMANDS,
    EVENTS,
    CancelledEvent,
    ErrorEvent,
    LogEvent,
    PreviewEvent,
    ProgressEvent,
    ProtocolError,
    QuitCommand,
    ReadyEvent,
    RenderCommand,
    RenderedEvent,
    ResultEvent,
    StageEvent,
    decode_command,
    decode_event,
    encode,
    write_message,
)

IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]

EVENT_SAMPLES = [
    StageEvent("capture", 12),
    StageEvent("render"),
    ProgressEvent(5, 100, loss=0.25, psnr=21.5, eta_s=30.0),
    ProgressEvent(0, 0),
    PreviewEvent("result/preview_000120.png"),
    ResultEvent("result/result.json"),
    ErrorEvent("out_of_memory", 'CUDA ran out of memory; pick the "preview" preset.\nsecond line'),
    ErrorEvent("bad_input", "No cameras.", log="logs/other.txt"),
    CancelledEvent(),
    LogEvent("warning", "no VGG weights; using the offline backbone"),
    ReadyEvent(),
    RenderedEvent("req-7", "/tmp/ins/frame_0001.png"),
]

COMMAND_SAMPLES = [
    RenderCommand("req-1", IDENTITY, 500.0, 500.0, 200.0, 150.0, 400, 300, "/tmp/out.png"),
    RenderCommand("req-2", IDENTITY, 1, 2, -3, 4.5, 1, 1, "out.png", style_mix=[0.5, 0.5], orthographic=True, samples=16,
                  lens={"focus_distance": 4.5, "aperture_radius": 0.02, "ratio": 1.0, "blades": 6, "rotation": 0.3},
                  motion=[IDENTITY, IDENTITY, IDENTITY]),
    RenderCommand("req-3", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", depth_out="o.depth",
                  mist={"start": 5.0, "depth": 25.0, "exponent": 2.0, "out": "o.mist"}, normal_out="o.normal",
                  placement=[[2.0, 0, 0, 1.0], [0, 2.0, 0, 0], [0, 0, 2.0, -3.5], [0, 0, 0, 1]],
                  others=[{"job": "/jobs/tree", "placement": IDENTITY, "style_mix": [1.0], "motion": [IDENTITY, IDENTITY]},
                          {"job": "/jobs/house", "placement": None, "style_mix": None, "motion": None}]),
    QuitCommand(),
]


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in EVENT_SAMPLES} == set(EVENTS.values())
    assert {type(m) for m in COMMAND_SAMPLES} == set(COMMANDS.values())


@pytest.mark.parametrize("event", EVENT_SAMPLES, ids=repr)
def test_event_round_trip(event) -> None:
    line = encode(event)
    assert "\n" not in line
    assert json.loads(line)["event"] == event.event
    assert decode_event(line) == event
    assert decode_event(line.encode() + b"\n") == event  # raw bytes from a pipe


@pytest.mark.parametrize("command", COMMAND_SAMPLES, ids=repr)
def test_command_round_trip(command) -> None:
    line = encode(command)
    assert "\n" not in line
    assert json.loads(line)["command"] == command.command
    assert decode_command(line) == command


def test_encode_is_compact_and_tagged() -> None:
    assert encode(StageEvent("pretrain", 3)) == '{"event":"stage","stage":"pretrain","total_steps":3}'
    assert encode(CancelledEvent()) == '{"event":"cancelled"}'
    assert encode(QuitCommand()) == '{"command":"quit"}'


def test_non_finite_numbers_are_sent_as_null() -> None:
    event = ProgressEvent(1, 2, loss=float("nan"), psnr=float("inf"), eta_s=-math.inf)
    assert (event.loss, event.psnr, event.eta_s) == (None, None, None)
    assert json.loads(encode(event)) == {"event": "progress", "step": 1, "total_steps": 2,
                                         "loss": None, "psnr": None, "eta_s": None}
    # a peer that writes Python's NaN token is read the same way
    line = '{"event":"progress","step":1,"total_steps":2,"loss":NaN,"psnr":null,"eta_s":null}'
    assert decode_event(line) == ProgressEvent(1, 2)


def test_construction_normalises_numbers() -> None:
    cmd = RenderCommand("r", [tuple(row) for row in IDENTITY], 1, 1, 0, 0, 2, 2, "o.png")
    assert cmd.c2w == IDENTITY and isinstance(cmd.fx, float)
    assert ProgressEvent(1, 2, loss=3).loss == 3.0


@pytest.mark.parametrize(
    "line",
    ["", "   ", "\n", "Loading model...", "[1, 2, 3]", "42", '"event"', "null",
     "{not json", "{'event': 'stage'}", "Warning: {x} is deprecated"],
)
def test_stray_lines_are_ignored(line: str) -> None:
    assert decode_event(line) is None
    assert decode_command(line) is None


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    line = '{"event":"preview","path":"result/p.png","width":64}'
    assert decode_event(line) == PreviewEvent("result/p.png")


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


def _render(**change) -> str:
    body = json.loads(encode(COMMAND_SAMPLES[0]))
    body.update(change)
    return json.dumps(body)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"event":"explode"}', "field 'event' is \"explode\"; use one of 'stage'"),
        ('{"stage":"capture","total_steps":3}', "field 'event' is null"),
        ('{"event":["stage"]}', "field 'event' is \\[\"stage\"\\]"),
        ('{"event":"stage","total_steps":3}', "event 'stage' is missing field.*'stage'"),
        ('{"event":"stage","stage":"bake","total_steps":3}', "event 'stage': field 'stage' is 'bake'"),
        ('{"event":"stage","stage":"capture","total_steps":-1}',
         "event 'stage': field 'total_steps' is -1; use an integer >= 0"),
        ('{"event":"progress","step":"3","total_steps":5}',
         "event 'progress': field 'step' is '3'; use an integer"),
        ('{"event":"progress","step":true,"total_steps":5}', "event 'progress': field 'step' is true"),
        ('{"event":"progress","step":6,"total_steps":5}', "field 'step' is 6 but 'total_steps' is 5"),
        ('{"event":"progress","step":1,"total_steps":5,"loss":"low"}',
         "event 'progress': field 'loss' is 'low'; use a number"),
        ('{"event":"progress","step":1,"total_steps":5,"eta_s":-2}',
         "event 'progress': field 'eta_s' is -2; use a number >= 0"),
        ('{"event":"preview","path":""}', "event 'preview': field 'path' is empty"),
        ('{"event":"result"}', "event 'result' is missing field.*'path'"),
        ('{"event":"error","kind":"segfault","message":"x"}', "event 'error': field 'kind' is 'segfault'"),
        ('{"event":"error","kind":"internal","message":3}', "event 'error': field 'message' is 3"),
        ('{"event":"log","level":"loud","message":"x"}', "event 'log': field 'level' is 'loud'"),
        ('{"event":"rendered","path":"a.png"}', "event 'rendered' is missing field.*'request_id'"),
    ],
)
def test_event_errors_name_the_field(line: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        decode_event(line)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"command":"shutdown"}', "field 'command' is \"shutdown\"; use one of 'render', 'quit'"),
        ('{"event":"ready"}', "field 'command' is null"),
        (_render(width=0), "command 'render': field 'width' is 0; use an integer >= 1"),
        (_render(height=2.5), "command 'render': field 'height' is 2.5; use an integer"),
        (_render(fx=0), "command 'render': field 'fx' is 0; use a number > 0"),
        (_render(cy="mid"), "command 'render': field 'cy' is 'mid'; use a number"),
        (_render(c2w=IDENTITY[:3]), "command 'render': field 'c2w' has 3 item.*exactly 4"),
        (_render(c2w=[IDENTITY[0], [0, 1, 0], IDENTITY[2], IDENTITY[3]]),
         r"command 'render': field 'c2w\[1\]' has 3 item"),
        (_render(c2w=[IDENTITY[0], IDENTITY[1], [0, 0, 1, "NaN"], IDENTITY[3]]),
         r"command 'render': field 'c2w\[2\]\[3\]' is 'NaN'; use a number"),
        (_render(c2w="identity"), "command 'render': field 'c2w' is 'identity'; use a list"),
        (_render(style_mix=[0.7, 0.7]), "command 'render': field 'style_mix' sums to 1.4"),
        (_render(style_mix=[]), "command 'render': field 'style_mix' has 0 item"),
        (_render(out=None), "command 'render': field 'out' is null; use a string"),
        (_render(request_id=None), "command 'render': field 'request_id' is null"),
    ],
)
def test_command_errors_name_the_field(line: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        decode_command(line)


def test_non_finite_matrix_is_refused_when_decoding_python_nan_token() -> None:
    line = _render(c2w=[[math.nan, 0, 0, 0]] + IDENTITY[1:])
    assert "NaN" in line
    with pytest.raises(ProtocolError, match=r"field 'c2w\[0\]\[0\]' is NaN; use a finite number"):
        decode_command(line)


def test_constructors_validate_too() -> None:
    with pytest.raises(ProtocolError, match="event 'stage': field 'stage' is 'bogus'"):
        StageEvent("bogus", 3)
    with pytest.raises(ProtocolError, match="command 'render': field 'width' is -4"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, -4, 2, "o.png")
    with pytest.raises(ProtocolError, match=r"field 'mist' is missing field\(s\) 'out'"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", mist={"start": 5.0, "depth": 25.0, "exponent": 2.0})
    with pytest.raises(ProtocolError, match=r"field 'mist.exponent' is 0; use a number > 0"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", mist={"start": 5.0, "depth": 25.0, "exponent": 0, "out": "o.mist"})
    with pytest.raises(ProtocolError, match=r"field 'samples' is 3; use a square number from 1 to 64 \(1, 4, 9, 16, ...\)"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", samples=3)
    with pytest.raises(ProtocolError, match="field 'samples' is 81"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", samples=81)
    lens = {"focus_distance": 4.5, "aperture_radius": 0.02, "ratio": 1.0, "blades": 2, "rotation": 0.0}
    with pytest.raises(ProtocolError, match=r"field 'lens.blades' is 2; use 0 for a round aperture or 3 or more blades"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", lens=lens)
    with pytest.raises(ProtocolError, match=r"field 'motion' has 1 item\(s\); give at least 2"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", motion=[IDENTITY])
    with pytest.raises(ProtocolError, match=r"field 'placement' has 3 item\(s\)"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", placement=IDENTITY[:3])
    with pytest.raises(ProtocolError, match=r"field 'others\[0\]' is missing field\(s\) 'style_mix'"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", others=[{"job": "/jobs/tree", "placement": None, "motion": None}])
    with pytest.raises(ProtocolError, match=r"field 'others\[0\].placement' has 3 item\(s\)"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", others=[{"job": "j", "placement": IDENTITY[:3], "style_mix": None,
                                                                         "motion": None}])
    with pytest.raises(ProtocolError, match=r"field 'others\[0\].motion' has 1 item\(s\); give at least 2"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", others=[{"job": "j", "placement": None, "style_mix": None,
                                                                         "motion": [IDENTITY]}])
    with pytest.raises(ProtocolError, match="lens.focus_distance"):
        RenderCommand("r", IDENTITY, 1, 1, 0, 0, 2, 2, "o.png", lens={**lens, "blades": 0, "focus_distance": 0.0})


def test_write_message_writes_one_flushed_line() -> None:
    class Stream(io.StringIO):
        flushed = 0

        def flush(self) -> None:
            self.flushed += 1
            super().flush()

    stream = Stream()
    write_message(StageEvent("export", 2), stream)
    write_message(ResultEvent("result/result.json"), stream)
    lines = stream.getvalue().splitlines(keepends=True)
    assert [decode_event(line) for line in lines] == [StageEvent("export", 2),
                                                      ResultEvent("result/result.json")]
    assert all(line.endswith("\n") for line in lines) and stream.flushed == 2
