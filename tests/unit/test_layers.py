"""Import rules (pyproject.toml [tool.importlinter]): arrows point down only, no cycles, and the core
library imports without the platform extras. Every layer is a subpackage of the one namespace, cpfd:

    cpfd.cli > .benchmarks > .pipelines > .components > .monitoring | .serving | .featurestore > the core

`lint-imports` checks the layers (exhaustively: a new child of cpfd must name its layer), the sibling
cycles and that the core never imports KFP, Feast or Evidently. It cannot tell a module-level import
from one inside a function, so the rule "the core imports BentoML and Great Expectations only when a
function needs them" is checked here by importing every core module with the platform packages blocked.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[2]
DEPLOYABLES = ("cli", "benchmarks", "pipelines", "components", "monitoring", "serving", "featurestore")
PLATFORM = ("kfp", "feast", "bentoml", "great_expectations", "evidently")


def _lint(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    # PYTHONPATH first: a copy of the tree is analysed instead of the installed (editable) packages
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*cmd, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_contracts_are_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The Python files of every layer and the contracts, to break on purpose: cpfd/ with its linked
    deployables copied as real folders (a change in the copy stays in the copy)."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(
        ROOT / "cpfd",
        root / "cpfd",
        ignore=lambda d, names: [
            n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir()) or n == "__pycache__"
        ],
    )
    return root


BACK_REFERENCES = [
    # (file, line appended, contract that must break)
    ("cpfd/errors.py", "import cpfd.cli.main", "cli > benchmarks"),  # the library imports the CLI
    ("cpfd/conventions.py", "from cpfd.serving import launch", "cli > benchmarks"),  # ... the serving layer
    ("cpfd/errors.py", "from cpfd.featurestore import apply_repo", "cli > benchmarks"),  # ... the Feast glue
    ("cpfd/components/image.py", "from cpfd.pipelines import runner", "cli > benchmarks"),  # a step imports the DAG
    ("cpfd/serving/launch.py", "import cpfd.featurestore", "cli > benchmarks"),  # independent siblings
    ("cpfd/gate.py", "def f():\n    import feast", "the core never imports"),  # even inside a function
    (
        "cpfd/monitoring/slices.py",
        "def f():\n    from cpfd.monitoring import analysis",
        "no import cycles",
    ),  # the old cycle
    ("cpfd/newthing.py", "import cpfd.errors", "cli > benchmarks"),  # a new child of cpfd without a layer
]


@pytest.mark.parametrize(
    "path,line,contract", BACK_REFERENCES, ids=[f"{p}:{c.split()[0]}" for p, _, c in BACK_REFERENCES]
)
def test_a_back_reference_breaks_a_contract(tree_copy, path, line, contract):
    target = tree_copy / path
    original = target.read_text() if target.exists() else ""
    try:
        target.write_text(original + "\n" + line + "\n")
        out = _lint(tree_copy)
    finally:
        if original:
            target.write_text(original)
        else:
            target.unlink()
    assert out.returncode == 1, out.stdout + out.stderr
    assert contract in out.stdout.split("Broken contracts", 1)[-1], out.stdout


BLOCK_PLATFORM = """
import importlib, pkgutil, sys

BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: cpfd must import without the platform extras")
        return None

sys.meta_path.insert(0, Block())
import cpfd
failed = []
deployables = tuple(f"cpfd.{{name}}" for name in {deployables!r})
for mod in pkgutil.walk_packages(cpfd.__path__, "cpfd."):
    if mod.name.startswith(deployables):
        continue
    try:
        importlib.import_module(mod.name)
    except Exception as e:
        failed.append(f"{{mod.name}}: {{type(e).__name__}}: {{e}}")
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & BLOCKED)
print("\\n".join(failed + [f"loaded: {{loaded}}"]))
"""


def test_cpfd_imports_without_the_platform_extras():
    code = BLOCK_PLATFORM.format(blocked=set(PLATFORM), deployables=DEPLOYABLES + ("feature_repo",))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loaded: []", out.stdout


def path_offences(files: list[Path], root: Path) -> list[str]:
    """sys.path edits and file paths into feature_repo/ or serving/ in ``files`` (named relative to ``root``)."""
    offences = []
    for file in files:
        tree = ast.parse(file.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            where = f"{file.relative_to(root)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                offences.append(f"{where}: sys.path")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and (
                    any(s in node.value for s in ("feature_repo", "serving/", "serving.service", "service.py"))
                    or node.value in DEPLOYABLES
                )
            ):
                offences.append(f"{where}: {node.value!r}")
    return offences


def core_files(root: Path) -> list[Path]:
    """The core's .py files: cpfd/ without its deployables."""
    skip = {*DEPLOYABLES, "feature_repo"}
    return [f for f in sorted((root / "cpfd").rglob("*.py")) if f.relative_to(root / "cpfd").parts[0] not in skip]


def test_the_core_reaches_no_upper_layer_by_path():
    """What lint-imports cannot see: the library loading feature_repo/ or starting serving/ by path."""
    assert not path_offences(core_files(ROOT), ROOT)
