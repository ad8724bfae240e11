"""The Dockerfile, the Makefile's image target and the compiled pipeline name the same image and install line."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def project_install_lines() -> list[str]:
    """The RUN line after each `# project install` comment of the Dockerfile."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    return [lines[i + 1].strip() for i, line in enumerate(lines) if line.strip().startswith("# project install")]


def test_every_variant_installs_the_wheel_with_the_platform_extras_the_same_way():
    installs = project_install_lines()
    assert len(installs) == 2 and installs[0] == installs[1]  # cpu and cuda
    (extras,) = re.findall(r'cpfd-\$\{VERSION\}-py3-none-any\.whl\[([\w,]+)\]"', installs[0])
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras.split(",") == ["platform"] and "platform" in declared
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, flags=re.M)
    assert stages == ["wheel", "base", "cpu", "cuda"]
    final = dockerfile.split("FROM base AS cpu")[1]
    assert "USER cpfd" in final and "gcc" not in final and "build-essential" not in final
    torch_pin = next(line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("torch=="))
    assert dockerfile.count(f"pip install --no-cache-dir {torch_pin}") == 2  # torch first, the tested version
    # the wheel installs with the tested set (constraints.txt), which each variant copies in beside it
    assert "-c /wheels/constraints.txt " in installs[0] and dockerfile.count("COPY constraints.txt /wheels/") == 2


def test_the_image_tag_comes_from_the_package_version(tmp_path):
    from cpfd.components.image import DEFAULT_IMAGE
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline

    project_version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version("cpfd") == project_version and f"cpfd:{project_version}" == DEFAULT_IMAGE
    assert re.search(rf"^ARG VERSION={re.escape(project_version)}$", (REPO / "Dockerfile").read_text(), flags=re.M)
    assert "-t cpfd:$(VERSION) ." in (REPO / "Makefile").read_text()
    spec = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", PipelineOptions()).read_text())
    executors = next(spec)["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}  # the tables' importers run no image
    assert images == {DEFAULT_IMAGE}
