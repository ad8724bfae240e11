"""Data-parallel training under torchrun (gloo backend, CPU, 2 processes) against one process.

torchrun starts this file as its worker script (``__main__`` below); the test compares what the workers trained with
single-process runs of the same global batches.

Tolerance. Both runs see the same global batches in the same order and start from the same weights; with dropout 0
nothing random is drawn. What differs is float32 rounding: each rank reduces its 16 (or 7 and 6) rows, the all-reduce
adds the two halves and DDP halves the sum, while one process sums 32 rows at once, and matrix products over 16 rows
may block differently than over 32: a few ulps (~1e-7 relative) per gradient entry per step. AdamW divides the first
moment by the root of the second, so a relative perturbation of a gradient stays a relative perturbation of its step;
after 15 steps at lr 2e-3 the weights agree to ~1e-6 (measured: at most 7e-7). rtol 1e-4 / atol 1e-5 leaves a margin
of 10-100 and stays below what a wrong reduction moves: averaging the two ranks' means with equal weight on the
uneven last batch of 13 rows fails it.

One exception, measured at 1e-4: attention *key* biases. Softmax over keys ignores a shift common to all of a query's
scores, so their gradient is 0 in exact arithmetic and rounding noise in practice, which AdamW's normalisation turns
into lr-sized steps of random sign: they differ between any two summation orders and change no output. They are left
out of the weight comparison; the models' logits, compared with the same tolerance, cover them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cpfd.config import ModelConfig, ProjectConfig, TrainConfig, load_config
from cpfd.conventions import WEIGHTS_FILE
from cpfd.data.loader import local_rows
from cpfd.data.tensors import PreparedData, prepare_data
from cpfd.evaluate import predict_logits
from cpfd.models import load_model
from cpfd.training.recipes import train_classifier

CFG = TrainConfig(epochs=3, batch_size=32, patience=10, seed=1, threads=1)
TEACHER_ROWS = 141  # 4 global batches of 32 and one of 13: the ranks take 7 and 6 rows of the last one
STUDENT_ROWS = 129  # the last global batch has 1 row: rank 1 computes a placeholder row with weight 0
RTOL, ATOL = 1e-4, 1e-5


class Killed(Exception):
    pass


def _kill_after_first_epoch(epoch: int) -> None:
    if epoch == 1:
        raise Killed


def _project(synthetic_dir: Path) -> ProjectConfig:
    project = load_config(synthetic_dir / "scenarios.yaml")
    return project.model_copy(update={"model": ModelConfig(size="tiny", dropout=0.0)})


def _runs(project: ProjectConfig, data: PreparedData, out: Path, interrupted: bool) -> None:
    """The teacher (uneven last batch) and the student (a last batch smaller than the world); with ``interrupted``
    the teacher is killed after its first epoch and resumed."""
    teacher_data = data.with_train(torch.arange(TEACHER_ROWS))
    if interrupted:
        with pytest.raises(Killed):
            train_classifier(
                teacher_data,
                "teacher",
                project,
                out / "cut",
                progress=False,
                train_cfg=CFG,
                on_epoch_end=_kill_after_first_epoch,
            )
        torch.manual_seed(12345)  # a resumed process starts from another RNG state
        train_classifier(teacher_data, "teacher", project, out / "cut", progress=False, train_cfg=CFG)
    train_classifier(teacher_data, "teacher", project, out / "teacher", progress=False, train_cfg=CFG)
    student_data = data.with_train(torch.arange(STUDENT_ROWS))
    train_classifier(student_data, "student", project, out / "student", progress=False, train_cfg=CFG)


def _worker(synthetic_dir: Path, dataset: Path, root: Path) -> None:
    """One rank: every file write under ``root / "runs"`` it makes (audited opens for writing, renames, mkdirs) goes
    to ``root / writes.<rank>.json``."""
    runs, writes = root / "runs", []

    def audit(event: str, args: tuple) -> None:
        writing = event in ("os.rename", "os.mkdir") or (
            event == "open"
            and (set(args[1] or "") & set("wax+") or (args[1] is None and args[2] & (os.O_WRONLY | os.O_RDWR)))
        )
        path = args[1] if event == "os.rename" else args[0]  # a rename's destination
        if writing and isinstance(path, str | Path) and str(path).startswith(str(runs)):
            writes.append(str(path))

    sys.addaudithook(audit)
    project = _project(synthetic_dir)
    _runs(project, prepare_data(dataset, project.model), runs, interrupted=True)
    (root / f"writes.{os.environ['RANK']}.json").write_text(json.dumps(writes))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a model or checkpoint file, without the attention key biases (module docstring)."""
    out = {}
    for k, v in load_file(path).items():
        if k.startswith(("optim.", "rng.")) or k.endswith(("key.bias", "k_proj.bias")):
            continue
        d = v.shape[0] // 3  # nn.MultiheadAttention's in_proj_bias: query, key, value
        out[k] = torch.cat([v[:d], v[2 * d :]]) if k.endswith("in_proj_bias") else v
    return out


def _assert_same_training(ddp: Path, single: Path, val) -> None:
    for file in (WEIGHTS_FILE, "checkpoint/state.safetensors"):  # the best epoch's weights and the last epoch's
        a, b = _weights(ddp / file), _weights(single / file)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL, msg=f"{ddp.name} {file}: {k}")
    logits = [predict_logits(load_model(d), val) for d in (ddp, single)]
    torch.testing.assert_close(*logits, rtol=RTOL, atol=ATOL)
    info = [json.loads((d / "cpfd_model.json").read_text()) for d in (ddp, single)]
    assert info[0]["best_epoch"] == info[1]["best_epoch"]  # the same early-stopping decisions
    assert [h["val_macro_f1"] for h in info[0]["history"]] == [h["val_macro_f1"] for h in info[1]["history"]]


@pytest.mark.slow
def test_two_processes_train_like_one_and_only_rank_0_writes(synthetic_dir, clickbait_dataset, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__]
    done = subprocess.run(
        [*cmd, str(synthetic_dir), str(clickbait_dataset), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    threads = torch.get_num_threads()
    try:  # the reference: one process, the same global batches
        project = _project(synthetic_dir)
        data = prepare_data(clickbait_dataset, project.model)
        _runs(project, data, tmp_path / "single", interrupted=False)
        for name in ("teacher", "student"):
            _assert_same_training(tmp_path / "runs" / name, tmp_path / "single" / name, data.splits["val"])
    finally:
        torch.set_num_threads(threads)

    full, cut = (load_file(tmp_path / "runs" / d / WEIGHTS_FILE) for d in ("teacher", "cut"))
    for k in full:  # resumed under 2 processes = uninterrupted under 2 processes, exactly
        assert torch.equal(full[k], cut[k]), k

    writes = {r: json.loads((tmp_path / f"writes.{r}.json").read_text()) for r in (0, 1)}
    assert writes[1] == []
    for expected in ("checkpoint/state.json", "checkpoint/state.safetensors", "best.safetensors", "cpfd_model.json"):
        assert any(w.endswith(expected) for w in writes[0]), expected


@pytest.mark.slow
def test_a_pipeline_training_step_runs_under_torchrun(tiny_project, clickbait_dataset, tmp_path):
    """What a training step does in a pod with gpu_count > 1 (here 2 CPU processes): torchrun over
    ``python -m cpfd.components.launch``, rank 0's model and info dict handed back."""
    from types import SimpleNamespace

    from cpfd.components.common import resolve_scenario_config, write_scenario_config
    from cpfd.components.launch import Launch, Step, run_training

    train = tiny_project.train.model_copy(update={"epochs": 1, "threads": 1})
    config = SimpleNamespace(path=str(tmp_path / "config.json"), metadata={})
    write_scenario_config(
        resolve_scenario_config(tiny_project.model_copy(update={"train": train}), "clickbait"), config
    )
    step = Step("student", str(clickbait_dataset), config.path, str(tmp_path / "model"))
    info = run_training(step, Launch(nproc_per_node=2))
    assert info["role"] == "student" and info["epochs_run"] == 1
    assert json.loads((tmp_path / "model" / "cpfd_model.json").read_text())["history"] == info["history"]
    assert load_model(tmp_path / "model").spec.role == "student"


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("batch", [32, 13, 2, 1])
def test_rank_shares_weight_the_global_mean(world_size, batch):
    """Each rank's factor turns its mean loss into its share of the global batch's mean (DDP averages over ranks)."""
    idx, losses = torch.arange(100, 100 + batch), torch.rand(200, dtype=torch.float64)
    parts = [local_rows(idx, r, world_size) for r in range(world_size)]
    assert torch.equal(torch.cat([p.rows for p in parts if p.loss_scale > 0]), idx)
    ddp_average = sum(p.loss_scale * losses[p.rows].mean() for p in parts) / world_size
    assert ddp_average == pytest.approx(losses[idx].mean().item(), rel=1e-12)


if __name__ == "__main__":  # a torchrun worker
    _worker(*map(Path, sys.argv[1:4]))
