"""Per-scenario lambda / T search on the validation split with Optuna (TPE, seeded): every trial is one distilled
student from the same cached teacher outputs, scored by its best validation macro-F1; the best trial's student is
the ``tuned`` variant (its test F1 is compared with the fixed default by the benchmark's paired intervals)."""

from __future__ import annotations

from pathlib import Path

from cpfd.config import DistillConfig
from cpfd.search import SEARCH_SPACE
from cpfd.teacher_outputs import TeacherOutputs


def tune_student(
    stages, outputs: TeacherOutputs, outputs_dir: Path, cfg: DistillConfig, trials: int, seed: int
) -> tuple[Path, dict, dict]:
    """(the best trial's student folder, its training info, {setting: value, "val_macro_f1", "trials"})."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found: dict[int, tuple[Path, dict]] = {}

    def objective(trial: optuna.Trial) -> float:
        update = {d.field: trial.suggest_float(d.field, d.low, d.high, log=d.log) for d in SEARCH_SPACE}
        student_dir, info = stages.student(outputs, outputs_dir, cfg.model_copy(update=update))
        found[trial.number] = (student_dir, info)
        return float(info["best_val_macro_f1"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({d.field: getattr(cfg, d.field) for d in SEARCH_SPACE})  # the default is trial 0
    study.optimize(objective, n_trials=trials)
    student_dir, info = found[study.best_trial.number]
    return student_dir, info, {**study.best_params, "val_macro_f1": study.best_value, "trials": trials}
