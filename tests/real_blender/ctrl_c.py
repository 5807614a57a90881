"""Press Ctrl-C in a terminal: run a command on a new pseudo-terminal, wait for a line of its
output, then type ^C, as a person at the keyboard would.

    python ctrl_c.py PATTERN -- COMMAND [ARGS...]

The terminal driver, not this script, turns ^C into SIGINT for the terminal's foreground process
group (the command and everything it started there); a worker in its own process group hears
nothing, which is what the batch command must deal with. The command's output is copied to
stdout; the exit status is the command's (128 + N when signal N killed it), or 124 when PATTERN
never appeared or the command outlived the ^C by `TIMEOUT_S`.
"""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time

TIMEOUT_S = 600.0  # a hang guard for a loaded machine, not a speed check


def _drain(fd: int, seconds: float, seen: bytearray) -> bool:
    """Copy what the command writes for up to `seconds`; False once the terminal closed."""
    ready, _, _ = select.select([fd], [], [], seconds)
    if not ready:
        return True
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: every process on the terminal has exited
        return False
    if not chunk:
        return False
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    seen.extend(chunk)
    return True


def _exit_status(pid: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        time.sleep(0.2)
    return 124


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1 or len(argv) < 3:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    pattern, command = re.compile(argv[0].encode()), argv[2:]
    pid, fd = pty.fork()
    if pid == 0:  # the child: session leader on the new terminal, its foreground process group
        os.execvp(command[0], command)
    seen = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    while not pattern.search(seen):
        if time.monotonic() > deadline or not _drain(fd, 1.0, seen):
            print(f"\nctrl_c: '{argv[0]}' never appeared", file=sys.stderr)
            os.kill(pid, 9)
            return 124
    os.write(fd, b"\x03")  # the terminal's interrupt character (stty intr ^C)
    print("\nctrl_c: typed ^C", file=sys.stderr, flush=True)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and _drain(fd, 1.0, seen):
        pass
    return _exit_status(pid, deadline)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
