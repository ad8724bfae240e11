"""`cpfd train ...` and `cpfd evaluate`: the teacher, the baseline student, distillation, metrics.

Every `cpfd train` command also runs data-parallel under torchrun (one process per GPU; rank 0 prints and writes):
`torchrun --standalone --nproc-per-node 4 -m cpfd.cli train teacher --dataset D --out O` (README, Distributed training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cpfd.cli.common import ConfigOpt, QuietOpt, SetOpt, load_project

if TYPE_CHECKING:
    from cpfd.data.tensors import PreparedData

train_app = typer.Typer(help="Train the teacher, the baseline student, or distil.", no_args_is_help=True)


def _echo(message: str) -> None:
    """Print once: on rank 0 under torchrun."""
    from cpfd.training.distributed import is_main

    if is_main():
        typer.echo(message)


def _echo_titles(data: PreparedData) -> None:
    from cpfd.components.reports import describe_title_stats

    _echo(f"titles (validation split): {describe_title_stats(data.title_stats['val'])}")


def _train(role: str, dataset: Path, out: Path, config, set_, quiet: bool, resume: bool):
    from cpfd.data.tensors import prepare_data, read_manifest
    from cpfd.training.recipes import train_classifier

    project = load_project(config, set_)
    data = prepare_data(dataset, project.model, project.train_for(read_manifest(dataset)["scenario"]))
    _echo_titles(data)
    info = train_classifier(data, role, project, out, progress=not quiet, resume=resume)
    _echo(f"{role} saved to {out}: best epoch {info['best_epoch']}, val macro-F1 {info['best_val_macro_f1']:.4f}")


@train_app.command("teacher")
def train_teacher(
    dataset: Path = typer.Option(...),
    out: Path = typer.Option(...),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    quiet: bool = QuietOpt,
    resume: bool = typer.Option(True),
):
    """DF-X-VLM: frames + title + privileged dense features, cross-entropy."""
    _train("teacher", dataset, out, config, set_, quiet, resume)


@train_app.command("student")
def train_student(
    dataset: Path = typer.Option(...),
    out: Path = typer.Option(...),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    quiet: bool = QuietOpt,
    resume: bool = typer.Option(True),
):
    """X-VLM baseline: frames + title only, cross-entropy (the A/B control)."""
    _train("student", dataset, out, config, set_, quiet, resume)


@train_app.command("distill")
def train_distill(
    dataset: Path = typer.Option(...),
    teacher: Path = typer.Option(..., help="trained teacher folder"),
    out: Path = typer.Option(...),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    quiet: bool = QuietOpt,
    resume: bool = typer.Option(True),
):
    """Two-stage PFD / CPFD (distill.*) from a trained teacher; the teacher's outputs (out-of-fold by default) and
    their fold teachers are kept in TEACHER/outputs/, keyed on everything that decides them. Prints
    ``val_macro_f1=<value>`` last (the metric a Katib trial reads)."""
    from cpfd.data.tensors import prepare_data, read_manifest
    from cpfd.training.distributed import is_main
    from cpfd.training.run import Stages

    project = load_project(config, set_)
    data = prepare_data(dataset, project.model, project.train_for(read_manifest(dataset)["scenario"]))
    _echo_titles(data)
    scenario = data.manifest["scenario"]
    dcfg = project.distill_for(scenario)
    stages = Stages(data, project, teacher / "outputs", project.train_for(scenario), not quiet, resume, _echo)
    outputs, _ = stages.outputs(teacher, dcfg)
    cal = outputs.calibration
    _echo(
        f"teacher outputs ({outputs.source}): temperature {outputs.temperature:.2f}, validation NLL "
        f"{cal['nll_before']:.3f} -> {cal['nll_after']:.3f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}"
    )
    from cpfd.training.recipes import distill_student

    info = distill_student(data, outputs, project, out, progress=not quiet, resume=resume)
    _echo(f"{info['method']} student saved to {out}: val macro-F1 {info['best_val_macro_f1']:.4f}")
    if is_main():
        typer.echo(f"val_macro_f1={info['best_val_macro_f1']:.6f}")


@train_app.command("run")
def train_run(
    dataset: Path = typer.Option(...),
    out: Path = typer.Option(..., help="work folder: one sub-folder per stage, keyed on what decides it"),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    quiet: bool = QuietOpt,
    resume: bool = typer.Option(True),
):
    """The whole two-stage run of one scenario: teacher, baseline, gain estimate, fold teachers, teacher outputs,
    distilled student (a rerun reuses every stage whose settings did not change)."""
    from cpfd.data.tensors import prepare_data, read_manifest
    from cpfd.training.run import run_two_stage

    project = load_project(config, set_)
    data = prepare_data(dataset, project.model, project.train_for(read_manifest(dataset)["scenario"]))
    _echo_titles(data)
    result = run_two_stage(data, project, out, progress=not quiet, resume=resume, say=_echo)
    info = result.student_info
    _echo(f"teacher {result.teacher}\nbaseline {result.baseline}")
    _echo(
        f"{info['method']} student {result.student}: val macro-F1 {info['best_val_macro_f1']:.4f} "
        f"({result.outputs.source} teacher outputs{', fold teachers skipped' if result.skipped_folds else ''})"
    )


@train_app.command("joint")
def train_joint_cmd(
    dataset: Path = typer.Option(...),
    out: Path = typer.Option(...),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    quiet: bool = QuietOpt,
    resume: bool = typer.Option(True),
):
    """Synchronous PFD: teacher and student together, the teacher gets no gradient from distillation."""
    from cpfd.data.tensors import prepare_data, read_manifest
    from cpfd.training.recipes import train_joint

    project = load_project(config, set_)
    data = prepare_data(dataset, project.model, project.train_for(read_manifest(dataset)["scenario"]))
    info = train_joint(data, project, out, progress=not quiet, resume=resume)
    _echo(f"joint student saved to {out}: val macro-F1 {info['best_val_macro_f1']:.4f}")


def evaluate(
    model: Path = typer.Option(...),
    dataset: Path = typer.Option(...),
    split: str = "test",
    out: Path | None = typer.Option(None, help="write metrics JSON here"),
):
    """Macro-F1, precision, recall, confusion matrix and ECE of a trained model on a split."""
    from cpfd.evaluate import evaluate_saved_model

    metrics, _, _ = evaluate_saved_model(model, dataset, split)
    text = json.dumps(metrics, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)
