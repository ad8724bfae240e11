"""The serving runtime: loaded students, batched model calls, the prediction log.

Usable in-process (tests, benchmarks) and from the BentoML service. Model calls run on one
worker thread, through a TorchScript trace of each student where it matches the eager model;
concurrent requests for the same model are merged into one forward pass by a MicroBatcher
(adaptive: it takes whatever queued up while the previous pass ran, up to max_batch_size,
optionally waiting max_wait_ms for more). Log rows are group-committed the same way, on the
event loop (a commit costs about a millisecond, less than two thread hops on a busy machine; a
lock held by another writer of the same SQLite file holds the loop up to its busy timeout), and a
request is answered only after its rows are committed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cpfd.conventions import CONFIG_FILE, WEIGHTS_FILE, model_metadata
from cpfd.errors import ConfigError, CpfdError
from cpfd.models import ModelSpec, VideoClassifier, load_model
from cpfd.predlog import open_log, utcnow_iso
from cpfd.preprocess import load_tokenizer, prepare_frames, tokenize

from .config import ServingConfig
from .startup import short_reason
from .videos import ValidVideo

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def preprocess_batch(
    frames: list[np.ndarray], titles: list[str], spec: ModelSpec, tokenizer: PreTrainedTokenizerBase
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model inputs through the training code's path (cpfd.preprocess); no frames for a title-only model."""
    if spec.uses_frames:
        x = torch.stack([prepare_frames(f, spec.num_frames, spec.image_size) for f in frames])
    else:
        x = torch.zeros((len(frames), 0, 0, 0, 3), dtype=torch.uint8)
    ids, mask = tokenize(tokenizer, titles, spec.max_title_tokens)
    return x, ids, mask


Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ServedModel:
    tag: str
    scenario: str
    spec: ModelSpec
    model: VideoClassifier
    tokenizer: PreTrainedTokenizerBase
    forward: Forward | None = None  # a TorchScript trace of ``model`` (same outputs, far less Python per call)

    def predict(self, items: list[tuple[np.ndarray, str]]) -> list[np.ndarray]:
        x, ids, mask = preprocess_batch([f for f, _ in items], [t for _, t in items], self.spec, self.tokenizer)
        with torch.inference_mode():
            probs = (self.forward or self.model)(x, ids, mask).float().softmax(-1).numpy()
        return list(probs)


def traced_forward(model: VideoClassifier, spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> Forward | None:
    """``model`` traced with TorchScript on a batch of 2, kept only if it matches the eager model exactly on other
    batch sizes (shapes other than the batch are fixed by preprocessing); None otherwise."""
    import warnings

    rng = np.random.default_rng(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = [
            rng.integers(0, 256, (spec.num_frames, spec.image_size, spec.image_size, 3), np.uint8) for _ in range(n)
        ]
        return preprocess_batch(frames, [" ".join(["a"] * (3 * i + 1)) for i in range(n)], spec, tokenizer)

    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, batch(2), check_trace=False, strict=False)
            for n in (1, 3, 17):
                inputs = batch(n)
                if not torch.allclose(traced(*inputs), model(*inputs), atol=1e-6, rtol=0):
                    return None
    except Exception:
        return None
    return traced


def load_served_model(path: str | Path, tag: str, scenario: str) -> ServedModel:
    """A student folder; refuses a teacher and a model trained for another scenario. A missing or corrupt
    file is a CpfdError naming the model tag and the file."""
    path = Path(path)
    meta = _read_metadata(path, tag)
    try:
        spec = ModelSpec(**meta["spec"])
    except (KeyError, TypeError) as e:
        raise CpfdError(f"model {tag}: {path / CONFIG_FILE} has no valid spec ({short_reason(e)})") from None
    if spec.dense_features or meta.get("role", spec.role) != "student":
        raise CpfdError(
            f"model {tag} is a teacher (dense features {spec.dense_features[:3]}...): only students are served"
        )
    if meta.get("scenario") not in (None, scenario):
        raise ConfigError(f"model {tag} was trained for scenario {meta['scenario']!r}, configured for {scenario!r}")
    try:
        model = load_model(path)
    except Exception as e:
        raise CpfdError(f"model {tag}: {path / WEIGHTS_FILE} cannot be loaded ({short_reason(e)})") from None
    if model.uses_dense:
        raise CpfdError(f"model {tag} takes dense features: only students are served")
    try:
        tokenizer = load_tokenizer(path / "tokenizer")
    except Exception as e:
        raise CpfdError(f"model {tag}: {path / 'tokenizer'} cannot be loaded ({short_reason(e)})") from None
    served = ServedModel(tag, scenario, spec, model, tokenizer, traced_forward(model, spec, tokenizer))
    served.predict([(np.zeros((spec.num_frames, spec.image_size, spec.image_size, 3), np.uint8), "")])  # warm-up
    return served


def _read_metadata(path: Path, tag: str) -> dict:
    try:
        return model_metadata(path)
    except FileNotFoundError:
        raise CpfdError(f"model {tag}: {path / CONFIG_FILE} is missing") from None
    except (OSError, ValueError) as e:
        raise CpfdError(f"model {tag}: {path / CONFIG_FILE} is not readable JSON ({short_reason(e)})") from None


class LogUnavailable(CpfdError):
    """The prediction log refused a write: no answer can be given (every answer is logged first)."""


class MicroBatcher:
    """Merge concurrent submissions into one call of ``fn(items) -> results`` on ``executor`` (None: on the event
    loop itself, for calls too short to be worth a thread hop)."""

    def __init__(
        self,
        fn: Callable[[list], list],
        executor,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        enabled: bool = True,
    ):
        self.fn, self.executor = fn, executor
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000.0
        self.enabled = enabled
        self.calls = self.items = 0  # batched calls made, items they carried
        self._pending: deque = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, items: list) -> list:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await self._call(items)
        if self._task is None or self._task.done() or self._wake is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(self._wake))
        fut = loop.create_future()
        self._pending.append((items, fut))
        self._wake.set()
        return await fut

    async def _call(self, items: list) -> list:
        if self.executor is None:
            return self.fn(items)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.fn, items)

    def _queued(self) -> int:
        return sum(len(items) for items, _ in self._pending)

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            while self._pending:
                if self.max_wait and self._queued() < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)
                group: list[tuple[list, asyncio.Future]] = []
                size = 0
                while self._pending and (not group or size + len(self._pending[0][0]) <= self.max_batch_size):
                    items, fut = self._pending.popleft()
                    group.append((items, fut))
                    size += len(items)
                self.calls, self.items = self.calls + 1, self.items + size
                try:
                    results = await self._call([x for items, _ in group for x in items])
                except Exception as e:  # every waiting request gets the error, the loop lives on
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                start = 0
                for items, fut in group:
                    if not fut.done():
                        fut.set_result(results[start : start + len(items)])
                    start += len(items)


class Classifier:
    """Every configured (scenario, arm) student, their batchers, and the prediction log."""

    def __init__(self, cfg: ServingConfig, model_dirs: dict[str, tuple[str, Path]], log_target: str | None = None):
        self.cfg = cfg
        self.log = open_log(log_target or cfg.prediction_log, cfg.log_synchronous)
        torch.set_num_threads(cfg.torch_threads)
        by_tag: dict[str, ServedModel] = {}
        self.models: dict[tuple[str, str], ServedModel] = {}
        for scenario, scen in cfg.scenarios.items():
            for arm, a in scen.arms.items():
                if a.model not in model_dirs:
                    raise ConfigError(f"scenarios.{scenario}.arms.{arm}: no folder for model {a.model!r}")
                full_tag, path = model_dirs[a.model]
                if full_tag not in by_tag:
                    by_tag[full_tag] = load_served_model(path, full_tag, scenario)
                elif by_tag[full_tag].scenario != scenario:
                    raise ConfigError(f"model {full_tag} is configured for two scenarios")
                self.models[(scenario, arm)] = by_tag[full_tag]
        self.model_executor = ThreadPoolExecutor(1, thread_name_prefix="cpfd-model")
        self.modalities = self._modalities()
        b = cfg.batching
        self.batchers = {
            tag: MicroBatcher(m.predict, self.model_executor, b.max_batch_size, b.max_wait_ms, b.enabled)
            for tag, m in by_tag.items()
        }
        # group commit on the event loop: a commit (~1 ms) costs less than two thread hops on a busy machine
        self.log_batcher = MicroBatcher(self._write_log, None, max_batch_size=1024)
        self._readiness: tuple[float, str | None] = (0.0, None)

    def _modalities(self) -> dict[str, list[str]]:
        """Scenario -> the inputs its models read; every arm of a scenario must read the same."""
        out: dict[str, list[str]] = {}
        for (scenario, arm), m in self.models.items():
            if out.setdefault(scenario, m.spec.modalities) != m.spec.modalities:
                raise ConfigError(
                    f"scenarios.{scenario}.arms.{arm}: model {m.tag} reads {m.spec.modalities}, "
                    f"another arm reads {out[scenario]}; the arms of a scenario must read the same inputs"
                )
        return out

    def _write_log(self, rows: list[dict]) -> list[None]:
        self.log.append(rows)
        return [None] * len(rows)

    def not_ready(self, max_age_s: float = 1.0) -> str | None:
        """Why this worker cannot answer (a model missing, the log not writable), or None; cached ``max_age_s``."""
        checked_at, reason = self._readiness
        if time.monotonic() - checked_at < max_age_s:
            return reason
        missing = [
            f"{s}/{arm}" for s, scen in self.cfg.scenarios.items() for arm in scen.arms if (s, arm) not in self.models
        ]
        reason = f"models missing for {missing}" if missing else None
        if reason is None:
            try:
                self.log.check_writable()
            except Exception as e:
                reason = f"prediction log not writable ({short_reason(e)})"
        self._readiness = (time.monotonic(), reason)
        return reason

    def describe(self) -> dict:
        return {
            "scenarios": {
                s: {
                    "experiment": self.cfg.experiment_of(s),
                    "arms": {
                        arm: {"model_tag": self.models[(s, arm)].tag, "traffic": a.traffic}
                        for arm, a in scen.arms.items()
                    },
                    "label_names": self.models[(s, next(iter(scen.arms)))].spec.label_names,
                    "modalities": self.modalities[s],
                }
                for s, scen in self.cfg.scenarios.items()
            },
            "dense_features": sorted({f for m in self.models.values() for f in m.spec.dense_features}),
            "batching": {
                **self.cfg.batching.model_dump(),
                "mean_batch_size": {tag: b.items / b.calls if b.calls else None for tag, b in self.batchers.items()},
            },
        }

    async def classify(
        self, videos: list[ValidVideo], t0: float | None = None, http_request_id: str | None = None
    ) -> list[dict]:
        """Predict, log one row per video (committed before returning), and answer; LogUnavailable when the
        rows cannot be committed."""
        t0 = time.perf_counter() if t0 is None else t0
        groups: dict[str, list[int]] = {}
        for i, v in enumerate(videos):
            groups.setdefault(self.models[(v.scenario, v.arm)].tag, []).append(i)
        by_index: dict[int, np.ndarray] = {}
        outs = await asyncio.gather(
            *(
                self.batchers[tag].submit([(videos[i].frames, videos[i].title) for i in idx])
                for tag, idx in groups.items()
            )
        )
        for idx, out in zip(groups.values(), outs, strict=True):
            for i, p in zip(idx, out, strict=True):
                by_index[i] = p
        probs = [by_index[i] for i in range(len(videos))]
        latency = (time.perf_counter() - t0) * 1000.0
        ts = utcnow_iso()
        rows, answers = [], []
        for v, p in zip(videos, probs, strict=True):
            m = self.models[(v.scenario, v.arm)]
            k = int(np.argmax(p))
            probabilities = [float(x) for x in p]
            row = {
                "request_id": uuid.uuid4().hex,
                "ts": ts,
                "experiment": v.experiment,
                "scenario": v.scenario,
                "arm": v.arm,
                "model_tag": m.tag,
                "video_id": v.video_id,
                "label": k,
                "probabilities": probabilities,
                "confidence": float(p[k]),
                "latency_ms": latency,
                "http_request_id": http_request_id,
            }
            rows.append(row)
            answers.append(
                {
                    **{
                        c: row[c]
                        for c in (
                            "request_id",
                            "scenario",
                            "video_id",
                            "experiment",
                            "arm",
                            "model_tag",
                            "confidence",
                            "latency_ms",
                        )
                    },
                    "label": m.spec.label_names[k],
                    "label_index": k,
                    "probabilities": dict(zip(m.spec.label_names, probabilities, strict=True)),
                }
            )
        try:
            await self.log_batcher.submit(rows)
        except Exception as e:
            raise LogUnavailable(f"prediction log write failed ({short_reason(e)})") from e
        return answers

    def close(self) -> None:
        self.model_executor.shutdown(wait=True)
        self.log.engine.dispose()
