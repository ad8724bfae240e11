"""The project image without a Docker engine: the wheel, installed into a fresh virtual environment with the
Dockerfile's own install line, runs every command and every component's entry point from there.

The fresh environment gets torch first (as the image does; here from the machine's CPU wheel), then exactly the
Dockerfile's `# project install` line with /wheels pointed at a freshly built wheel. It runs outside the checkout,
so only what the wheel ships is used: the embedded config, the Feast repository, the serving and monitoring configs.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.unit.test_image_spec import REPO, project_install_lines
from tests.unit.test_namespace import build_wheel

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COMPONENTS = sorted(p.stem for p in (REPO / "components").glob("*.py") if p.stem not in ("__init__", "common", "image"))


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    shutil.copy(REPO / "constraints.txt", wheels)  # as the Dockerfile copies it beside the wheel
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = str(env_dir / "bin" / "pip")
    torch_pin = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if "torch==" in line)
    # pip's cache and no byte-compiling here (the image keeps neither): the same packages, minutes sooner
    _run([pip, "install", "-q", "--no-compile", torch_pin.split("install --no-cache-dir ")[1].split()[0]], root)
    install = project_install_lines()[0].removeprefix("RUN ").split(" && ")[0]
    version = (REPO / "pyproject.toml").read_text().split('version = "')[1].split('"')[0]
    command = install.replace("${VERSION}", version).replace("/wheels", str(wheels))
    assert command.startswith("pip install --no-cache-dir "), command
    _run(["bash", "-c", command.replace("pip install --no-cache-dir", f"{pip} install -q --no-compile", 1)], root)
    return root, env_dir / "bin"


def test_every_command_and_component_runs_from_the_installed_wheel(fresh):
    root, bin_dir = fresh
    python, cpfd = str(bin_dir / "python"), str(bin_dir / "cpfd")
    where = _run([python, "-c", "import cpfd, cpfd.feature_repo; print(cpfd.__file__)"], root).stdout
    assert str(REPO) not in where and "site-packages" in where  # the wheel, not the checkout
    site = Path(where.strip()).parents[1]
    (dist,) = site.glob("cpfd-*.dist-info")
    assert (dist / "top_level.txt").read_text().split() == ["cpfd"]  # one import package
    strays = {"cli", "serving", "monitoring", "pipelines", "components", "benchmarks", "featurestore", "feature_repo"}
    assert not [p.name for p in site.iterdir() if p.name in strays]
    assert (site / "cpfd" / "feature_repo" / "feature_store.yaml").is_file()  # the linked folders, as files
    help_text = _run([cpfd, "--help"], root).stdout
    commands = ["generate", "dataset", "features", "config", "train", "pipeline", "package", "serve", "monitor"]
    for command in commands:
        assert command in help_text
        _run([cpfd, command, "--help"], root)
    imports = "; ".join(f"import cpfd.components.{c} as m{i}" for i, c in enumerate(COMPONENTS))
    _run(
        [
            python,
            "-c",
            imports + "; import cpfd.pipelines.cpfd_pipeline, cpfd.serving.launch, cpfd.monitoring.analysis",
        ],
        root,
    )
    # a tiny real run of the data path: the embedded config and the Feast repository come from the wheel
    _run([cpfd, "generate", "--out", "d", "--videos", "60", "--scenario", "clickbait"], root)
    _run([cpfd, "features", "apply", "--data", "d"], root)
    out = _run(
        [cpfd, "dataset", "build", "--videos", "d/videos.parquet", "--features", "d", "--scenario", "clickbait"]
        + ["--out", "ds", "--backend", "feast", "--config", "d/scenarios.yaml"],
        root,
    ).stdout
    assert '"backend": "feast"' in out
    _run([cpfd, "pipeline", "compile", "--out", "p.yaml"], root)
    assert "image: cpfd:" in (root / "p.yaml").read_text()
    _run(
        [
            python,
            "-c",
            "from cpfd.serving.config import load_serving_config; import cpfd.serving, pathlib; "
            "load_serving_config(pathlib.Path(cpfd.serving.__file__).with_name('config.yaml'))",
        ],
        root,
    )
