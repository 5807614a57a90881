"""JSON files read with one-sentence errors and written atomically (readers see the old file or
the whole new one). Plain Python only (Blender imports it)."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError



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
