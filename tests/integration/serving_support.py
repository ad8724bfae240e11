"""Helpers of the serving integration tests: untrained tiny students in a model store, configs, read-only
folders (chmod, or `chattr +i` for root, who ignores modes), encoded frames. Ports, servers and readiness are
in tests/servers.py."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml


def package_students(data, model_cfg, out: Path, home: Path, names: dict[str, str]) -> dict[str, str]:
    """Untrained tiny students (scenario -> model name) saved and packaged into ``home``; returns name -> tag."""
    import json

    from cpfd.models import save_model
    from cpfd.training.recipes import new_model

    args = []
    for scenario, name in names.items():
        folder = out / name
        save_model(
            new_model(data, model_cfg, "student", 0), folder, data.tokenizer, {"role": "student", "scenario": scenario}
        )
        args += [str(folder), name]
    code = (
        "import sys, json; from cpfd.components.packaging import package_model; "
        "print(json.dumps([package_model(d, n) for d, n in zip(sys.argv[1::2], sys.argv[2::2])]))"
    )
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    return dict(zip(names.values(), json.loads(done.stdout.splitlines()[-1]), strict=True))


def write_config(path: Path, scenarios: dict[str, str], **settings) -> Path:
    """A serving config: one arm ("control") per scenario, the given model names; ``settings`` on top."""
    cfg = {
        "experiment": "ops",
        "prediction_log": "predictions.db",
        "scenarios": {s: {"arms": {"control": {"model": m, "traffic": 1.0}}} for s, m in scenarios.items()},
        **settings,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make files and folders unwritable for this process, then restore them; skip where that is impossible."""
    as_root = os.geteuid() == 0
    modes = {p: p.stat().st_mode for p in paths}
    try:
        for p in paths:
            if as_root:
                if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                    pytest.skip("running as root and `chattr +i` is unavailable: cannot make a folder read-only")
            else:
                p.chmod(0o555 if p.is_dir() else 0o444)
        yield
    finally:
        for p in paths:
            if as_root:
                subprocess.run(["chattr", "-i", str(p)], capture_output=True)
            else:
                p.chmod(modes[p])


def png_b64(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def npy_bytes(frames: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, frames)
    return buf.getvalue()


def npy_header_bytes(version: tuple[int, int], descr: str, fortran: object, shape: object) -> bytes:
    """The start of a .npy file with a header written by hand (any values, valid or not), as a client could."""
    header = "{" + f"'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, " + "}"
    major = version[0]
    length_bytes = 2 if major == 1 else 4
    pad = (-(6 + 2 + length_bytes + len(header) + 1)) % 64
    text = (header + " " * pad + "\n").encode("latin-1")
    return b"\x93NUMPY" + bytes(version) + len(text).to_bytes(length_bytes, "little") + text


def npy_headers():
    """A hypothesis strategy of crafted .npy bodies: version, dtype, order, shapes with zero, negative, bool and
    huge dimensions, and a data part that fits the shape or not."""
    from hypothesis import strategies as st

    dim = st.one_of(st.integers(-3, 70), st.sampled_from([True, False, 2**31, 2**63, -(2**63), 1 << 80]), st.just(3))
    shape = st.one_of(
        st.lists(dim, min_size=0, max_size=6).map(tuple),
        st.tuples(st.integers(-1, 9), st.integers(-1, 70), st.integers(-1, 70), st.sampled_from([3, 3, 0, 1, True])),
    )
    descr = st.sampled_from(["|u1", "<u1", ">u1", "|b1", "<i2", "<f4", "|O", "|S3", "<U2", "|V3", "<u8", "u1"])
    version = st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1), (255, 255)])
    fortran = st.sampled_from([False, False, True, 0, 1, None])

    @st.composite
    def body(draw):
        s = draw(shape)
        head = npy_header_bytes(draw(version), draw(descr), draw(fortran), s)
        n = 1
        for d in s:
            n *= int(d)
        if draw(st.booleans()) and 0 <= n <= 200_000:  # the data the shape asks for, when small enough to send
            return head + bytes(n)
        return head + draw(st.binary(max_size=64))

    return body()
