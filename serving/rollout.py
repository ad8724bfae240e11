"""Versioned changes of a serving config's traffic shares: ramp, promote, rollback. Each change is validated as the
service would load it, kept as a new numbered version next to the config with a history record (who, when, why,
the verdict it acted on), and made live by an atomic rename; a running service picks it up within its reload
interval (serving/live.py). Layout and record format: cpfd/rollout.py."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

from cpfd.config import read_yaml
from cpfd.errors import ConfigError
from cpfd.rollout import history_path, read_history, versions_dir

from .config import load_serving_config

ACTIONS = ("ramp", "promote", "rollback")


@contextmanager
def _locked(config_path: Path) -> Iterator[None]:
    d = versions_dir(config_path)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_traffic(arms: dict[str, float], action: str, treatment: str, control: str, share: float | None) -> dict:
    """The shares after ``action``: ramp gives ``treatment`` ``share`` and the other arms the rest in their current
    proportions (equally when they have none); promote gives it everything; rollback gives ``control`` everything."""
    for arm in (treatment, control):
        if arm not in arms:
            raise ConfigError(f"no arm {arm!r}; arms: {sorted(arms)}")
    if action == "promote":
        return {a: 1.0 if a == treatment else 0.0 for a in arms}
    if action == "rollback":
        return {a: 1.0 if a == control else 0.0 for a in arms}
    if action != "ramp":
        raise ConfigError(f"unknown action {action!r}; one of {ACTIONS}")
    if share is None or not 0 <= share <= 1:
        raise ConfigError(f"--share must be between 0 and 1, got {share}")
    others = [a for a in arms if a != treatment]
    rest = sum(arms[a] for a in others)
    out = {a: (1 - share) * (arms[a] / rest if rest > 0 else 1 / len(others)) for a in others}
    out[treatment] = share
    return {a: round(out[a], 12) for a in arms}


def change(
    config_path: str | Path,
    scenario: str,
    action: str,
    why: str,
    share: float | None = None,
    treatment: str = "treatment",
    control: str = "control",
    who: str | None = None,
    verdict: dict | None = None,
) -> dict:
    """Write the next version of the config with ``scenario``'s shares changed by ``action`` and make it live;
    returns the history record. A config no command has touched yet is first kept as version 1."""
    path = Path(config_path)
    if not path.is_file():
        raise ConfigError(f"serving config {path} does not exist")
    if not why.strip():
        raise ConfigError("--why is required: the history records why each change was made")
    with _locked(path):
        data = read_yaml("serving config", path)
        scen = (data.get("scenarios") or {}).get(scenario)
        if scen is None:
            raise ConfigError(
                f"scenario {scenario!r} is not in {path}; scenarios: {sorted(data.get('scenarios') or {})}"
            )
        before = {a: float(c["traffic"]) for a, c in scen["arms"].items()}
        after = new_traffic(before, action, treatment, control, share)
        for a, c in scen["arms"].items():
            c["traffic"] = after[a]
        history = read_history(path)
        vdir = versions_dir(path)
        if not history:
            shutil.copyfile(path, vdir / "v0001.yaml")
            history = [_record(1, "initial", scenario, "the config before any change", before, before, who, None)]
            _append(path, history[0])
        version = history[-1]["version"] + 1
        tmp = path.with_name(f".{path.name}.v{version}.tmp")
        tmp.write_text(f"# version {version}: {action} {scenario} (cpfd experiment); history in {vdir.name}/\n")
        with tmp.open("a") as fh:
            yaml.safe_dump(data, fh, sort_keys=False)
        try:
            load_serving_config(tmp)  # refused here, never made live
        except ConfigError:
            tmp.unlink()
            raise
        shutil.copyfile(tmp, vdir / f"v{version:04d}.yaml")
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one
        record = _record(version, action, scenario, why, before, after, who, verdict)
        _append(path, record)
    return record


def _record(version, action, scenario, why, before, after, who, verdict) -> dict:
    return {
        "version": version,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "who": who or os.environ.get("CPFD_USER") or getpass.getuser(),
        "action": action,
        "scenario": scenario,
        "why": why,
        "traffic_before": before,
        "traffic_after": after,
        "verdict": verdict,
    }


def _append(config_path: Path, record: dict) -> None:
    with history_path(config_path).open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
