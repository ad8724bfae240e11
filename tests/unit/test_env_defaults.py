"""Process defaults that must be in place before torch loads: OpenMP threads sleep instead of spinning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import sys, os, cpfd.cli.main; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_cli_sets_passive_openmp_before_torch_unless_the_user_chose(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", expected]  # set, and torch not loaded yet (libgomp reads it when torch loads)
