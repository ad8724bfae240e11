"""Schemathesis hooks of tests/integration/test_serving_schema.py: send generated .npy bodies as raw bytes."""

import schemathesis

schemathesis.serializer.alias("application/x-npy", "application/octet-stream")
