"""The serving bento's spec (serving/bentofile.yaml) without building it: it ships the library modules the
service imports and no others, and its Python requirements are the ones generated from pyproject.toml."""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import yaml

from cpfd.serving import requirements as reqs

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(file: Path) -> set[Path]:
    """The project files (cpfd/, serving/) that ``file`` imports, every package on the way included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    out = set()
    for name in names:
        parts = name.split(".")
        if parts[0] in ("cpfd", "serving"):
            out |= {f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i]))) is not None}
    return out


def served_library_files() -> set[str]:
    """Every cpfd/ module the serving package imports, directly or through another module."""
    todo, seen = list((ROOT / "serving").glob("*.py")), set()
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imported_files(f))
    return {str(f.relative_to(ROOT)) for f in seen if f.relative_to(ROOT).parts[0] == "cpfd"}


def included(path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in SPEC["include"])


def test_the_bento_ships_exactly_the_library_modules_the_service_imports():
    needed = served_library_files()
    assert {"cpfd/models.py", "cpfd/preprocess.py", "cpfd/predlog.py"} <= needed
    assert [f for f in sorted(needed) if not included(f)] == []
    listed = {p for p in SPEC["include"] if p.startswith("cpfd/") and p.endswith(".py")}
    assert listed - needed - {"cpfd/__init__.py"} == set(), "a listed module the service no longer imports"
    library = {str(f.relative_to(ROOT)) for f in (ROOT / "cpfd").rglob("*.py")}
    assert sorted(f for f in library - needed - {"cpfd/__init__.py"} if included(f)) == []  # no training code
    assert {"cpfd/distill.py", "cpfd/training/loop.py"} <= library - needed


def test_the_bento_requirements_are_generated_from_pyproject():
    assert SPEC["python"]["requirements_txt"] == "serving/requirements.txt" and "packages" not in SPEC["python"]
    assert (ROOT / "serving" / "requirements.txt").read_text() == reqs.render(), (
        "serving/requirements.txt is stale: run `python -m cpfd.serving.requirements`"
    )
    lines = reqs.requirements()
    assert "torch==2.13.0" in lines and any(r.startswith("bentoml==") for r in lines)
    assert all("==" in r and ">=" not in r for r in lines), "the bento installs the tested set (constraints.txt)"
    assert "psycopg[binary]==" + reqs.locked()["psycopg"] in lines  # extras kept
    assert not any(r.startswith(("feast", "kfp", "evidently", "great-expectations")) for r in lines)
