"""How the worker shares the machine with Blender: its torch thread count and its priority.

An artist keeps working (and rendering) while a job runs, so the worker must not starve Blender,
and a worker that fights for cores crawls: each parallel region waits for its slowest thread, so
a thread that loses its core stalls them all. The defaults below come from bench/worker_load.py
(figures in the README); INS_WORKER_THREADS and INS_WORKER_NICE change them.

Plain Python at import (torch only inside `apply`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Mapping

THREADS_ENV = "INS_WORKER_THREADS"
NICE_ENV = "INS_WORKER_NICE"

# Why nice 10: beside the worker at nice 0 a Cycles render loop kept 31-35 of its 62 renders/min,
# at nice 10 52-55 (2-core Xeon, bench/worker_load.py); the worker paid 4.5 -> 3.0 steps/s.
DEFAULT_NICE = 10


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_threads(cores: int | None) -> int:
    """All cores but one: the one left is Blender's (UI, Cycles) and whatever else runs.

    Why: on the 2-core Xeon (bench/worker_load.py) the fit ran 6.1 steps/s with 1 thread and 3.6
    with 2 beside a second torch process on one core (nice 10: 5.7 vs 2.2; beside Cycles 3.0 vs
    0.8), but 6.8 vs 10.8 when quiet: so `Adaptive` takes the last core back while the rest of the
    machine is idle (quiet 10.4, beside the torch process 7.4, beside Cycles 2.5 steps/s).
    """
    return max(1, (cores or 1) - 1)


@dataclass(frozen=True)
class Share:
    threads: int
    nice: int  # niceness to reach (POSIX: 0 normal, 19 lowest)
    note: str = ""  # why it differs from the default (a bad environment value), for the log
    fixed: bool = False  # the thread count was set by INS_WORKER_THREADS: no adapting

    def describe(self) -> str:
        """'1 torch thread, priority nice 10' for the log."""
        plural = "s" if self.threads != 1 else ""
        return f"{self.threads} torch thread{plural}, priority nice {self.nice}"


def _int_env(environ: Mapping[str, str], name: str, low: int, high: int) -> tuple[int | None, str]:
    text = environ.get(name, "").strip()
    if not text:
        return None, ""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        return None, f"{name}={text!r} ignored: use a whole number from {low} to {high}."
    return value, ""


def choose(environ: Mapping[str, str] | None = None, cores: int | None = None) -> Share:
    """The worker's threads and niceness: the defaults, or the environment's valid values."""
    environ = os.environ if environ is None else environ
    cores = cores if cores is not None else available_cores()
    threads, note_t = _int_env(environ, THREADS_ENV, 1, 1024)
    nice, note_n = _int_env(environ, NICE_ENV, 0, 19)
    return Share(threads=threads or default_threads(cores), nice=DEFAULT_NICE if nice is None else nice,
                 note=" ".join(n for n in (note_t, note_n) if n), fixed=threads is not None)


def apply(share: Share) -> Share:
    """Set torch's thread count and lower this process's priority; returns what holds now.

    Niceness only goes up (lowering it needs privileges): a worker started at nice 15 stays at 15.
    Without os.nice (Windows) the priority stays as it is.
    """
    import torch

    torch.set_num_threads(share.threads)
    nice = 0
    if hasattr(os, "nice"):
        current = os.nice(0)
        nice = os.nice(share.nice - current) if share.nice > current else current
    return Share(threads=torch.get_num_threads(), nice=nice, note=share.note, fixed=share.fixed)


def _machine_busy_s() -> float | None:
    """CPU seconds every process on the machine has used since boot (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Adaptive:
    """Follows the rest of the machine: all cores while nothing else runs, one fewer as soon as
    something else uses half a core or more (a render, a second worker), all again after a calm spell.

    `step()` is cheap: it samples the machine's CPU time every `interval_s` and returns the new
    thread count when it changes (else None). Where the machine's CPU time cannot be read (not
    Linux) or the count was fixed by INS_WORKER_THREADS, it never changes anything.
    """

    def __init__(self, cores: int | None = None, interval_s: float = 2.0, calm_s: float = 10.0, busy_cores: float = 0.5,
                 machine_s: Callable[[], float | None] = _machine_busy_s, own_s: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic, enabled: bool = True):
        self.cores = cores if cores is not None else available_cores()
        self.interval_s, self.calm_s, self.busy_cores = interval_s, calm_s, busy_cores
        self._machine_s, self._own_s, self._clock = machine_s, own_s, clock
        self.threads = default_threads(self.cores)
        self.others = 0.0  # cores the rest of the machine used over the last interval
        self.enabled = enabled and self.cores > 1 and machine_s() is not None
        self._last = (clock(), machine_s(), own_s())
        self._last_busy = clock()  # start modest: the first calm spell earns the last core

    def step(self) -> int | None:
        if not self.enabled:
            return None
        now = self._clock()
        if now - self._last[0] < self.interval_s:
            return None
        machine, own = self._machine_s(), self._own_s()
        if machine is None:
            return None
        then, machine_then, own_then = self._last
        self._last = (now, machine, own)
        self.others = max(0.0, (machine - machine_then) - (own - own_then)) / (now - then)
        if self.others >= self.busy_cores:
            self._last_busy = now
        wanted = self.cores if now - self._last_busy >= self.calm_s else default_threads(self.cores)
        if wanted == self.threads:
            return None
        self.threads = wanted
        return wanted
