"""Process environment defaults, in one place: no BentoML usage tracking, no Hugging Face downloads, OpenMP
threads that sleep instead of spinning when they wait.

``set_env_defaults()`` is called by the CLI entry point, the test session, the serving launcher
and the KFP steps that need it; pipelines pass ``ENV_DEFAULTS`` to ``set_env_variable``. Values
already set win (``setdefault``), so a user can still opt in to, e.g., Hub downloads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, MutableMapping

ENV_DEFAULTS: dict[str, str] = {
    "BENTOML_DO_NOT_TRACK": "True",  # no usage statistics sent by BentoML
    "HF_HUB_OFFLINE": "1",  # the text encoder comes from an installed package, never the Hub
    "TRANSFORMERS_OFFLINE": "1",
    # torch's OpenMP threads otherwise spin between parallel regions; on a shared or oversubscribed CPU (two
    # pipeline steps on two cores, a loader worker beside training) the spinning thread starves the working one.
    # Read when torch loads: set before the first `import torch` of the process (README, Training).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def set_env_defaults(environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set every default that is not set yet in ``environ`` (default: ``os.environ``); return it."""
    environ = os.environ if environ is None else environ
    for key, value in ENV_DEFAULTS.items():
        environ.setdefault(key, value)
    return environ


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set inside (subprocesses started there inherit them), as before afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
