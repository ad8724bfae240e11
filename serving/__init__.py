"""The BentoML service that serves the CPFD students (serving/service.py) and `bentoml serve` started on it
(serving/launch.py). The serving rules and runtime themselves are in cpfd.serving_core / cpfd.serving_runtime."""
