"""Run the CPFD pipeline: locally with kfp.local (no cluster, no network) or on a Kubeflow host.

Run-time parameters are JSON-able: paths, the scenario list and the project config as a YAML
string, so the same arguments go to a local run and to ``kfp.Client``. A local run hands back the
pipeline's outputs: the report, the table and the packaged scenarios (``LocalRun.packages``).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cpfd.components import timing
from cpfd.components.common import PIPELINE_METHODS
from cpfd.config import ProjectConfig
from cpfd.env import environment
from cpfd.errors import CpfdError
from cpfd.pipelines.cpfd_pipeline import PipelineOptions, build_pipeline

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# what the terminal shows of a run (the run's outcome is read from kfp.local's outputs and the steps' records, never
# from these lines): the steps' own one-line results (they name the scenario), failures and skipped steps (not the
# gate's branch that did not run: the gate's own line says which one did)
_PROGRESS = re.compile(
    r"^(dataset|data gate|teacher|fold plan|fold teacher|teacher outputs|baseline student|c?pfd student|gate|"
    r"packaged|reference) [a-z0-9_]+: "
    r"|finished with status FAILURE|Skipping (?!conditional task)"
)


def pipeline_arguments(
    videos: str | Path,
    features: str | Path,
    project: ProjectConfig,
    scenarios: list[str] | None = None,
    method: str | None = None,
    join: str = "feast",
    bentoml_home: str | Path | None = None,
    min_rows: int = 50,
    max_null_increase: float = 0.15,
    stream_root: str = "",
) -> dict:
    """The pipeline's parameters for a run (every value JSON-able). ``method`` (pfd or cpfd) overrides every
    scenario's distill.method; None or empty keeps the config's (the run's build_dataset steps resolve it)."""
    from cpfd.components.common import resolve_scenario_config

    names = scenarios or [s.name for s in project.scenarios]
    method = method or ""
    if method and method not in PIPELINE_METHODS:
        raise CpfdError(f"--method must be 'pfd' or 'cpfd', got {method!r}")
    for name in names:
        resolve_scenario_config(project, name, method)  # unknown names and bad configs fail here, not inside the run
    if join not in ("feast", "pandas"):
        raise CpfdError(f"--join must be 'feast' or 'pandas', got {join!r}")
    args = {
        "videos": str(videos),
        "features": str(features),
        "scenarios": list(names),
        # one line (JSON is YAML): KFP copies defaults into the IR file's header comment
        "config_yaml": json.dumps(project.model_dump(mode="json")),
        "method": method,
        "join": join,
        "min_rows": int(min_rows),
        "max_null_increase": float(max_null_increase),
        "bentoml_home": str(bentoml_home or ""),
        "stream_root": stream_root,
    }
    json.dumps(args)
    return args


@dataclass
class LocalRun:
    """Where a finished local run left its outputs (read from the pipeline's outputs, not from its folders).

    ``summaries``: the table's rows (one per scenario, ``package`` null when not packaged); ``packages``: the
    packaged scenarios' handovers: ``scenario``, ``method``, ``tags`` per arm, ``bentoml_home``, ``gate`` and
    ``reference`` (the folder with both arms' offline reference, ``<scenario>-<arm>.parquet``); ``steps``: every
    step's timing record (``cpfd.components.timing``: ``step``, ``labels``, ``wall``, ``phases`` in seconds)."""

    run_dir: Path
    log: Path
    seconds: float
    markdown: Path
    html: Path
    summaries: list[dict] = field(default_factory=list)
    packages: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


class _Tee:
    """Stands in for stdout/stderr during a run: everything to the log, progress lines to ``echo``."""

    def __init__(self, log_file, echo: Callable[[str], None] | None, verbose: bool):
        self.log_file, self.echo, self.verbose = log_file, echo, verbose
        self.partial = ""
        self.t0 = time.perf_counter()

    def write(self, text: str) -> int:
        self.log_file.write(text)
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line).strip()
            if self.echo and (self.verbose or _PROGRESS.search(plain)):
                self.echo(plain if self.verbose else f"[{time.perf_counter() - self.t0:5.0f}s] {plain}")
        return len(text)

    def flush(self) -> None:
        self.log_file.flush()

    def isatty(self) -> bool:
        return False


def run_local(
    arguments: dict,
    root: str | Path,
    opts: PipelineOptions | None = None,
    echo: Callable[[str], None] | None = print,
    verbose: bool = False,
) -> LocalRun:
    """Run the pipeline with kfp.local's SubprocessRunner in this environment (use_venv=False).

    A failing step raises CpfdError naming the step and quoting its error (from the step's own record,
    ``cpfd.components.timing``); steps downstream of it do not run. The run's results come from the pipeline's outputs
    as kfp.local returns them. The full log is kept at ``<root>/<run>.log``, the steps' timing records in
    ``<root>/<run>-steps/``.
    """
    from kfp import local

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    steps_dir = log_path.with_name(f"{log_path.stem}-steps")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(opts)
    t0 = time.perf_counter()
    with open(log_path, "w") as log_file, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"kfp\.local.*")
        tee = _Tee(log_file, echo, verbose)
        try:
            with (
                contextlib.redirect_stdout(tee),
                contextlib.redirect_stderr(tee),
                _process_state_restored(tee),
                environment(**{timing.ENV: str(steps_dir)}),
            ):
                task = pipeline(**arguments)
        except RuntimeError as e:
            raise CpfdError(f"pipeline run failed in {_failure(e, _records(steps_dir))} (log: {log_path})") from None
    seconds = time.perf_counter() - t0
    out = task.outputs
    table = Path(out["table"].path)
    return LocalRun(
        run_dir=root / table.relative_to(root).parts[0],  # <root>/<pipeline run>/.../report/table
        log=log_path,
        seconds=seconds,
        markdown=Path(out["markdown"].path),
        html=Path(out["html"].path),
        summaries=json.loads(table.read_text()),
        packages=json.loads(Path(out["packages"].path).read_text()),
        steps=_records(steps_dir),
    )


def _records(steps_dir: Path) -> list[dict]:
    """The steps' timing records (``cpfd.components.timing``), a failed step's with its ``error``."""
    return [json.loads(p.read_text()) for p in sorted(steps_dir.glob("*.json"))]


def _failure(error: RuntimeError, steps: list[dict]) -> str:
    """Which step failed and why: the failed steps' own records, else the task chain kfp.local's error names."""
    failed = [s for s in steps if s.get("error")]
    if failed:
        names = list(dict.fromkeys(s["step"].replace("_", "-") for s in failed))
        where = sorted({str(s["labels"]["scenario"]) for s in failed if "scenario" in s["labels"]})
        return (
            f"step {', '.join(names)}"
            + (f" (scenario {', '.join(where)})" if where else "")
            + f": {failed[0]['error']}"
        )
    chain = re.findall(r"'([\w-]+)'", _ANSI.sub("", str(error)))  # kfp.local: innermost task first
    return f"step {chain[0] if chain else '?'}: the step left no error record, see the log"


def step_times(steps: list[dict], seconds: float) -> str:
    """Per kind of step: how many ran, their wall time (process start to exit, summed), the part that is not the
    step's own work (``cpfd.components.timing.OVERHEAD``: start-up, imports, finish) and the largest work phase."""
    kinds: dict[str, list[dict]] = {}
    for s in steps:
        kinds.setdefault(s["step"], []).append(s)
    wall = sum(s["wall"] for s in steps)
    over = sum(v for s in steps for k, v in s["phases"].items() if k in timing.OVERHEAD)
    lines = [
        f"steps:     {len(steps)} steps in a {seconds:.0f} s run: {wall:.0f} s of step wall time, "
        f"{over:.0f} s ({over / max(wall, 1e-9):.0%}) of it start-up, imports and finish, not the steps' work",
        f"  {'step':<20} {'n':>3} {'wall s':>7} {'mean s':>7} {'startup':>8} {'imports':>8} {'finish':>7}  work",
    ]
    for name, group in sorted(kinds.items(), key=lambda kv: -sum(s["wall"] for s in kv[1])):
        phases: dict[str, float] = {}
        for s in group:
            for k, v in s["phases"].items():
                phases[k] = phases.get(k, 0.0) + v
        total = sum(s["wall"] for s in group)
        work = sorted(((v, k) for k, v in phases.items() if k not in timing.OVERHEAD), reverse=True)
        lines.append(
            f"  {name:<20} {len(group):>3} {total:>7.1f} {total / len(group):>7.1f} "
            + " ".join(f"{phases.get(k, 0.0):>{w}.1f}" for k, w in zip(timing.OVERHEAD, (8, 8, 7), strict=True))
            + "  "
            + ", ".join(f"{k} {v:.1f}" for v, k in work)
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _process_state_restored(stream):
    """During the run the root logger writes only to ``stream``; afterwards the root logger and ``print`` are put
    back as they were. kfp.local swaps both per task (a handler on the current sys.stdout, an indenting print) and
    restores them per task, which races when loop iterations run in threads: without this, between tasks its log
    lines reach the caller's handlers (the terminal), and a handler writing into this run's (then closed) log could
    outlive the run and break the next one."""
    import builtins
    import logging

    root_logger = logging.getLogger()
    level, handlers, original_print = root_logger.level, root_logger.handlers[:], builtins.print
    root_logger.handlers[:] = [logging.StreamHandler(stream)]
    root_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)
        builtins.print = original_print


def submit(
    host: str,
    arguments: dict,
    opts: PipelineOptions | None = None,
    run_name: str | None = None,
    experiment: str | None = None,
    namespace: str | None = None,
    package_path: str | Path | None = None,
) -> str:
    """Compile and start a run on a Kubeflow Pipelines host through kfp.Client; returns the run id."""
    import tempfile

    import kfp

    from cpfd.pipelines.cpfd_pipeline import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(package_path or Path(tmp) / "cpfd_pipeline.yaml", opts)
        with _kfp_errors(f"submitting to {host}"):
            client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(path),
                arguments=arguments,
                run_name=run_name or f"cpfd-{time.strftime('%Y%m%d-%H%M%S')}",
                experiment_name=experiment,
                namespace=namespace,
            )
    return result.run_id


@contextlib.contextmanager
def _kfp_errors(what: str) -> Iterator[None]:
    """Any error of the KFP client inside as one line: ``<what> failed: <type>: <first line>``."""
    try:
        yield
    except Exception as e:  # the client raises urllib3 / ApiException / ValueError subclasses
        first = str(e).splitlines()[0] if str(e) else ""
        raise CpfdError(f"{what} failed: {type(e).__name__}: {first}") from None


def kfp_cron(expression: str) -> str:
    """A cron expression as Kubeflow Pipelines reads it (six fields, seconds first): five fields get ``0`` seconds."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise CpfdError(
            f"--cron {expression!r}: expected 5 fields (minute hour day month weekday, e.g. '0 6 * * *') "
            "or 6 with seconds first"
        )
    return " ".join(fields)


def schedule_monitoring(
    host: str,
    arguments: dict,
    cron: str,
    name: str = "cpfd-monitoring",
    experiment: str = "cpfd-monitoring",
    namespace: str | None = None,
    image: str = "",
) -> str:
    """A recurring run of the monitoring pipeline on a Kubeflow Pipelines host: ``cron`` (five or six fields), one run
    at a time, no catching up on missed runs; returns the recurring run's id."""
    import tempfile

    import kfp

    from cpfd.pipelines.monitoring_pipeline import compile_monitoring_pipeline

    schedule = kfp_cron(cron)
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_monitoring_pipeline(Path(tmp) / "cpfd_monitoring.yaml", image)
        with _kfp_errors(f"scheduling on {host}"):
            client = kfp.Client(host=host, namespace=namespace)
            experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
            result = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                description="cpfd monitoring: confidence drift, F1 and A/B verdicts of the last window_hours",
                cron_expression=schedule,
                max_concurrency=1,
                no_catchup=True,
                params=arguments,
                pipeline_package_path=str(path),
                enabled=True,
            )
    return result.recurring_run_id


def print_stream() -> Callable[[str], None]:
    """An echo that writes to the real stdout even while a run redirects it."""
    real: TextIO = sys.__stdout__ or sys.stdout  # no console at all (e.g. pythonw): the current stdout

    def echo(line: str) -> None:
        real.write(line + "\n")
        real.flush()

    return echo
