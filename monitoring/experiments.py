"""Online experiments run every day: per scenario, an always-valid verdict on everything logged since the
experiment started (state kept between runs), a sample-ratio check, guardrails, and the decision a policy acts
on. The statistics are in monitoring/sequential.py; the derivation in docs/experiments.md.

Decisions, in order: ``invalid`` (sample-ratio mismatch: the verdict is void, nothing is done), ``rollback``
(the treatment is worse on macro-F1, or a guardrail shows it worse than its margin), ``promote`` / ``ramp``
(better, and every guardrail shown non-inferior), ``hold`` (anything else: inconclusive, or a guardrail not yet
shown non-inferior), ``concluded`` (promoted or rolled back earlier).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpfd.errors import CpfdError
from cpfd.evaluate import confusion_matrix
from cpfd.monitoring import sequential as seq
from cpfd.monitoring.settings import MonitorConfig

DECISIONS = ("invalid", "rollback", "promote", "ramp", "hold", "concluded")


def state_path(state_dir: str | Path, scenario: str, experiment: str, log: str = "") -> Path:
    """One file per scenario, experiment and prediction log (two logs never share a state)."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{scenario}__{experiment}")
    suffix = f"__{hashlib.sha256(log.encode()).hexdigest()[:8]}" if log else ""
    return Path(state_dir) / f"{safe}{suffix}.json"


def load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CpfdError(f"experiment state {path} is not valid JSON ({e})") from None


def save_state(path: Path, state: dict) -> None:
    """Atomically: a crash leaves the previous state, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=_json))
    os.replace(tmp, path)


def _json(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def new_state(
    scenario: str, experiment: str, start: str, cfg: MonitorConfig, unit_variance: float, log: str = ""
) -> dict:
    """The design is fixed here, before any look: alpha and the mixture parameters (tuned for
    ``experiments.design_labelled`` labelled units with the per-unit variance of the offline reference)."""
    alpha = cfg.ab.alpha
    e = cfg.experiments
    v_design = e.design_labelled * unit_variance
    return {
        "scenario": scenario,
        "experiment": experiment,
        "control": cfg.arms.control,
        "treatment": cfg.arms.treatment,
        "start": start,
        "log": log,
        "alpha": alpha,  # committed whole at the start: a confidence sequence spends nothing per look
        "design_labelled": e.design_labelled,
        "eta_f1": seq.design_eta(v_design, alpha),
        "eta_accuracy": seq.design_eta(e.design_labelled * 4 * 0.25, alpha),
        # guardrails read every prediction, labelled or not: designed for ten times the labelled size (both arms)
        "eta_latency": seq.design_eta(5 * e.design_labelled * 0.99 * 0.01, e.guardrails.alpha / 2),
        "eta_coverage": seq.design_eta(10 * e.design_labelled * 1.0, e.guardrails.alpha),
        "looks": [],
        "interval": {"f1": [-math.inf, math.inf], "accuracy": [-math.inf, math.inf]},
        "concluded": None,
    }


def arm_variances(reference: pd.DataFrame, scenario: str, control: str, treatment: str) -> tuple[float, float]:
    """Per-observation macro-F1 variance of (treatment, control) from the offline reference's confusion matrices
    (each arm's own rows where the reference has them, else the scenario's). A DataContractError-free ValueError
    when the reference has no row for the scenario."""
    ref = reference[reference["scenario"] == scenario]
    if ref.empty:
        raise ValueError(f"the reference has no rows for scenario {scenario!r}")
    k = int(max(ref["label"].max(), ref["predicted"].max())) + 1
    out = []
    for arm in (treatment, control):
        rows = ref[ref["arm"] == arm]
        rows = rows if len(rows) else ref
        out.append(
            seq.macro_f1_influence(confusion_matrix(rows["label"].to_numpy(), rows["predicted"].to_numpy(), k))[1]
        )
    return out[0], out[1]


def reference_unit_variance(reference: pd.DataFrame, scenario: str, control: str, treatment: str) -> float:
    """Per-unit variance of the macro-F1 difference at equal shares (1.0 without a reference for the scenario)."""
    try:
        var_t, var_c = arm_variances(reference, scenario, control, treatment)
    except ValueError:
        return 1.0
    return var_t / 0.5 + var_c / 0.5


def serving_shares(serving_config: str | Path) -> dict[str, tuple[str, dict[str, float]]]:
    """Scenario -> (experiment name, arm -> traffic share) of a serving config, read as plain YAML."""
    from cpfd.config import read_yaml

    data = read_yaml("serving config", serving_config)
    top = data.get("experiment", "default")
    return {
        s: (v.get("experiment") or top, {a: float(c["traffic"]) for a, c in v.get("arms", {}).items()})
        for s, v in (data.get("scenarios") or {}).items()
    }


def _cs_status(low: float, high: float) -> str:
    if low > high:  # the looks' intervals do not overlap: an assumption broke (quality drifting over time?)
        return "empty"
    return "better" if low > 0 else "worse" if high < 0 else "inconclusive"


def guardrails(data: pd.DataFrame, window_arms: dict, state: dict, cfg: MonitorConfig) -> dict[str, dict]:
    """Each guardrail: ``pass`` (shown non-inferior), ``fail`` (shown worse than its margin), ``pending``."""
    g = cfg.experiments.guardrails
    c, t = state["control"], state["treatment"]
    arm_c, arm_t = data[data["arm"] == c], data[data["arm"] == t]
    out: dict[str, dict] = {}
    half = g.alpha / 2
    if g.latency_p99_ms is not None and "latency_ms" in data:
        lat_c, lat_t = arm_c["latency_ms"].to_numpy(), arm_t["latency_ms"].to_numpy()
        eta = state.get("eta_latency") or seq.design_eta(5 * state["design_labelled"] * 0.0099, half)
        lo_t, hi_t = seq.quantile_bounds(lat_t, 0.99, eta, half)
        lo_c, hi_c = seq.quantile_bounds(lat_c, 0.99, eta, half)
        status = "pass" if hi_t - lo_c <= g.latency_p99_ms else "fail" if lo_t - hi_c > g.latency_p99_ms else "pending"
        out["latency_p99"] = {
            "status": status,
            "margin_ms": g.latency_p99_ms,
            "control_p99": float(np.quantile(lat_c, 0.99)) if len(lat_c) else None,
            "treatment_p99": float(np.quantile(lat_t, 0.99)) if len(lat_t) else None,
            "diff_bounds": [lo_t - hi_c, hi_t - lo_c],
        }
    if g.label_coverage is not None:
        cov_c, cov_t = arm_c["true_label"].notna().to_numpy(float), arm_t["true_label"].notna().to_numpy(float)
        if len(cov_c) and len(cov_t):
            eta = state.get("eta_coverage") or seq.design_eta(10 * state["design_labelled"], g.alpha)
            cs = seq.two_arm_cs(
                cov_t.mean(), cov_t.var(), len(cov_t), cov_c.mean(), cov_c.var(), len(cov_c), eta, g.alpha
            )
            m = g.label_coverage
            status = "pass" if cs["low"] >= -m else "fail" if cs["high"] < -m else "pending"
            out["label_coverage"] = {
                "status": status,
                "margin": m,
                "diff": cs["diff"],
                "bounds": [cs["low"], cs["high"]],
            }
        else:
            out["label_coverage"] = {"status": "pending", "margin": g.label_coverage}
    if g.confidence_psi is not None:  # a point check on the window: drift both arms share is not the treatment's
        psi_t, psi_c = window_arms.get(t, {}).get("psi"), window_arms.get(c, {}).get("psi")
        status = (
            "pending" if psi_t is None or psi_c is None else "pass" if psi_t - psi_c <= g.confidence_psi else "fail"
        )
        out["confidence_drift"] = {
            "status": status,
            "treatment_psi": psi_t,
            "control_psi": psi_c,
            "margin": g.confidence_psi,
        }
    return out


def look(
    state: dict,
    data: pd.DataFrame,
    until: str,
    cfg: MonitorConfig,
    shares: dict[str, float] | None = None,
    phase_start: str | None = None,
    window_arms: dict | None = None,
) -> dict:
    """One look at everything logged for the experiment since its start (``data``: the reader's columns, this
    scenario and experiment only): appends the look to ``state`` and returns it."""
    c, t = state["control"], state["treatment"]
    alpha = state["alpha"]
    lk: dict[str, Any] = {"until": until, "n": {a: int((data["arm"] == a).sum()) for a in (c, t)}, "shares": shares}
    # sample ratio: distinct videos (the unit the hash assigns) since the shares last changed
    lk["srm"] = {"status": "skipped", "message": "no serving config: sample ratio not checked"}
    if shares:
        phase = data if not phase_start else data[data["ts"] >= pd.Timestamp(phase_start)]
        units = phase.drop_duplicates("video_id").groupby("arm").size().to_dict()
        res = seq.srm_test({str(a): int(n) for a, n in units.items()}, shares)
        bad = res["pvalue"] < cfg.experiments.srm_alpha
        res["status"] = "fail" if bad else "pass"
        res["since"] = phase_start or state["start"]
        res["message"] = (
            f"sample ratio mismatch: {res['observed']} videos against shares {shares} "
            f"(chi-square p = {res['pvalue']:.2g} < {cfg.experiments.srm_alpha})"
            if bad
            else f"sample ratio ok (p = {res['pvalue']:.2g})"
        )
        lk["srm"] = res
    lab = data[data["true_label"].notna()]
    k = int(max(lab["true_label"].max(), lab["predicted"].max(), 1)) + 1 if len(lab) else 2
    cms = {
        a: confusion_matrix(
            lab.loc[lab["arm"] == a, "true_label"].to_numpy().astype(np.int64),
            lab.loc[lab["arm"] == a, "predicted"].to_numpy(),
            k,
        )
        for a in (c, t)
    }
    lk["labelled"] = {a: int(cms[a].sum()) for a in (c, t)}
    enough = min(lk["labelled"].values()) >= cfg.quality.min_labelled
    for metric, fn in (("f1", seq.macro_f1_influence), ("accuracy", seq.accuracy_influence)):
        if not enough:
            continue
        (e_t, v_t), (e_c, v_c) = fn(cms[t]), fn(cms[c])
        cs = seq.two_arm_cs(e_t, v_t, lk["labelled"][t], e_c, v_c, lk["labelled"][c], state[f"eta_{metric}"], alpha)
        lo, hi = state["interval"][metric]
        lo, hi = max(lo, cs["low"]), min(hi, cs["high"])  # running intersection: still a confidence sequence
        state["interval"][metric] = [lo, hi]
        lk[metric] = {"diff": cs["diff"], "low": lo, "high": hi, "look_low": cs["low"], "look_high": cs["high"]}
        lk[metric]["status"] = _cs_status(lo, hi)
    lk["guardrails"] = guardrails(
        data if not phase_start else data[data["ts"] >= pd.Timestamp(phase_start)], window_arms or {}, state, cfg
    )
    lk["decision"], lk["reason"] = decide(state, lk, shares, cfg)
    state["looks"].append(lk)
    return lk


def decide(state: dict, lk: dict, shares: dict[str, float] | None, cfg: MonitorConfig) -> tuple[str, str]:
    if state.get("concluded"):
        return "concluded", f"concluded earlier: {state['concluded']}"
    if lk["srm"]["status"] == "fail":
        return "invalid", "verdict void: " + lk["srm"]["message"]
    if "f1" not in lk:
        return "hold", f"fewer than {cfg.quality.min_labelled} labelled predictions in an arm: no verdict yet"
    primary = lk["f1"]["status"]
    if primary == "empty":
        return "invalid", (
            "verdict void: the running macro-F1 interval is empty (the looks contradict each other: does quality "
            "drift over time within the experiment?)"
        )
    failed = [n for n, g in lk["guardrails"].items() if g["status"] == "fail"]
    pending = [n for n, g in lk["guardrails"].items() if g["status"] == "pending"]
    f1 = lk["f1"]
    iv = (
        f"macro-F1 {f1['diff']:+.4f}, always-valid {100 * (1 - state['alpha']):.4g}% CS "
        f"[{f1['low']:+.4f}, {f1['high']:+.4f}]"
    )
    if primary == "worse":
        return "rollback", f"treatment worse: {iv}"
    if failed:
        return "rollback", f"guardrail failed: {', '.join(failed)}"
    if primary == "inconclusive":
        return "hold", f"inconclusive: {iv}"
    if pending:
        return "hold", f"treatment better ({iv}), guardrails not yet shown non-inferior: {', '.join(pending)}"
    share = (shares or {}).get(state["treatment"], 0.0)
    nxt = [s for s in cfg.experiments.policy.steps if s > share + 1e-9 and s < 1.0]
    if nxt:
        lk["ramp_to"] = nxt[0]
        return "ramp", f"treatment better ({iv}), guardrails pass: ramp to {nxt[0]:g}"
    return "promote", f"treatment better ({iv}), guardrails pass"


def run_experiments(
    log,
    window: pd.DataFrame,
    reference: pd.DataFrame,
    since: str,
    until: str,
    cfg: MonitorConfig,
    window_result: dict,
    state_dir: str | Path,
) -> dict[str, dict]:
    """A look at the experiment of every scenario in the window (the experiment of its latest prediction; a new
    one starts at ``since``): reads the log from each experiment's start, updates and saves its state; returns
    scenario -> the look."""
    from cpfd.monitoring.logread import iso_utc, read_window, safe_url
    from cpfd.rollout import last_change

    e = cfg.experiments
    log_url = safe_url(log)
    served = serving_shares(e.serving_config) if e.serving_config else {}
    since, until = iso_utc(since, "--since"), iso_utc(until, "--until")
    latest = window.sort_values("ts").groupby("scenario")["experiment"].last().to_dict() if len(window) else {}
    todo = []
    for scenario in window_result:
        experiment = latest.get(scenario) or (served[scenario][0] if scenario in served else None)
        if not experiment:
            continue
        path = state_path(state_dir, scenario, experiment, log_url)
        state = load_state(path)
        if state is not None and state["start"] >= until:
            state = None  # a window before the experiment's start (a backfill): it starts again there
        if state is None:
            unit_var = reference_unit_variance(reference, scenario, cfg.arms.control, cfg.arms.treatment)
            state = new_state(scenario, experiment, since, cfg, unit_var, log_url)
        todo.append((scenario, experiment, path, state))
    out: dict[str, dict] = {}
    if not todo:
        return out
    start = min(s["start"] for *_, s in todo)
    data = window if start >= since else read_window(log, start, until)
    for scenario, experiment, path, state in todo:
        d = data[(data["scenario"] == scenario) & (data["experiment"] == experiment)]
        d = d[d["ts"] >= pd.Timestamp(state["start"])]
        shares = served[scenario][1] if scenario in served else None
        phase = last_change(e.serving_config, scenario) if e.serving_config else None
        phase = max(phase, state["start"]) if phase else None
        last = state["looks"][-1]["labelled"] if state["looks"] else {}
        labelled = d[d["true_label"].notna()]["arm"].value_counts().to_dict()
        gone = any(labelled.get(a, 0) < n for a, n in last.items())
        if gone or state.get("first_row") not in (None, _first_row(d)):  # pruned, or a new log at that path
            path.replace(path.with_suffix(".json.superseded"))
            unit_var = reference_unit_variance(reference, scenario, state["control"], state["treatment"])
            state = new_state(scenario, experiment, since, cfg, unit_var, log_url)
            state["note"] = "the log lost rows seen at the last look (pruned or recreated): a new state started"
            d = d[d["ts"] >= pd.Timestamp(since)]
        state["first_row"] = state.get("first_row") or _first_row(d)
        lk = look(state, d, until, cfg, shares, phase, window_result[scenario]["arms"])
        save_state(path, state)
        out[scenario] = {"experiment": experiment, "state": str(path), "start": state["start"], **lk}
    return out


def _first_row(d: pd.DataFrame) -> str | None:
    """The experiment's earliest logged prediction (time and video): a log pruned or recreated changes it."""
    if d.empty:
        return None
    row = d.loc[d["ts"].idxmin()]
    return f"{row['ts'].isoformat()}|{int(row['video_id'])}"


def conclude(state_file: str | Path, what: str) -> None:
    """Mark an experiment promoted or rolled back: later looks report it and decide nothing."""
    path = Path(state_file)
    state = load_state(path)
    if state is not None:
        state["concluded"] = what
        save_state(path, state)


def format_status(status: dict[str, dict]) -> list[str]:
    lines = []
    for s, st in status.items():
        f1 = st.get("f1")
        iv = f" F1 {f1['diff']:+.4f} CS [{f1['low']:+.4f}, {f1['high']:+.4f}]" if f1 else ""
        g = ", ".join(f"{n}={v['status']}" for n, v in st["guardrails"].items())
        lines.append(
            f"  {s} ({st['experiment']}, since {st['start']}): {st['decision'].upper()}{iv}; "
            f"SRM {st['srm']['status']}; guardrails {g or '-'}"
        )
        lines.append(f"    {st['reason']}")
    return lines
