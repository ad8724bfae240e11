"""The monitoring job: per scenario and arm, confidence drift against the offline reference,
predicted-class drift, quality on labelled traffic and label coverage; per scenario an A/B
verdict. Statistics are computed once, in numpy over the whole window (every prediction, per scenario
and arm: no GroupBy, which gives wrong per-group classification metrics in evidently 0.7); Evidently
shows, tests and stores them (cpfd.monitoring.evidently_report, cpfd.monitoring.evidently_ui)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpfd.errors import CpfdError
from cpfd.evaluate import confusion_matrix
from cpfd.monitoring import stats
from cpfd.monitoring.settings import MonitorConfig
from cpfd.monitoring.slices import reference_slice

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
WORKSPACE_DIR = "evidently_workspace"
EXPERIMENTS_DIR = "experiments"


def _num_classes(*arrays) -> int:
    return int(max((np.nanmax(a) for a in arrays if len(a)), default=1)) + 1


def slice_metrics(cur: pd.DataFrame, ref: pd.DataFrame, k: int, cfg: MonitorConfig) -> dict:
    """Drift, quality and coverage of one (scenario, arm) slice, with the status of every check."""
    out: dict = {"n": int(len(cur)), "messages": [], "checks": {}}
    checks, msgs = out["checks"], out["messages"]
    if not len(cur):
        msgs.append("no traffic in the window")
        checks.update(
            confidence_ks=SKIPPED, confidence_psi=SKIPPED, predicted_class=SKIPPED, f1=SKIPPED, label_coverage=SKIPPED
        )
        return out
    conf = cur["confidence"].to_numpy()
    pred = cur["predicted"].to_numpy()
    out["confidence_mean"] = float(conf.mean())
    out["class_shares"] = stats.class_shares(pred, k).round(4).tolist()
    if len(ref):
        d = cfg.drift
        rconf = ref["confidence"].to_numpy()
        out["reference_n"] = int(len(ref))
        out["reference_confidence_mean"] = float(rconf.mean())
        out["ks_statistic"], out["ks_pvalue"] = stats.ks(rconf, conf)
        out["psi"] = stats.psi(rconf, conf, d.psi_bins)
        ref_shares = stats.class_shares(ref["predicted"].to_numpy(), k)
        out["reference_class_shares"] = ref_shares.round(4).tolist()
        out["class_psi"] = stats.share_psi(ref_shares, stats.class_shares(pred, k))
        out["reference_f1"] = float(stats.macro_prf(confusion_matrix(ref["label"], ref["predicted"], k))["f1"])
        checks["confidence_ks"] = (
            FAIL if out["ks_pvalue"] < d.ks_pvalue and out["ks_statistic"] > d.ks_min_statistic else PASS
        )
        checks["confidence_psi"] = FAIL if out["psi"] > d.psi_max else PASS
        checks["predicted_class"] = FAIL if out["class_psi"] > d.class_psi_max else PASS
    else:
        msgs.append("no offline reference for this scenario and arm: drift not checked")
        checks.update(confidence_ks=SKIPPED, confidence_psi=SKIPPED, predicted_class=SKIPPED)

    lab = cur[cur["true_label"].notna()]
    q = cfg.quality
    out["labelled"] = int(len(lab))
    out["label_coverage"] = len(lab) / len(cur)
    checks["label_coverage"] = FAIL if out["label_coverage"] < q.min_label_coverage else PASS
    if not len(lab):
        msgs.append("no labels yet for this window: F1 not computed")
        checks["f1"] = SKIPPED
        return out
    cm = confusion_matrix(lab["true_label"].to_numpy().astype(np.int64), lab["predicted"].to_numpy(), k)
    out.update({m: float(v) for m, v in stats.macro_prf(cm).items()})
    out["accuracy"] = float(np.trace(cm) / cm.sum())
    out["confusion_matrix"] = cm.tolist()
    if len(lab) < q.min_labelled:
        msgs.append(f"only {len(lab)} labelled predictions (< quality.min_labelled = {q.min_labelled}): F1 not checked")
        checks["f1"] = SKIPPED
    else:
        drop = out.get("reference_f1", out["f1"]) - out["f1"]
        checks["f1"] = FAIL if out["f1"] < q.min_f1 or drop > q.max_f1_drop else PASS
    return out


def ab_skip_reason(arms: dict, cfg: MonitorConfig) -> str | None:
    for name in (cfg.arms.control, cfg.arms.treatment):
        if arms.get(name, {}).get("n", 0) == 0:
            return f"arm {name!r} has no traffic in the window: no A/B verdict"
        if arms[name].get("labelled", 0) < cfg.quality.min_labelled:
            return (
                f"arm {name!r} has {arms[name].get('labelled', 0)} labelled predictions "
                f"(< quality.min_labelled = {cfg.quality.min_labelled}): no A/B verdict"
            )
    return None


def ab_verdict(arms: dict, cfg: MonitorConfig, alpha: float | None = None, seed: int = 0) -> dict:
    """Treatment minus control macro-F1 with a bootstrap CI, from the arms' confusion matrices."""
    c, t = cfg.arms.control, cfg.arms.treatment
    reason = ab_skip_reason(arms, cfg)
    if reason:
        return {"status": SKIPPED, "message": reason}
    alpha = cfg.ab.alpha if alpha is None else alpha
    cm_t, cm_c = (np.asarray(arms[a]["confusion_matrix"]) for a in (t, c))
    k = max(len(cm_t), len(cm_c))
    cm_t, cm_c = (np.pad(m, (0, k - len(m))) for m in (cm_t, cm_c))
    resamples = max(cfg.ab.resamples, int(np.ceil(20 / alpha)))  # >= 10 resamples in each tail
    res = stats.bootstrap_f1_diff(cm_t, cm_c, resamples, alpha, seed)
    res["alpha"] = alpha
    better, worse = res["significant"] and res["diff"] > 0, res["significant"] and res["diff"] < 0
    res["verdict"] = "treatment better" if better else "treatment worse" if worse else "no significant difference"
    res["status"] = FAIL if worse or (cfg.ab.fail_on == "not_better" and not better) else PASS
    res["message"] = (
        f"{t} - {c} macro-F1 = {res['diff']:+.4f}, {100 * (1 - alpha):.4g}% CI "
        f"[{res['ci_low']:+.4f}, {res['ci_high']:+.4f}]: {res['verdict']}"
    )
    return res


def analyse(window: pd.DataFrame, reference: pd.DataFrame, cfg: MonitorConfig) -> dict:
    """Every scenario seen in the window or the reference: its slices and its A/B verdict."""
    scenarios = sorted(set(window["scenario"]) | set(reference["scenario"]))
    groups = window.groupby(["scenario", "arm"]).indices
    result, all_arms = {}, {}
    for s in scenarios:
        ref_s = reference[reference["scenario"] == s]
        cur_s = window[window["scenario"] == s]
        k = _num_classes(
            ref_s["label"].to_numpy(),
            ref_s["predicted"].to_numpy(),
            cur_s["predicted"].to_numpy(),
            cur_s["true_label"].dropna().to_numpy(),
        )
        arm_names = sorted({a for (sc, a) in groups if sc == s} | {cfg.arms.control, cfg.arms.treatment})
        arms = {}
        for a in arm_names:
            cur = window.iloc[groups[(s, a)]] if (s, a) in groups else window.iloc[:0]
            arms[a] = slice_metrics(cur, reference_slice(reference, s, a), k, cfg)
        all_arms[s] = (arms, k, len(cur_s), len(ref_s))
    # Bonferroni over the scenarios that get a verdict: one alert budget alpha for the whole window
    tested = sum(ab_skip_reason(arms, cfg) is None for arms, *_ in all_arms.values())
    alpha = cfg.ab.alpha / max(tested, 1) if cfg.ab.correction == "bonferroni" else cfg.ab.alpha
    for s, (arms, k, n_cur, n_ref) in all_arms.items():
        ab = ab_verdict(arms, cfg, alpha)
        messages = [f"{a}: {m}" for a, sl in arms.items() for m in sl["messages"]]
        if not n_cur:
            messages.insert(0, "no traffic for this scenario in the window")
        if not n_ref:
            messages.insert(0, "scenario not in the offline reference")
        failed = [f"{a}/{c}" for a, sl in arms.items() for c, v in sl["checks"].items() if v == FAIL]
        if ab["status"] == FAIL:
            failed.append("ab")
        result[s] = {
            "status": FAIL if failed else PASS,
            "failed_checks": failed,
            "num_classes": k,
            "n": int(n_cur),
            "arms": arms,
            "ab": ab,
            "messages": messages + [f"A/B: {ab['message']}"],
        }
    return result


def run_monitor(
    log_target,
    reference_path,
    since: str,
    until: str,
    out_dir,
    cfg: MonitorConfig | None = None,
    evidently: bool = True,
    workspace: str | Path | None = None,
) -> dict:
    """Read, analyse, write summary.json, Evidently reports per scenario, plots and index.html; add the
    reports to the Evidently ``workspace`` (default: ``evidently.workspace`` of the config, else
    ``evidently_workspace`` next to ``out_dir``)."""
    from cpfd.monitoring.logread import iso_utc, read_window, safe_url
    from cpfd.monitoring.reference import read_reference
    from cpfd.monitoring.settings import load_monitor_config
    from cpfd.predlog import PredictionLog

    cfg = cfg or load_monitor_config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    if "://" not in str(log_target) and not Path(log_target).is_file():
        raise CpfdError(f"prediction log {log_target} does not exist (a SQLite file or an SQLAlchemy URL)")
    log = PredictionLog(log_target)
    window = read_window(log, since, until)
    reference = read_reference(reference_path)
    timings["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    summary: dict[str, Any] = {
        "window": {
            "since": iso_utc(since, "--since"),
            "until": iso_utc(until, "--until"),
            "log": safe_url(log),
            "reference": str(reference_path),
        },
        "n_predictions": int(len(window)),
        "n_labelled": int(window["true_label"].notna().sum()),
        "messages": [],
        "scenarios": {},
        "config": cfg.model_dump(),
    }
    if window.empty:
        summary["messages"].append(
            f"no predictions in {summary['window']['log']} between {summary['window']['since']} "
            f"and {summary['window']['until']}"
        )
        summary["status"] = FAIL if cfg.empty_window_fails else PASS
        summary["failed_checks"] = ["window/empty"] if cfg.empty_window_fails else []
    else:
        summary["scenarios"] = analyse(window, reference, cfg)
        if cfg.experiments.enabled:
            from cpfd.monitoring.experiments import run_experiments

            state_dir = cfg.experiments.state_dir or out.parent / EXPERIMENTS_DIR
            summary["experiments_state_dir"] = str(state_dir)
            summary["experiments"] = run_experiments(
                log, window, reference, since, until, cfg, summary["scenarios"], state_dir
            )
            for s, st in summary["experiments"].items():
                if st["decision"] in ("invalid", "rollback"):
                    summary["scenarios"][s]["failed_checks"].append(f"experiment_{st['decision']}")
                    summary["scenarios"][s]["status"] = FAIL
                summary["scenarios"][s]["messages"].append(f"experiment: {st['decision']}: {st['reason']}")
                summary["scenarios"][s]["experiment"] = {
                    "decision": st["decision"],
                    "srm": st["srm"]["status"],
                    **{k: st["f1"][k] for k in ("diff", "low", "high") if "f1" in st},
                }
        summary["failed_checks"] = [f"{s}/{c}" for s, r in summary["scenarios"].items() for c in r["failed_checks"]]
        summary["status"] = FAIL if summary["failed_checks"] else PASS
    timings["statistics"] = time.perf_counter() - t
    if evidently and not window.empty:
        from cpfd.monitoring.evidently_report import write_scenario_reports

        t = time.perf_counter()
        workspace = workspace or cfg.evidently.workspace or out.parent / WORKSPACE_DIR
        write_scenario_reports(summary, out / "scenarios", workspace)
        timings["evidently"] = time.perf_counter() - t
    t = time.perf_counter()
    from cpfd.monitoring.html import write_index

    write_index(summary, out)
    timings["index"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    summary["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    summary["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    return summary


def _json_default(o):
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def format_summary(summary: dict) -> str:
    """A short text summary for the terminal."""
    lines = [
        f"monitoring {summary['window']['since']} .. {summary['window']['until']}: {summary['n_predictions']} "
        f"predictions, {summary['n_labelled']} labelled -> {summary['status'].upper()}"
    ]
    lines += [f"  {m}" for m in summary["messages"]]
    for s, r in summary["scenarios"].items():
        lines.append(
            f"  {s}: {r['status'].upper()}" + (f" ({', '.join(r['failed_checks'])})" if r["failed_checks"] else "")
        )
        for a, sl in r["arms"].items():
            if sl["n"]:
                v = {m: f"{sl[m]:.3f}" if m in sl else "-" for m in ("reference_confidence_mean", "psi", "f1")}
                lines.append(
                    f"    {a:10s} n={sl['n']:<8d} conf={sl['confidence_mean']:.3f} ref={v['reference_confidence_mean']}"
                    f" psi={v['psi']} F1={v['f1']} coverage={sl['label_coverage']:.2f}"
                )
        lines += [f"    {m}" for m in r["messages"]]
    if summary.get("experiments"):
        from cpfd.monitoring.experiments import format_status

        lines.append("experiments (always-valid, cumulative since each start):")
        lines += format_status(summary["experiments"])
    return "\n".join(lines)


def recurring_window(since: str, until: str, hours: float) -> tuple[str, str]:
    """Explicit bounds, or the last ``hours`` up to ``until`` (default: now) when ``since`` is empty."""
    from cpfd.predlog import utcnow_iso

    until = until or utcnow_iso()
    if since:
        return since, until
    if hours <= 0:
        raise CpfdError(f"window_hours must be positive when since is empty, got {hours}")
    return (pd.Timestamp(until) - pd.Timedelta(hours=hours)).isoformat(), until


def monitor_step(
    log_target: str,
    reference_path: str,
    since: str,
    until: str,
    window_hours: float,
    config_yaml: str,
    out_dir: str,
    html_path: str,
) -> dict:
    """The pipeline step: run the job into ``out_dir`` (the Evidently workspace inside it unless the config
    names one) and write Evidently's report of the whole window (every scenario's values and checks) to
    ``html_path``."""
    from cpfd.monitoring.evidently_report import run_report
    from cpfd.monitoring.settings import load_monitor_config

    since, until = recurring_window(since, until, window_hours)
    cfg = load_monitor_config(text=config_yaml)
    workspace = cfg.evidently.workspace or Path(out_dir) / WORKSPACE_DIR
    summary = run_monitor(log_target, reference_path, since, until, out_dir, cfg, workspace=workspace)
    run_report(summary).save_html(str(html_path))
    return summary
