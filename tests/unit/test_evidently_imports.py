"""Evidently on its public API only: no project module imports a private (``_``-prefixed) or legacy evidently module,
nor the UI service's or storage layer's internals; every evidently import is one of the documented entry points.
Walks the imports (``import``/``from ... import``, at any depth) of every module of the project's packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# cpfd/ and the deployable folders its links point at (rglob does not follow links)
PACKAGES = ("cpfd", "components", "pipelines", "serving", "monitoring", "benchmarks")
# evidently's documented modules: the Report/Dataset API, metrics, tests, custom metrics, the workspace and dashboards
PUBLIC = {
    "evidently",
    "evidently.metrics",
    "evidently.presets",
    "evidently.tests",
    "evidently.core.metric_types",
    "evidently.ui.workspace",
    "evidently.sdk.models",
    "evidently.sdk.panels",
}


def evidently_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every evidently module ``path`` imports; ``from evidently import x`` counts ``x`` too when
    it names a submodule (``evidently._pydantic_compat``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "evidently"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "evidently":
            out.append((node.lineno, node.module or ""))
            out += [
                (node.lineno, f"{node.module}.{a.name}")
                for a in node.names
                if a.name.startswith("_") or a.name == "legacy"
            ]
    return out


def test_no_private_or_legacy_evidently_import():
    found, bad = 0, []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in evidently_imports(path):
                found += 1
                parts = module.split(".")
                private = any(p.startswith("_") for p in parts) or "legacy" in parts
                if private or module not in PUBLIC:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert found >= 5, "the walk found no evidently import: is the project layout still the same?"
    assert not bad, "evidently imports outside its public API:\n" + "\n".join(bad)


def test_the_walk_catches_what_the_rule_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from evidently._pydantic_compat import PrivateAttr\n"
        "def f():\n    from evidently.legacy.core import new_id\n    import evidently.ui.storage.local.base\n"
        "from evidently import _registry\n"
    )
    modules = [m for _, m in evidently_imports(probe)]
    assert "evidently._pydantic_compat" in modules and "evidently.legacy.core" in modules
    assert "evidently.ui.storage.local.base" in modules and "evidently._registry" in modules
