"""Starting `bentoml serve` on this package's service: the argv and environment for a serving
config, and a real server in its own process group for tests, benchmarks and the demo.

The serving runtime it serves (config model, request validation, model loading, batching, the
prediction log) is in ``cpfd.serving_core`` / ``cpfd.serving_runtime``; this module only knows
where ``serving/service.py`` is and how to run it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cpfd.env import set_env_defaults
from cpfd.errors import CpfdError
from cpfd.serving_core import CONFIG_ENV, load_serving_config

if TYPE_CHECKING:
    import subprocess

SERVICE = "serving.service:CpfdService"
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the --working-dir: serving/ is importable from it


def server_command(config: str | Path, host: str = "127.0.0.1", port: int = 3000) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` argv and environment for a serving config (validated first)."""
    load_serving_config(config)
    if not (PROJECT_ROOT / "serving" / "service.py").is_file():
        raise CpfdError(f"serving/service.py not found under {PROJECT_ROOT}")
    env = dict(os.environ)
    set_env_defaults(env)
    env[CONFIG_ENV] = str(Path(config).resolve())
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(PROJECT_ROOT),
    ]
    return argv, env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `bentoml serve` on 127.0.0.1 in its own process group (tests, benchmarks)."""

    def __init__(
        self,
        config: str | Path,
        port: int | None = None,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 90.0,
    ):
        self.config, self.port = config, port or free_port()
        self.log_path, self.extra_env, self.timeout = log_path, env or {}, timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        import subprocess
        import time
        import urllib.request

        argv, env = server_command(self.config, "127.0.0.1", self.port)
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv, env={**env, **self.extra_env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
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

    def __exit__(self, *exc) -> None:
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
