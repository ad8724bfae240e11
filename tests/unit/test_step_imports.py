"""Steps that start fast: an import-time budget per component module and per step body, stated as a multiple of
``import torch`` measured in the same run, and the platform packages only in the steps that use them.

Every KFP step is its own process (kfp.local's SubprocessRunner, a pod on a cluster): it imports its component module's
function source, then what its body imports. Each is measured with ``python -X importtime`` in a fresh interpreter.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import statistics
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("kfp")

ROOT = Path(__file__).resolve().parents[2]
COMPONENT_MODULES = sorted(p.stem for p in (ROOT / "components").glob("*.py") if p.stem != "__init__")
PLATFORM = ("feast", "great_expectations", "evidently", "bentoml")
# the steps whose body may import a platform package (each imports it itself, where it is used)
PLATFORM_STEPS = {"build_dataset": {"feast"}}
# steps that train or predict: their body may import torch and the towers (transformers); the others may not
MODEL_STEPS = {
    "train_teacher",
    "train_student",
    "train_fold_teacher",
    "estimate_gain",
    "teacher_outputs",
    "distill",
    "evaluate",
}
TORCH_STEPS = MODEL_STEPS
# budgets, in multiples of `import torch` here: a component module (kfp's dsl and the step's function); a body
# without torch; with torch; with torch and the towers (transformers: about 2.5x torch on a quiet machine)
MODULE_BUDGET, LIGHT_BODY_BUDGET, TORCH_BODY_BUDGET, MODEL_BODY_BUDGET = 0.8, 1.0, 1.5, 4.0
_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)")
_BODY = "-- the body's imports --"


def importtime(code: str) -> list[tuple[float, set[str]]]:
    """Seconds of top-level imports and the modules imported when a fresh interpreter runs ``code``, for each part of
    it: the parts are separated by ``print(_BODY, ...)`` lines (a module already imported is not counted again)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    parts = []
    for text in out.stderr.split(_BODY):
        total, modules = 0, set()
        for m in _LINE.finditer(text):
            modules.add(m.group(3))
            if len(m.group(2)) == 1:  # top level: its cumulative time includes everything below it
                total += int(m.group(1))
        parts.append((total / 1e6, modules))
    return parts


def body_imports(module: str) -> list[str]:
    """The import statements inside a component's function (what its step imports when it runs); none for a helper."""
    component = getattr(importlib.import_module(f"components.{module}"), module, None)
    if component is None:
        return []
    tree = ast.parse(textwrap.dedent(inspect.getsource(component.python_func)))
    return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.fixture(scope="module")
def measured() -> dict:
    """``import torch`` (three times; the median) and, per component module, its import then its body's imports, in
    parallel fresh interpreters."""
    jobs = {("torch", i): "import torch" for i in range(3)}
    for m in COMPONENT_MODULES:
        marker = f"import sys\nprint({_BODY!r}, file=sys.stderr, flush=True)\n"
        jobs[("step", m)] = f"import cpfd.components.{m}\n" + marker + "\n".join(body_imports(m))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip(jobs, pool.map(importtime, jobs.values()), strict=True))
    torch_seconds = statistics.median(results[("torch", i)][0][0] for i in range(3))
    return {"torch": torch_seconds, **{m: results[("step", m)] for m in COMPONENT_MODULES}}


def quiet_seconds(measured: dict, module: str, part: int, budget: float) -> float:
    """The part's import seconds; over budget (the parallel first measure runs under whatever else loads the
    machine), the least of it and two serial re-measures, each against an `import torch` measured beside it."""
    seconds = measured[module][part][0]
    for _ in range(2):
        if seconds <= budget * measured["torch"]:
            break
        marker = f"import sys\nprint({_BODY!r}, file=sys.stderr, flush=True)\n"
        again = importtime(f"import cpfd.components.{module}\n" + marker + "\n".join(body_imports(module)))[part][0]
        torch_now = importtime("import torch")[0][0]
        seconds = min(seconds, again * measured["torch"] / max(torch_now, 1e-9))
    return seconds


@pytest.mark.parametrize("module", COMPONENT_MODULES)
def test_component_module_imports_within_budget_without_torch_or_platform(measured, module):
    seconds, modules = quiet_seconds(measured, module, 0, MODULE_BUDGET), measured[module][0][1]
    assert seconds <= MODULE_BUDGET * measured["torch"], (
        f"import cpfd.components.{module}: {seconds:.2f} s > {MODULE_BUDGET} x import torch ({measured['torch']:.2f} s)"
    )
    heavy = roots(modules) & {"torch", "transformers", *PLATFORM}
    assert not heavy, f"import cpfd.components.{module} imports {sorted(heavy)}"


@pytest.mark.parametrize("module", [m for m in COMPONENT_MODULES if body_imports(m)])
def test_step_body_imports_within_budget_and_only_the_platform_it_uses(measured, module):
    (_, module_imports), (_, body) = measured[module]
    found = roots(module_imports | body)
    budget = (
        MODEL_BODY_BUDGET
        if module in MODEL_STEPS
        else TORCH_BODY_BUDGET
        if module in TORCH_STEPS
        else LIGHT_BODY_BUDGET
    )
    seconds = quiet_seconds(measured, module, 1, budget)
    assert seconds <= budget * measured["torch"], (
        f"step {module}: its body's imports take {seconds:.2f} s > {budget} x import torch ({measured['torch']:.2f} s)"
    )
    platform = found & set(PLATFORM)
    assert platform <= PLATFORM_STEPS.get(module, set()), f"step {module} imports {sorted(platform)}"
    heavy = found & ({"transformers"} if module in TORCH_STEPS else {"torch", "transformers"})
    if module not in MODEL_STEPS:
        assert not heavy, f"step {module} imports {sorted(heavy)}"


def test_a_body_importing_torch_is_seen():
    """The measure itself: the body's part holds what it imported, the module's part not."""
    (_, before), (seconds, body) = importtime(
        f"import json\nimport sys\nprint({_BODY!r}, file=sys.stderr, flush=True)\nimport torch"
    )
    assert "torch" in body and "torch._C" in body and "torch" not in before and seconds > 0.1


@pytest.mark.parametrize("module", ["cpfd.cli.main", "cpfd.pipelines.runner", "cpfd.pipelines.cpfd_pipeline"])
def test_the_cli_and_the_runner_start_without_torch_or_platform(module):
    """`cpfd ...` and the local runner import no platform package (only the steps that use one do)."""
    (_, modules), _ = importtime(f"import {module}\nimport sys\nprint({_BODY!r}, file=sys.stderr, flush=True)")
    heavy = roots(modules) & {"torch", "transformers", *PLATFORM}
    assert not heavy, f"import {module} imports {sorted(heavy)}"
