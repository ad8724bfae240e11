"""The Katib Experiment: the same search space as the local search, a trial command the CLI accepts, and a metric
line Katib's standard-output collector reads. Nothing reaches a cluster."""

import re

import pytest
import yaml
from typer.testing import CliRunner

from cpfd.cli.main import app
from cpfd.search import OBJECTIVE, SEARCH_SPACE

pytest.importorskip("kubeflow.katib", reason="the kubeflow-katib SDK (make install) builds the manifest")

# Katib's default metrics format for the StdOut collector (katib: pkg/metricscollector/v1beta1/common)
KATIB_METRIC = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def _manifest(**kw):
    from cpfd.pipelines.katib import KatibOptions, katib_experiment

    return katib_experiment(KatibOptions("minor_safety", "/mnt/cpfd/ds/ms", "/mnt/cpfd/teacher", **kw))


def test_the_experiment_searches_the_shared_space_with_tpe_for_the_validation_f1():
    m = _manifest(trials=20, parallel=3, seed=4)
    assert (m["apiVersion"], m["kind"]) == ("kubeflow.org/v1beta1", "Experiment")
    assert m["metadata"]["name"] == "cpfd-minor-safety-lam-t"  # a DNS-1123 name
    spec = m["spec"]
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": OBJECTIVE}
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert {"name": "random_state", "value": "4"} in spec["algorithm"]["algorithmSettings"]
    assert (spec["maxTrialCount"], spec["parallelTrialCount"]) == (20, 3)
    got = {p["name"]: p for p in spec["parameters"]}
    assert list(got) == [d.field for d in SEARCH_SPACE]
    for d in SEARCH_SPACE:
        space = got[d.field]["feasibleSpace"]
        assert got[d.field]["parameterType"] == "double"
        assert (float(space["min"]), float(space["max"])) == (d.low, d.high)
        assert space["distribution"] == ("logUniform" if d.log else "uniform")


def test_the_trial_job_runs_the_project_image_on_the_shared_volume_with_a_gpu():
    m = _manifest(image="registry.example/cpfd:1", pvc="team-claim")
    template = m["spec"]["trialTemplate"]
    assert [p["reference"] for p in template["trialParameters"]] == [d.field for d in SEARCH_SPACE]
    pod = template["trialSpec"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == template["primaryContainerName"] and container["image"] == "registry.example/cpfd:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "team-claim"
    no_gpu = _manifest(gpu=False)["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert no_gpu["resources"] == {}


def test_the_trial_command_is_one_the_cli_accepts_once_katib_fills_it_in():
    import typer

    m = _manifest(config="/mnt/cpfd/project.yaml")
    command = m["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    for d in SEARCH_SPACE:
        assert f"distill.{d.field}=${{trialParameters.{d.field}}}" in command
    filled = [re.sub(r"\$\{trialParameters\.(\w+)\}", "0.5", a) for a in command]
    assert filled[:3] == ["cpfd", "train", "distill"]
    group = typer.main.get_command(app)
    train = group.get_command(None, "train")
    ctx = train.get_command(None, "distill").make_context("distill", filled[3:])
    assert ctx.params["set_"] == ["distill.lam=0.5", "distill.temperature=0.5"]
    assert str(ctx.params["config"]) == "/mnt/cpfd/project.yaml"


def test_the_metric_line_train_distill_prints_is_what_katib_reads():
    (match,) = [m for m in KATIB_METRIC.finditer("val_macro_f1=0.712345") if m.group(1)]
    assert (match.group(1), float(match.group(2))) == (OBJECTIVE, 0.712345)


def test_cpfd_pipeline_katib_writes_the_manifest(tmp_path):
    out = tmp_path / "exp.yaml"
    args = ["pipeline", "katib", "--scenario", "clickbait", "--dataset", "/d", "--teacher", "/t", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--trials", "6", "--no-gpu", "--set", "train.epochs=5"])
    assert res.exit_code == 0, res.output
    m = yaml.safe_load(out.read_text())
    assert m["spec"]["maxTrialCount"] == 6
    command = m["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-3:] == ["--set", "train.epochs=5", "-q"]
