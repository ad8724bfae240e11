"""The serving config a running worker answers with, reloaded when its file changes (``cpfd experiment
ramp|promote|rollback`` replaces it atomically): only the arms' traffic shares are taken live. Anything else
changed (models, limits, arms added or removed) is refused with one warning and needs a restart.

A request's arm is chosen once, when it is validated, with the config current then, and the arm's model never
changes while the service runs; so a request in flight during a reload finishes on the arm it was given, and the
prediction log records that arm.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from cpfd.errors import CpfdError

from .config import ServingConfig, load_serving_config

logger = logging.getLogger("cpfd.serving")
RELOAD_INTERVAL_S = 1.0


def _without_traffic(cfg: ServingConfig) -> dict:
    data = cfg.model_dump()
    for scen in data["scenarios"].values():
        for arm in scen["arms"].values():
            arm["traffic"] = None
    return data


class LiveConfig:
    """``current()`` returns the config, checking the file's identity at most every ``interval_s``."""

    def __init__(self, path: str | Path, cfg: ServingConfig, interval_s: float = RELOAD_INTERVAL_S):
        self.path, self.cfg, self.interval_s = Path(path), cfg, interval_s
        self._fixed = _without_traffic(cfg)
        self._seen = self._identity()
        self._checked = time.monotonic()
        self.listeners: list[Callable[[ServingConfig], None]] = []
        self.reloads = 0

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> ServingConfig:
        now = time.monotonic()
        if now - self._checked >= self.interval_s:
            self._checked = now
            ident = self._identity()
            if ident is not None and ident != self._seen:
                self._seen = ident
                self._reload()
        return self.cfg

    def _reload(self) -> None:
        try:
            new = load_serving_config(self.path)
        except CpfdError as e:
            logger.warning("serving config %s changed but was not reloaded: %s", self.path, e)
            return
        if _without_traffic(new) != self._fixed:
            logger.warning(
                "serving config %s changed beyond traffic shares: not reloaded (restart the service for that)",
                self.path,
            )
            return
        self.cfg = new
        self.reloads += 1
        for listener in self.listeners:
            listener(new)
        shares = {s: {a: c.traffic for a, c in v.arms.items()} for s, v in new.scenarios.items()}
        logger.info("serving config reloaded (pid %d): traffic %s", os.getpid(), shares)
