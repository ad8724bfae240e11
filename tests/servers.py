"""Ports, servers and readiness for the tests that start real servers (bentoml serve, Evidently's UI, PostgreSQL):
one free loopback port, a readiness poll bounded in time, and a child process group that is always stopped."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def pg_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (initdb, pg_ctl, postgres): Debian's newest, else on PATH; None
    without them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether no socket listens on 127.0.0.1:``port`` (connections in TIME_WAIT, left by closed ones, do not
    count: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET (an error status included), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> float:
    """Poll ``ready`` every 0.25 s until it is true; seconds waited. Fails when ``proc`` exits or time runs out,
    with the end of ``log`` in the message."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}{_tail(log)}")
        if ready():
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"{what}: not ready after {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, n: int = 3000) -> str:
    return f"\n{log.read_text(errors='replace')[-n:]}" if log is not None and log.is_file() else ""


def wait_http(
    url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0, status: int = 200, log: Path | None = None
) -> float:
    """Wait until GET ``url`` answers ``status`` (e.g. a server's /readyz); seconds waited."""
    return wait_until(lambda: http_status(url) == status, timeout, url, proc, log)


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> float:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    return wait_until(lambda: accepts(port), timeout, f"port {port}", proc)


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (a server and its workers)."""
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the process group ``proc`` leads, SIGKILL after ``timeout``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


@contextmanager
def process_group(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None, **popen: Any
) -> Iterator[subprocess.Popen]:
    """``argv`` in its own process group (output to ``log`` when given), stopped with its children on exit."""
    out: IO[bytes] | int = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    popen.setdefault("stdout", out)
    popen.setdefault("stderr", subprocess.STDOUT if log is not None else subprocess.DEVNULL)
    proc = subprocess.Popen(argv, env=env, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        stop_group(proc)
        if log is not None:
            out.close()
