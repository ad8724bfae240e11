"""Training throughput: a plain student step vs a two-stage CPFD step (cached teacher logits)
vs a step that recomputes the teacher (what caching avoids). Same data, same model, same run."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from cpfd.config import ProjectConfig


def _stepper(models, loss_fn, data, batch_size: int):
    """A function that runs one optimisation step of ``loss_fn`` on a random batch."""
    from cpfd.device import autocast, resolve_device

    device = resolve_device("auto")
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    train = data.splits["train"]
    gen = torch.Generator().manual_seed(0)
    count = [0]

    def step():
        idx = torch.randperm(len(train), generator=gen)[:batch_size]
        with autocast(device):
            loss = loss_fn(models, train.batch(idx, device), count[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        count[0] += 1

    return step


def _interleaved_rates(steppers: dict, batch_size: int, steps: int, block: int = 5) -> dict[str, float]:
    """examples/s of each stepper, timed in alternating blocks so machine load hits all alike."""
    for step in steppers.values():
        for _ in range(3):  # warm-up
            step()
    seconds = dict.fromkeys(steppers, 0.0)
    for _ in range(max(1, steps // block)):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(block):
                step()
            seconds[name] += time.perf_counter() - t0
    n = max(1, steps // block) * block * batch_size
    return {name: n / sec for name, sec in seconds.items()}


def run_throughput(project: ProjectConfig, steps: int, out: Path, log=print) -> dict:
    from cpfd.benchmarks.synthetic import generate
    from cpfd.data.build import build_scenario_dataset
    from cpfd.data.tensors import prepare_data
    from cpfd.distill import example_weights
    from cpfd.training.objectives import cached_distill_loss, ce_loss, joint_loss
    from cpfd.training.recipes import insample_teacher_outputs, new_model

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(tmp, 600, seed=0, scenarios=["clickbait"])
        from cpfd.config import load_config

        cfg = load_config(paths["config"])
        cfg = cfg.model_copy(update={"model": project.model, "train": project.train, "distill": project.distill})
        build_scenario_dataset(paths["videos"], paths["features"], "clickbait", cfg, Path(tmp) / "ds")
        data = prepare_data(Path(tmp) / "ds", cfg.model)
    bs = cfg.train.batch_size
    teacher = new_model(data, cfg.model, "teacher", 0).train()
    logits = insample_teacher_outputs(teacher.eval(), data).calibrated  # the step costs the same for oof outputs
    teacher.train()
    weights = example_weights(logits, data.splits["train"].labels, cfg.distill)
    rates = _interleaved_rates(
        {
            "student_ce": _stepper({"student": new_model(data, cfg.model, "student", 0)}, ce_loss("student"), data, bs),
            "cpfd_cached": _stepper(
                {"student": new_model(data, cfg.model, "student", 0)},
                cached_distill_loss(logits, weights, cfg.distill),
                data,
                bs,
            ),
            "joint_teacher_recomputed": _stepper(
                {"teacher": teacher, "student": new_model(data, cfg.model, "student", 0)},
                joint_loss(cfg.distill),
                data,
                bs,
            ),
        },
        bs,
        steps,
    )
    result = {
        "model_size": cfg.model.size,
        "batch_size": bs,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "examples_per_s": rates,
        "cpfd_step_cost_vs_student": rates["student_ce"] / rates["cpfd_cached"],
        "joint_step_cost_vs_student": rates["student_ce"] / rates["joint_teacher_recomputed"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(result, indent=2))
    log("| step | examples/s | cost vs plain student |\n|---|---|---|")
    for k, v in rates.items():
        log(f"| {k} | {v:.1f} | {rates['student_ce'] / v:.3f}x |")
    log(
        f"(model {cfg.model.size}, batch {bs}, {steps} timed steps, {torch.get_num_threads()} threads; "
        "target: cpfd_cached <= 1.10x)"
    )
    return result
