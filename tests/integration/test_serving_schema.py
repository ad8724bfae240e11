"""Schemathesis against the live service: every check, its OpenAPI document as the contract (bounded in time).

The hooks (raw bytes for .npy bodies, strategies for the document's two named formats) are beside this file;
`schemathesis.toml` adds nothing to the defaults: every phase, every check, no added status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serving_support import package_students, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
TOKEN = "schema-test-token-0123456789"
MAX_TIME_S = 90


def test_schemathesis_finds_no_server_error_and_no_spec_violation(clickbait_data, tiny_project, tmp_path):
    from cpfd.serving.launch import ServerProcess

    home = tmp_path / "bentoml"
    package_students(
        clickbait_data, tiny_project.model, tmp_path / "m", home, {"clickbait": "cb-a", "originality": "or-a"}
    )
    config = write_config(
        tmp_path / "serving.yaml",
        {"clickbait": "cb-a", "originality": "or-a"},
        auth={"token_env": "CPFD_TEST_TOKEN"},
        limits={"max_request_bytes": 262144, "max_frames_per_video": 8, "max_batch_videos": 8},
    )
    env = {"BENTOML_HOME": str(home), "CPFD_TEST_TOKEN": TOKEN}
    with ServerProcess(config, log_path=tmp_path / "server.log", env=env, timeout=120) as server:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{server.url}/docs.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-time",
                str(MAX_TIME_S),
                # one worker: on two, the coverage phase crashed in one of two runs here, in hypothesis describing
                # a filter lambda (ast.parse from two threads: "SystemError: AST constructor recursion depth
                # mismatch", CPython 3.11's parser state shared across threads), every case having passed
                "--workers",
                "1",
                "--seed",
                "12",
                "--request-timeout",
                "30",
                "--header",
                f"Authorization: Bearer {TOKEN}",
            ],
            capture_output=True,
            text=True,
            timeout=MAX_TIME_S + 120,
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
                "PYTHONPATH": str(HERE.parents[1]),
            },
        )
    report = run.stdout[-6000:]
    assert run.returncode == 0, report
    assert "Selected: 9/9" in report and " passed" in report and "failed" not in report, report
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and "refused 5" not in log.replace("refused 503", "")
    assert "reason=unauthorized" in log  # the ignored_auth check sent requests without the token
