"""The serving config: which student serves which scenario and A/B arm, the limits every request is held to,
batching, authentication and the prediction log (the YAML format is documented in serving/config.yaml)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cpfd.config import StrictModel, read_yaml, validated
from cpfd.errors import ConfigError

CONFIG_ENV = "CPFD_SERVING_CONFIG"
HARD_MAX_ITEMS = 1024  # list lengths any request model refuses, whatever the config (bounds validation work)
MIN_TOKEN_CHARS = 16


class ArmConfig(StrictModel):
    model: str = Field(min_length=1, description="BentoML model tag, name or name:version")
    traffic: float = Field(ge=0, le=1, description="share of video_ids hashed to this arm")


class ScenarioServing(StrictModel):
    experiment: str | None = Field(None, description="defaults to the top-level experiment")
    arms: dict[str, ArmConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _traffic_sums_to_one(self):
        total = sum(a.traffic for a in self.arms.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm traffic shares sum to {total:g}, not 1")
        return self


class Limits(StrictModel):
    max_frames_per_video: int = Field(32, ge=1, le=HARD_MAX_ITEMS)
    max_frame_bytes: int = Field(1 << 20, ge=64, description="encoded bytes of one JPEG/PNG frame")
    max_frame_side: int = Field(1024, ge=8, description="pixels of a frame's longer side")
    max_frame_pixels: int = Field(1 << 20, ge=64, description="width x height of one frame, read from its header")
    max_request_pixels: int = Field(
        1 << 23, ge=64, description="width x height summed over every frame of a request, checked before decoding"
    )
    max_request_bytes: int = Field(8 << 20, ge=1024, description="HTTP body bytes of one request")
    max_title_chars: int = Field(512, ge=1)
    max_batch_videos: int = Field(64, ge=1, le=HARD_MAX_ITEMS, description="videos in one batch request")
    max_concurrent_requests: int = Field(
        32, ge=1, description="classify requests in flight per worker; more are answered 503 with Retry-After"
    )
    body_timeout_s: float = Field(10.0, gt=0, description="time to receive a request body; slower bodies get 408")
    max_header_bytes: int = Field(
        16384, ge=1024, description="bytes of all request headers (431 beyond), and of the URL (414 beyond)"
    )
    max_header_count: int = Field(100, ge=8, description="request headers; more get 431")

    @model_validator(mode="after")
    def _request_holds_a_frame(self):
        if self.max_request_pixels < self.max_frame_pixels:
            raise ValueError("max_request_pixels must be at least max_frame_pixels")
        return self


class Batching(StrictModel):
    enabled: bool = True
    max_batch_size: int = Field(64, ge=1, description="videos in one model call")
    max_wait_ms: float = Field(2.0, ge=0, description="wait for more videos after the first one")


class AuthConfig(StrictModel):
    """A bearer token required on /classify* and /info, on /metrics when ``metrics`` (never on /livez, /readyz)."""

    token_env: str | None = Field(None, min_length=1, description="environment variable holding the token")
    token_file: str | None = Field(None, min_length=1, description="file holding the token (a mounted secret)")
    metrics: bool = Field(False, description="require the token on /metrics too (else keep that port internal)")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("set exactly one of token_env and token_file")
        return self

    def token(self) -> str:
        """The configured token; a missing or empty one is a ConfigError naming its source."""
        if self.token_env is not None:
            value, source = os.environ.get(self.token_env, ""), f"environment variable {self.token_env}"
        else:
            source = f"token file {self.token_file}"
            try:
                value = Path(str(self.token_file)).read_text()
            except OSError as e:
                raise ConfigError(f"auth: {source} is not readable ({e.strerror})") from None
        value = value.strip()
        if len(value) < MIN_TOKEN_CHARS:
            raise ConfigError(f"auth: {source} is unset or shorter than {MIN_TOKEN_CHARS} characters")
        return value


class ServingConfig(StrictModel):
    experiment: str = Field("default", min_length=1)
    scenarios: dict[str, ScenarioServing] = Field(min_length=1)
    limits: Limits = Limits()
    batching: Batching = Batching()
    auth: AuthConfig | None = Field(None, description="bearer-token authentication; none when absent")
    allow_frame_paths: bool = Field(False, description="accept local frame file paths (trusted deployments only)")
    prediction_log: str = Field("predictions.db", description="SQLite path (relative to this file) or SQLAlchemy URL")
    log_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite synchronous mode of the log: FULL also survives a power loss, at a cost"
    )
    workers: int = Field(1, ge=1, description="server processes; each loads every model and batches on its own")
    access_log: bool = Field(False, description="BentoML per-request access log (costly at high request rates)")
    torch_threads: int = Field(
        1, ge=1, description="intra-op threads of a model call; >1 only on idle, dedicated cores"
    )

    def experiment_of(self, scenario: str) -> str:
        return self.scenarios[scenario].experiment or self.experiment

    def model_tags(self) -> list[str]:
        return sorted({a.model for s in self.scenarios.values() for a in s.arms.values()})

    def arm_names(self) -> list[str]:
        return sorted({arm for s in self.scenarios.values() for arm in s.arms})


def load_serving_config(path: str | Path) -> ServingConfig:
    """Read and validate the YAML; a relative SQLite log path resolves against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"serving config {path} does not exist")
    cfg = validated(ServingConfig, read_yaml("serving config", path), str(path), every=True)
    if "://" not in cfg.prediction_log and not Path(cfg.prediction_log).is_absolute():
        cfg.prediction_log = str((path.resolve().parent / cfg.prediction_log).resolve())
    if cfg.auth is not None and cfg.auth.token_file is not None and not Path(cfg.auth.token_file).is_absolute():
        cfg.auth.token_file = str((path.resolve().parent / cfg.auth.token_file).resolve())
    return cfg
