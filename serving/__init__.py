"""The student-serving deployable: the BentoML service (service.py), its HTTP gate (gate.py) and OpenAPI document
(openapi.py), the serving config (config.py), request schemas (schemas.py), frame decoding (frames.py), request
checks (videos.py), A/B arms (arms.py), the runtime of served models and batching (runtime.py), start-up checks
(startup.py), import guards (guards.py) and `bentoml serve` started on it (launch.py)."""
