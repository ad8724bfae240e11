"""The per-scenario lambda / T search as a Katib ``Experiment``, built with the kubeflow-katib SDK from the same
search space as the local Optuna search (``cpfd.search``): TPE, the distilled student's validation macro-F1
maximised, one batch Job per trial running the project image's ``cpfd train distill`` with the trial's settings and
printing ``val_macro_f1=<value>`` (Katib's standard-output metrics collector reads it).

The trials read a built dataset and a trained teacher from a shared volume (a ReadWriteMany claim, as the
pipeline's distributed steps use); the teacher's outputs are computed once beforehand (one ``cpfd train distill``
or the pipeline's teacher_outputs step), so that parallel trials only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpfd.search import OBJECTIVE, SEARCH_SPACE

KATIB_API = "kubeflow.org/v1beta1"


@dataclass
class KatibOptions:
    """Where the trials run and what they read."""

    scenario: str
    dataset: str  # the built dataset's folder, as mounted in the trial pod
    teacher: str  # the trained teacher's folder, as mounted
    config: str = ""  # a project config file, as mounted (empty: the embedded default)
    image: str = ""  # empty: cpfd.components.project_image()
    pvc: str = "cpfd-work"  # the claim holding dataset and teacher
    mount: str = "/mnt/cpfd"
    namespace: str = "kubeflow"
    trials: int = 12
    parallel: int = 2
    gpu: bool = True
    accelerator: str = "nvidia.com/gpu"
    seed: int = 0
    extra_sets: list[str] = field(default_factory=list)  # more --set overrides for every trial


def trial_command(opts: KatibOptions) -> list[str]:
    """The trial container's command: one distilled student with the trial's settings, its metric on stdout."""
    command = ["cpfd", "train", "distill", "--dataset", opts.dataset, "--teacher", opts.teacher, "--out", "/tmp/trial"]
    command += ["--config", opts.config] if opts.config else []
    for d in SEARCH_SPACE:
        command += ["--set", f"distill.{d.field}=${{trialParameters.{d.field}}}"]
    for s in opts.extra_sets:
        command += ["--set", s]
    return [*command, "-q"]


def _trial_job(opts: KatibOptions, image: str) -> dict:
    resources = {"limits": {opts.accelerator: 1}} if opts.gpu else {}
    container = {
        "name": "training",
        "image": image,
        "command": trial_command(opts),
        "env": [{"name": "BENTOML_DO_NOT_TRACK", "value": "True"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": resources,
        "volumeMounts": [{"name": "work", "mountPath": opts.mount}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": opts.pvc}}],
                },
            }
        },
    }


def katib_experiment(opts: KatibOptions) -> dict:
    """The Experiment manifest (a plain dict, ready for YAML or the Kubernetes API)."""
    from kubeflow.katib import (
        ApiClient,
        V1beta1AlgorithmSetting,
        V1beta1AlgorithmSpec,
        V1beta1Experiment,
        V1beta1ExperimentSpec,
        V1beta1FeasibleSpace,
        V1beta1ObjectiveSpec,
        V1beta1ParameterSpec,
        V1beta1TrialParameterSpec,
        V1beta1TrialTemplate,
    )
    from kubernetes.client import V1ObjectMeta

    from cpfd.components.image import project_image

    parameters = [
        V1beta1ParameterSpec(
            name=d.field,
            parameter_type="double",
            feasible_space=V1beta1FeasibleSpace(
                min=str(d.low), max=str(d.high), distribution="logUniform" if d.log else "uniform"
            ),
        )
        for d in SEARCH_SPACE
    ]
    template = V1beta1TrialTemplate(
        primary_container_name="training",
        trial_parameters=[
            V1beta1TrialParameterSpec(name=d.field, description=f"distill.{d.field}", reference=d.field)
            for d in SEARCH_SPACE
        ],
        trial_spec=_trial_job(opts, opts.image or project_image()),
    )
    experiment = V1beta1Experiment(
        api_version=KATIB_API,
        kind="Experiment",
        metadata=V1ObjectMeta(name=f"cpfd-{opts.scenario.replace('_', '-')}-lam-t", namespace=opts.namespace),
        spec=V1beta1ExperimentSpec(
            objective=V1beta1ObjectiveSpec(type="maximize", objective_metric_name=OBJECTIVE),
            algorithm=V1beta1AlgorithmSpec(
                algorithm_name="tpe",
                algorithm_settings=[V1beta1AlgorithmSetting(name="random_state", value=str(opts.seed))],
            ),
            parameters=parameters,
            trial_template=template,
            max_trial_count=opts.trials,
            parallel_trial_count=opts.parallel,
            max_failed_trial_count=max(1, opts.trials // 4),
        ),
    )
    return ApiClient().sanitize_for_serialization(experiment)
