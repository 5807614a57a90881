"""Errors that reach the user as one clear sentence.

`InputError` is for mistakes the user can fix (a bad path, a malformed file, a wrong option).
The CLI prints its message and exits with status 2; the worker reports it as a `bad_input`
event. Anything else is a bug and keeps its traceback for the log.
"""


class InputError(Exception):
    """A user mistake, described in one sentence that names the thing and the fix."""

    exit_status = 2


def require(condition: bool, message: str) -> None:
    """Raise `InputError(message)` unless `condition` holds."""
    if not condition:
        raise InputError(message)
