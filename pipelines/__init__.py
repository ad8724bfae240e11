"""The CPFD Kubeflow pipeline: DAG wiring (cpfd_pipeline), local runs and submission (runner)."""
