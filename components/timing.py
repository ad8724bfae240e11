"""Where a step's wall time goes: the component body starts a clock and marks its phases; at exit the step's record
is written into the folder ``$CPFD_STEP_TIMES`` names (the local runner sets it; unset, nothing is written).

Phases: ``startup`` (from the process's start to the body: the interpreter, kfp's executor, the component module),
then what the body marks: ``imports`` (its own imports), its work (``load``, ``train``, ``predict``, ``write``, ...),
and ``finish`` (from the last mark to exit: kfp writes the outputs). ``OVERHEAD`` is what is not the step's work.
A step that fails also records its error (``error``: the exception's type and message), which is how the local runner
says why a run failed without reading the steps' logs. Standard library only: every step imports it first."""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

ENV = "CPFD_STEP_TIMES"
OVERHEAD = ("startup", "imports", "finish")

_clock: dict | None = None


def start(step: str) -> None:
    """The first line of a component body: opens the step's record."""
    global _clock
    now = time.time()
    began = _process_start() or now
    _clock = {"step": step, "pid": os.getpid(), "labels": {}, "phases": {"startup": now - began}, "began": began}
    _clock["last"] = now
    if os.environ.get(ENV):
        atexit.register(_write, Path(os.environ[ENV]))
        sys.excepthook = _recording(sys.excepthook)


def _recording(hook):
    """An excepthook that keeps the uncaught exception in the step's record, then calls ``hook``."""

    def record(kind, value, tb):
        if _clock is not None:
            _clock["error"] = f"{kind.__name__}: {value}"[:4000]
        hook(kind, value, tb)

    return record


def mark(phase: str, **labels) -> None:
    """Add the time since the previous mark (or the start) to ``phase``; ``labels`` (e.g. the scenario) go into the
    record. Without ``start`` in this process (a torchrun rank) it does nothing."""
    if _clock is None:
        return
    now = time.time()
    phases = _clock["phases"]
    phases[phase] = phases.get(phase, 0.0) + now - _clock["last"]
    _clock["last"] = now
    _clock["labels"].update(labels)


def _write(folder: Path) -> None:
    assert _clock is not None
    mark("finish")
    record = {k: _clock[k] for k in ("step", "pid", "labels", "phases", "error") if k in _clock}
    record["wall"] = _clock["last"] - _clock["began"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{_clock['step']}-{_clock['pid']}-{_clock['began']:.0f}.json").write_text(json.dumps(record))


def _process_start() -> float | None:
    """When this process started (epoch seconds) from Linux's /proc; None where there is none."""
    try:
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
