"""Schemathesis hooks of tests/integration/test_serving_schema.py: .npy bodies sent as raw bytes, and strategies
for the two formats the service's OpenAPI document names (what JSON Schema cannot spell out):

- ``cpfd-frame``: a base64 PNG (the tests' frames are all 8 x 8, as one video's frames must be of one size);
- ``cpfd-npy-frames``: a .npy of uint8 [frames, height, width, 3] within the test config's limits.
"""

import base64
import io

import numpy as np
import schemathesis
from hypothesis import strategies as st

schemathesis.serializer.alias("application/x-npy", "application/octet-stream")


def _png(color: tuple[int, int, int]) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _npy(shape: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((*shape, 3), np.uint8))
    return buf.getvalue()


FRAMES = [_png((r, g, 30)) for r in (0, 90, 200) for g in (0, 120, 255)]
schemathesis.openapi.format("cpfd-frame", st.sampled_from(FRAMES))
schemathesis.openapi.format(
    "cpfd-npy-frames", st.tuples(st.integers(1, 4), st.integers(1, 16), st.integers(1, 16)).map(_npy)
)
