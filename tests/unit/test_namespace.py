"""One import package: the wheel installs `cpfd` and nothing else at the top level, with the deployables' folders
(kept at the top of the repository) inside it as cpfd.serving, cpfd.monitoring, ... through the links in cpfd/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LINKED = ("serving", "monitoring", "pipelines", "components", "benchmarks", "feature_repo")


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from a copy of the working tree (links kept): setuptools reuses what a build/
    folder in the checkout holds, so an in-place build could ship files that are gone."""
    src = out.with_name(out.name + "-src")
    local = {".git", ".venv", "build", "site", "data", "runs", "artifacts", "cpfd.egg-info"}  # the checkout's own

    def junk(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "__pycache__" or (Path(folder) == ROOT and n in local)]

    shutil.copytree(ROOT, src, symlinks=True, ignore=junk)
    done = subprocess.run(  # in pip's isolated build environment, as the image builds it (a core-only venv has an
        # older setuptools than pyproject.toml asks for, and no wheel package)
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("cpfd-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    return zipfile.ZipFile(build_wheel(tmp_path_factory.mktemp("wheel")))


def test_each_deployable_folder_is_linked_into_the_package():
    for name in LINKED:
        link = ROOT / "cpfd" / name
        assert link.is_symlink() and link.readlink() == Path("..") / name, name
        assert link.resolve() == (ROOT / name).resolve()


def test_the_wheel_has_one_top_level_package(wheel):
    names = wheel.namelist()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["cpfd"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"cpfd"}
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "cpfd = cpfd.cli.main:main" in wheel.read(entry_points).decode()


def test_the_wheel_ships_every_module_and_config_of_the_package_and_the_linked_folders(wheel):
    names = set(wheel.namelist())
    for name in ("cpfd", *LINKED):
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", f"{name}/*.py", f"{name}/*.yaml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert files, name
        in_wheel = [f if name == "cpfd" else f"cpfd/{f}" for f in files]
        assert [f for f in in_wheel if f not in names] == [], f"{name}: not in the wheel"
    assert "cpfd/data/build.py" in names and "cpfd/defaults/project.yaml" in names


def test_the_image_build_copies_every_linked_folder():
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert {"cpfd", *LINKED} <= copied
