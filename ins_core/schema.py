"""Checks for the fields of JSON files and messages: each check takes (value, where) and returns
the normalised value, or raises InputError with one sentence naming the file, the field and the
fix. Shared by the job files (`job.py`) and the worker protocol (`protocol.py`). Plain Python only
(Blender imports it).
"""

import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .errors import require
from .stylize_options import PALETTE_SPREAD_AUTO

MIX_TOLERANCE = 1e-6  # how far style-mix weights may sum from 1

# ---------------------------------------------------------------------------------------------
# Field checks: each takes (value, where) and returns the normalised value or raises InputError.
# `where` reads like "job.json: field 'seed'", so every message names the file and the field.
# ---------------------------------------------------------------------------------------------

Check = Callable[[Any, str], Any]


def show_value(value: Any) -> str:
    """Short rendering of a bad value for an error message."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def quoted(options: Iterable[Any]) -> str:
    return ", ".join(repr(o) for o in options)


def nested(where: str, suffix: str) -> str:
    """"x: field 'styles'" + "[0]" -> "x: field 'styles[0]'" (names nested fields exactly)."""
    return where[:-1] + suffix + "'" if where.endswith("'") else where + suffix


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_field(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer (never a bool) within optional bounds."""

    def check(value: Any, where: str) -> int:
        require(_is_int(value), f"{where} is {show_value(value)}; use an integer.")
        require(minimum is None or value >= minimum,
                f"{where} is {value}; use an integer >= {minimum}.")
        require(maximum is None or value <= maximum,
                f"{where} is {value}; use an integer <= {maximum}.")
        return int(value)

    return check


def number_field(minimum: float | None = None, *, above: bool = False, maximum: float | None = None) -> Check:
    """A finite number, returned as float; `above` makes the minimum exclusive; `maximum` is inclusive."""

    def check(value: Any, where: str) -> float:
        require(_is_number(value), f"{where} is {show_value(value)}; use a number.")
        value = float(value)
        require(math.isfinite(value), f"{where} is {show_value(value)}; use a finite number.")
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
        require(isinstance(value, bool), f"{where} is {show_value(value)}; use true or false.")
        return value

    return check


def str_field(nonempty: bool = True) -> Check:
    """A string, by default non-empty."""

    def check(value: Any, where: str) -> str:
        require(isinstance(value, str), f"{where} is {show_value(value)}; use a string.")
        require(not nonempty or value.strip(), f"{where} is empty; give a non-empty string.")
        return value

    return check


def choice_field(options: Iterable[str]) -> Check:
    """One string out of a fixed set."""
    options = tuple(options)

    def check(value: Any, where: str) -> str:
        require(isinstance(value, str) and value in options,
                f"{where} is {show_value(value)}; use one of {quoted(options)}.")
        return value

    return check


def auto_or_field(inner: Check) -> Check:
    """The string "auto" (`PALETTE_SPREAD_AUTO`), or whatever `inner` accepts."""

    def check(value: Any, where: str) -> Any:
        if isinstance(value, str):
            require(value == PALETTE_SPREAD_AUTO, f"{where} is {show_value(value)}; use \"{PALETTE_SPREAD_AUTO}\" or a number.")
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
        require(isinstance(value, (list, tuple)), f"{where} is {show_value(value)}; use a list.")
        if length is not None:
            require(len(value) == length,
                    f"{where} has {len(value)} item(s); give exactly {length}.")
        require(len(value) >= min_len,
                f"{where} has {len(value)} item(s); give at least {min_len}.")
        return [item(v, nested(where, f"[{i}]")) for i, v in enumerate(value)]

    return check


def dict_field(values: Check | Mapping[str, Check]) -> Check:
    """A JSON object with non-empty string keys.

    `values` is one check for every value, or a table key -> check that also fixes the keys.
    """
    table = values if isinstance(values, Mapping) else None

    def check(value: Any, where: str) -> dict:
        require(isinstance(value, Mapping), f"{where} is {show_value(value)}; use a JSON object.")
        out = {}
        for key, v in value.items():
            require(isinstance(key, str) and key,
                    f"{where} has key {show_value(key)}; use non-empty string keys.")
            require(table is None or key in table,
                    f"{where} has unknown key {key!r}; use one of {quoted(table or ())}.")
            out[key] = (values if table is None else table[key])(v, nested(where, f".{key}"))
        return out

    return check


def record_field(table: Mapping[str, Check]) -> Check:
    """A JSON object with exactly the keys of `table`, each checked by its entry."""

    def check(value: Any, where: str) -> dict:
        require(isinstance(value, Mapping), f"{where} is {show_value(value)}; use a JSON object.")
        _check_key_sets(value, table, where, required=table)
        return {k: c(value[k], nested(where, f".{k}")) for k, c in table.items()}

    return check


def relpath_field() -> Check:
    """A path relative to the job directory that stays inside it (the job must be portable)."""

    def check(value: Any, where: str) -> str:
        str_field()(value, where)
        fix = "copy the file into the job directory and give its path relative to it, e.g. 'styles/a.jpg'"
        require("\\" not in value, f"{where} is {show_value(value)}; use forward slashes, e.g. 'styles/a.jpg'.")
        absolute = PurePosixPath(value).is_absolute() or bool(PureWindowsPath(value).anchor)
        require(not absolute, f"{where} is the absolute path {show_value(value)}; {fix}.")
        parts = PurePosixPath(value).parts
        require(".." not in parts, f"{where} is {show_value(value)} which leaves the job directory ('..'); {fix}.")
        require(bool(parts), f"{where} is {show_value(value)} which names no file; {fix}.")
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
    require(not unknown, f"{where} has unknown field(s) {quoted(unknown)}; remove them "
                         f"(known fields: {quoted(allowed)}).")
    missing = [k for k in required if k not in d]
    require(not missing, f"{where} is missing field(s) {quoted(missing)}; add them.")


def dataclass_kwargs(cls: type, d: Any, source: str, *, ignore: Iterable[str] = (),
                     allow_unknown: bool = False) -> dict[str, Any]:
    """Check a JSON object's keys against a dataclass's fields and return them as kwargs.

    Unknown keys are an error (a typo must not be silently ignored) unless `allow_unknown`.
    """
    require(isinstance(d, Mapping), f"{source}: the content is {show_value(d)}; use a JSON object {{...}}.")
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


def plain_fields(obj: Any) -> dict[str, Any]:
    """Dataclass fields -> dict, copying lists and dicts so callers cannot alias them."""
    return {f.name: copy.deepcopy(getattr(obj, f.name)) for f in fields(obj)}
