"""`cpfd experiment plan|status|history|ramp|promote|rollback`: plan an online experiment, read its always-valid
verdict, and act on it by writing a new version of the serving config (monitoring/experiments.py,
serving/rollout.py); the running service takes the new traffic shares without a restart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from cpfd.errors import ConfigError

experiment_app = typer.Typer(
    help="Online experiments: plan, always-valid status, ramp / promote / rollback with history.",
    no_args_is_help=True,
)

ServingOpt = typer.Option(Path("serving/config.yaml"), "--config", "-c", help="the serving config to change")
StateOpt = typer.Option(
    Path("runs/experiments"), help="experiment state folder (`cpfd monitor` writes it next to --out)"
)
WhyOpt = typer.Option(..., help="why: recorded in the config's history")
WhoOpt = typer.Option(None, help="who (default: $CPFD_USER, else the login name)")


@experiment_app.command("plan")
def plan(
    scenario: str = typer.Option(..., help="scenario to plan for"),
    min_effect: float = typer.Option(..., help="smallest macro-F1 difference worth detecting, e.g. 0.02"),
    reference: Path = typer.Option(..., help="offline reference Parquet (or folder): the test split's predictions"),
    power: float = typer.Option(0.8, help="probability of calling a true difference of --min-effect"),
    alpha: float = typer.Option(0.05, help="error rate of the always-valid verdict, every look included"),
    treatment_share: float = typer.Option(0.5, help="treatment's traffic share"),
    traffic_per_day: float = typer.Option(0.0, help="predictions per day for the scenario (0: no days estimate)"),
    label_rate: float = typer.Option(1.0, help="share of predictions that get a label"),
    control: str = typer.Option("control"),
    treatment: str = typer.Option("treatment"),
):
    """Labelled predictions per arm (and days at a traffic and label rate) to detect --min-effect on macro-F1 with
    the confidence sequence the monitoring job uses, from the reference's per-class confusion variance."""
    from cpfd.monitoring.experiments import arm_variances
    from cpfd.monitoring.reference import read_reference
    from cpfd.monitoring.sequential import plan_sample_size

    for name, v, lo, hi in (
        ("--min-effect", min_effect, 0, 1),
        ("--power", power, 0, 1),
        ("--alpha", alpha, 0, 1),
        ("--treatment-share", treatment_share, 0, 1),
        ("--label-rate", label_rate, 0, 1),
    ):
        if not lo < v < hi and not (name == "--label-rate" and v == 1):
            raise ConfigError(f"{name} must be between {lo} and {hi}, got {v}")
    try:
        var_t, var_c = arm_variances(read_reference(reference), scenario, control, treatment)
    except ValueError as e:
        raise ConfigError(f"--reference {reference}: {e}") from None
    p = plan_sample_size(var_t, var_c, min_effect, alpha, power, treatment_share)
    typer.echo(
        f"{scenario}: {p['control']} labelled predictions in {control} and {p['treatment']} in {treatment} "
        f"({p['total']} in all) detect a macro-F1 difference of {min_effect} with power {power:g} at alpha {alpha:g}, "
        f"looked at as often as you like"
    )
    typer.echo(
        f"  per-unit variance from the reference: {treatment} {var_t:.4f}, {control} {var_c:.4f}; the always-valid "
        f"interval is {p['inflation']:.2f}x the fixed-horizon one at that size (+-{p['radius']:.4f})"
    )
    if traffic_per_day > 0:
        per_day = traffic_per_day * label_rate
        typer.echo(
            f"  {math.ceil(p['total'] / per_day)} days at {traffic_per_day:g} predictions/day, {label_rate:g} labelled"
        )
    typer.echo(f"  monitoring config: experiments: {{design_labelled: {p['total']}}}")


def _states(state_dir: Path, scenario: str | None) -> list[dict]:
    from cpfd.monitoring.experiments import load_state

    if not state_dir.is_dir():
        raise ConfigError(f"experiment state folder {state_dir} does not exist (run `cpfd monitor` first)")
    states = [s for f in sorted(state_dir.glob("*.json")) if (s := load_state(f)) is not None]
    states = [s for s in states if scenario in (None, s["scenario"])]
    if not states:
        raise ConfigError(f"no experiment{' for scenario ' + repr(scenario) if scenario else ''} in {state_dir}")
    return states


@experiment_app.command("status")
def status(
    state_dir: Path = StateOpt,
    scenario: str | None = typer.Option(None, help="one scenario (default: every one)"),
    as_json: bool = typer.Option(False, "--json", help="the latest look of each experiment as JSON"),
):
    """Each experiment's latest look: decision, always-valid macro-F1 and accuracy intervals, SRM, guardrails."""
    states = _states(state_dir, scenario)
    if as_json:
        typer.echo(json.dumps({f"{s['scenario']}/{s['experiment']}": _latest(s) for s in states}, indent=2))
        return
    for s in states:
        lk = _latest(s)
        head = f"{s['scenario']} / {s['experiment']}: since {s['start']}, {len(s['looks'])} look(s)"
        if s.get("concluded"):
            head += f", concluded: {s['concluded']}"
        typer.echo(head)
        if not lk:
            continue
        typer.echo(f"  decision {lk['decision'].upper()}: {lk['reason']}")
        for m in ("f1", "accuracy"):
            if m in lk:
                typer.echo(
                    f"  {m:8s} {lk[m]['diff']:+.4f}  always-valid {100 * (1 - s['alpha']):.4g}% "
                    f"[{lk[m]['low']:+.4f}, {lk[m]['high']:+.4f}]  {lk[m]['status']}"
                )
        typer.echo(f"  labelled {lk['labelled']}; SRM {lk['srm']['status']}: {lk['srm']['message']}")
        for name, g in lk["guardrails"].items():
            typer.echo(f"  guardrail {name}: {g['status']}")


def _latest(state: dict) -> dict:
    return state["looks"][-1] if state["looks"] else {}


@experiment_app.command("history")
def history(config: Path = ServingOpt):
    """Every version of the serving config: who, when, what, why."""
    from cpfd.rollout import read_history

    records = read_history(config)
    if not records:
        typer.echo(f"{config}: no change recorded yet")
    for r in records:
        typer.echo(
            f"v{r['version']:04d} {r['time']} {r['who']}: {r['action']} {r['scenario']} "
            f"{r['traffic_before']} -> {r['traffic_after']}: {r['why']}"
        )


def _act(
    action: str,
    config: Path,
    scenario: str,
    why: str,
    who: str | None,
    state_dir: Path | None,
    share: float | None = None,
    treatment: str = "treatment",
    control: str = "control",
) -> dict:
    from cpfd.monitoring.experiments import conclude, load_state
    from cpfd.serving.rollout import change

    verdict, state_file = None, None
    if state_dir is not None and state_dir.is_dir():
        for f in sorted(state_dir.glob("*.json")):
            s = load_state(f)
            if s and s["scenario"] == scenario and not s.get("concluded"):
                state_file = f
                verdict = {"experiment": s["experiment"], "state": str(state_file), **_verdict(_latest(s))}
    record = change(config, scenario, action, why, share, treatment, control, who, verdict)
    if action in ("promote", "rollback") and state_file is not None:
        conclude(state_file, f"{action} (version {record['version']})")
    typer.echo(
        f"{config} version {record['version']}: {action} {scenario} {record['traffic_before']} -> "
        f"{record['traffic_after']} (a running service takes it within a second)"
    )
    return record


def _verdict(look: dict) -> dict:
    return {k: look[k] for k in ("until", "decision", "reason", "f1", "srm") if k in look}


@experiment_app.command("ramp")
def ramp(
    scenario: str = typer.Option(...),
    share: float = typer.Option(..., help="the treatment's new traffic share, 0..1"),
    why: str = WhyOpt,
    config: Path = ServingOpt,
    who: str | None = WhoOpt,
    state_dir: Path | None = typer.Option(None, help="experiment state folder: its verdict goes into the history"),
    treatment: str = typer.Option("treatment"),
):
    """Give the treatment --share of the traffic (the other arms keep their proportions of the rest)."""
    _act("ramp", config, scenario, why, who, state_dir, share, treatment)


@experiment_app.command("promote")
def promote(
    scenario: str = typer.Option(...),
    why: str = WhyOpt,
    config: Path = ServingOpt,
    who: str | None = WhoOpt,
    state_dir: Path | None = typer.Option(None, help="experiment state folder: marks the experiment concluded"),
    treatment: str = typer.Option("treatment"),
):
    """All traffic to the treatment."""
    _act("promote", config, scenario, why, who, state_dir, treatment=treatment)


@experiment_app.command("rollback")
def rollback(
    scenario: str = typer.Option(...),
    why: str = WhyOpt,
    config: Path = ServingOpt,
    who: str | None = WhoOpt,
    state_dir: Path | None = typer.Option(None, help="experiment state folder: marks the experiment concluded"),
    control: str = typer.Option("control"),
):
    """All traffic back to the control."""
    _act("rollback", config, scenario, why, who, state_dir, control=control)


def apply_policy(summary: dict, cfg, state_dir: Path, echo=typer.echo) -> list[dict]:
    """The monitoring config's policy (``experiments.policy.act``): ramp or promote on success, roll back on failure;
    hold (and an SRM's invalid verdict) changes nothing. Returns the history records written."""
    e = cfg.experiments
    if not (e.policy.act and e.serving_config):
        return []
    from cpfd.monitoring.experiments import conclude
    from cpfd.serving.rollout import change

    records = []
    for scenario, look in (summary.get("experiments") or {}).items():
        decision = look["decision"]
        if decision not in ("ramp", "promote", "rollback"):
            continue
        r = change(
            e.serving_config,
            scenario,
            decision,
            f"policy: {look['reason']}",
            look.get("ramp_to"),
            cfg.arms.treatment,
            cfg.arms.control,
            e.policy.who,
            {"experiment": look["experiment"], "state": look["state"], **_verdict(look)},
        )
        if decision in ("promote", "rollback"):
            conclude(look["state"], f"{decision} by policy (version {r['version']})")
        echo(f"policy: {scenario}: {decision} -> {e.serving_config} version {r['version']} {r['traffic_after']}")
        records.append(r)
    return records
