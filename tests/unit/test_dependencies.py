"""Every third-party package a project module imports is declared in pyproject.toml, where its layer may use it.

The cpfd library may use the core dependencies only, plus BentoML and Great Expectations inside functions (the
import rule tests/unit/test_layers.py checks); the platform layers add the `platform` extra, the benchmarks the
`dev` extra too. An import name maps to its distribution through the installed packages' metadata (yaml ->
pyyaml, PIL -> pillow); a package that is not installed (a core-only venv) is looked up under its own name.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PLATFORM = ("platform",)
LAYER_EXTRAS = {
    "cpfd": (),
    "cli": PLATFORM,
    "components": PLATFORM,
    "pipelines": ("platform", "katib"),  # the katib extra installs with --no-deps (pyproject.toml, Makefile)
    "serving": PLATFORM,
    "monitoring": PLATFORM,
    "featurestore": PLATFORM,
    "feature_repo": PLATFORM,
    "benchmarks": ("platform", "dev"),  # measured against dev-only alternatives (webdataset)
}
# where each layer's files live: the deployables' own folders (cpfd/<name> links to them), cli and featurestore in cpfd/
LAYER_DIRS = {layer: f"cpfd/{layer}" if layer in ("cli", "featurestore") else layer for layer in LAYER_EXTRAS}
CPFD_LAZY = {"bentoml", "great-expectations"}  # of the platform, what cpfd imports inside a function
# namespace packages whose distribution is not found under the import name when it is not installed (a core-only venv)
NAMESPACES = {"kubeflow": ["kubeflow-katib", "kubeflow-training"]}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extras: tuple[str, ...]) -> set[str]:
    """The distributions the core and ``extras`` declare, self-references (``cpfd[x]``) followed."""
    project = PYPROJECT["project"]
    names: set[str] = set()
    todo, seen = [project["dependencies"]], set()
    todo += [project["optional-dependencies"][e] for e in extras]
    while todo:
        for req in todo.pop():
            name, extra = re.match(r"\s*([\w.-]+)\s*(?:\[([^\]]*)\])?", req).groups()
            if canonical(name) != canonical(project["name"]):
                names.add(canonical(name))
                continue
            for e in (extra or "").split(","):
                if e.strip() and e.strip() not in seen:
                    seen.add(e.strip())
                    todo.append(project["optional-dependencies"][e.strip()])
    return names


def third_party_imports(file: Path, first_party: set[str]) -> set[str]:
    """The top-level names of the absolute imports in ``file`` that are neither stdlib nor the project's."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - first_party - set(sys.stdlib_module_names)


def undeclared(root: Path) -> list[str]:
    """``file: import name`` for each import under ``root`` that its layer's dependencies do not declare."""
    first_party = {"cpfd"} | {p.stem for p in (root / "feature_repo").glob("*.py")}  # Feast's bare names
    dists = packages_distributions()
    nested = [root / d for d in LAYER_DIRS.values() if d.startswith("cpfd/")]
    offences = []
    for layer, extras in LAYER_EXTRAS.items():
        allowed = declared(extras) | (CPFD_LAZY if layer == "cpfd" else set())
        files = sorted((root / LAYER_DIRS[layer]).rglob("*.py"))
        if layer == "cpfd":
            files = [f for f in files if not any(f.is_relative_to(d) for d in nested)]
        for file in files:
            for name in sorted(third_party_imports(file, first_party)):
                if not {canonical(d) for d in dists.get(name, NAMESPACES.get(name, [name]))} & allowed:
                    offences.append(f"{file.relative_to(root)}: {name}")
    return offences


def test_every_imported_package_is_declared_for_its_layer():
    assert undeclared(ROOT) == []


@pytest.mark.parametrize(
    "layer,source,offence",
    [
        ("cpfd", "import yaml\nfrom PIL import Image\nimport sqlalchemy", None),  # import name -> distribution
        ("cpfd", "def f():\n    import bentoml", None),
        ("cpfd", "import scipy.stats", "scipy"),  # declared, but by the platform extra only
        ("cpfd", "def f():\n    from google.cloud import storage", "google"),  # arrives through another package
        ("monitoring", "from scipy.stats import ks_2samp", None),
        ("serving", "import kfp", None),
        ("serving", "import webdataset", "webdataset"),  # a dev extra
        ("benchmarks", "import webdataset", None),
        ("cli", "import kfp", None),
        ("cpfd", "import kfp", "kfp"),  # the core, beside cpfd/cli/ which may
    ],
)
def test_an_undeclared_import_is_caught(tmp_path, layer, source, offence):
    for folder in sorted(LAYER_DIRS.values()):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / LAYER_DIRS[layer] / "probe.py").write_text(source + "\n")
    assert undeclared(tmp_path) == ([f"{LAYER_DIRS[layer]}/probe.py: {offence}"] if offence else [])


def test_the_core_leaves_pandas_to_the_platform_cap():
    """Only Feast caps pandas below 3: the core takes the newest (the CI's core-only run, .ci/run)."""
    core = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("pandas")]
    platform = [r for r in PYPROJECT["project"]["optional-dependencies"]["platform"] if r.startswith("pandas")]
    assert core == ["pandas>=2.2"] and platform and all("<3" in r for r in platform)


def test_a_missing_minilm_package_names_the_extra(monkeypatch):
    from cpfd import models
    from cpfd.errors import ConfigError

    package = models.PRETRAINED_TEXT["minilm"]
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(ConfigError) as error:
        models.text_pretrained_path("minilm")
    message = str(error.value)
    assert "\n" not in message and message.endswith("pip install 'cpfd[text-pretrained]'")
    assert canonical(package) in declared(("text-pretrained",)) - declared(())
