"""Starting `bentoml serve` on this package's service, and keeping it on a leash.

- ``server_command``: the argv and environment for a serving config (validated first).
- ``supervise`` (what `cpfd serve` runs): `bentoml serve` as a child that dies with its parent (Linux
  parent-death signal), stopped on SIGTERM/SIGINT, and stopped at once when a worker reports a start-up
  fault (a model file or the log that no restart can mend): one message naming the file or model tag,
  exit code ``STARTUP_FAULT_EXIT``.
- ``ServerProcess``: the same for tests, benchmarks and the demo, ready when /readyz says so.

The worker side of the start-up protocol is ``startup_fault``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, NoReturn

from cpfd.env import set_env_defaults
from cpfd.errors import CpfdError

from .config import CONFIG_ENV, load_serving_config

SERVICE = "cpfd.serving.service:CpfdService"
PROJECT_ROOT = Path(__file__).parents[2]  # the --working-dir: the cpfd package is importable from it
FAULT_ENV = "CPFD_STARTUP_FAULT_FILE"
STARTUP_FAULT_EXIT = 3
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 20.0


def server_command(
    config: str | Path, host: str = "127.0.0.1", port: int = 3000, service: str = SERVICE
) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` argv and environment for a serving config (validated first); ``service`` is the
    import path of the BentoML service (a module under the project root)."""
    load_serving_config(config)
    if not (PROJECT_ROOT / "cpfd" / "serving" / "service.py").is_file():
        raise CpfdError(f"cpfd/serving/service.py not found under {PROJECT_ROOT}")
    env = dict(os.environ)
    set_env_defaults(env)
    env[CONFIG_ENV] = str(Path(config).resolve())
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        service,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(PROJECT_ROOT),
    ]
    return argv, env


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere); exit if it already has."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # it died before the request
        os._exit(0)


def startup_fault(message: str) -> NoReturn:
    """A fault no restart can mend: hand the message to the supervisor (or print it) and exit at once."""
    path = os.environ.get(FAULT_ENV)
    if path:
        tmp = Path(f"{path}.{os.getpid()}")
        tmp.write_text(message)
        tmp.replace(path)
    else:
        sys.stderr.write(f"cpfd serving start-up failed: {message}\n")
    sys.stderr.flush()
    os._exit(STARTUP_FAULT_EXIT)


def spawn(argv: list[str], env: dict[str, str], out: IO[bytes] | int | None = None) -> subprocess.Popen[bytes]:
    """`bentoml serve` in its own process group, killed by the kernel when this process dies."""
    return subprocess.Popen(
        argv,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group; SIGKILL after STOP_TIMEOUT_S."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def read_fault(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def supervise(config: str | Path, host: str = "127.0.0.1", port: int = 3000, poll_s: float = 0.2) -> int:
    """Run `bentoml serve` until it ends or is signalled; a start-up fault stops it. Returns the exit code."""
    argv, env = server_command(config, host, port)
    with tempfile.TemporaryDirectory(prefix="cpfd-serve-") as tmp:
        fault_file = Path(tmp) / "fault"
        env[FAULT_ENV] = str(fault_file)
        proc = spawn(argv, env)
        stopping: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            stopping.append(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while proc.poll() is None and not stopping:
                fault = read_fault(fault_file)
                if fault is not None:
                    stop(proc)
                    sys.stderr.write(f"error: serving start-up failed: {fault}\n")
                    return STARTUP_FAULT_EXIT
                time.sleep(poll_s)
            stop(proc)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        fault = read_fault(fault_file)
        if fault is not None:
            sys.stderr.write(f"error: serving start-up failed: {fault}\n")
            return STARTUP_FAULT_EXIT
        return 0 if stopping else (proc.returncode or 0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `bentoml serve` on 127.0.0.1 (tests, benchmarks), ready when /readyz answers 200.

    A start-up fault raises a CpfdError with the worker's message; the server dies with this process."""

    def __init__(
        self,
        config: str | Path,
        port: int | None = None,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 90.0,
        service: str = SERVICE,
    ):
        self.config, self.port, self.service = config, port or free_port(), service
        self.log_path, self.extra_env, self.timeout = log_path, env or {}, timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> ServerProcess:
        import urllib.request

        argv, env = server_command(self.config, "127.0.0.1", self.port, self.service)
        self._tmp = tempfile.TemporaryDirectory(prefix="cpfd-server-")
        fault_file = Path(self._tmp.name) / "fault"
        env = {**env, **self.extra_env, FAULT_ENV: str(fault_file)}
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        self.proc = spawn(argv, env, out)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            fault = read_fault(fault_file)
            if fault is not None:
                self.__exit__()
                raise CpfdError(f"serving start-up failed: {fault}")
            if self.proc.poll() is not None:
                raise CpfdError(f"bentoml serve exited with code {self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise CpfdError(f"bentoml serve not ready after {self.timeout:.0f}s (log: {self.log_path})")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
