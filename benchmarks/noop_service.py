"""BentoML services that do no work, for `cpfd bench serving` (served by `bentoml serve`, never imported by
production code):

- ``/noop``: one request, one small JSON body parsed, one JSON answer: what the framework alone costs;
- ``/noop_batched``: the same, calling a no-op batchable API of a model service it depends on (the framework's
  composition pattern, BentoML's own adaptive batching across services). Whatever a real model adds, a
  composed service cannot be faster than this: it bounds BentoML's batching from above.
"""

from __future__ import annotations

from typing import Any

import bentoml
from pydantic import BaseModel

MAX_BATCH = 64


class Video(BaseModel):
    scenario: str
    video_id: int
    title: str | None = None


@bentoml.service(name="noop_model", workers=1, logging={"access": {"enabled": False}})
class NoopModel:
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH, max_latency_ms=10_000)
    def predict(self, ids: list[Any]) -> list[Any]:
        return [0.5 for _ in ids]


@bentoml.service(name="noop_api", workers=1, traffic={"timeout": 30}, logging={"access": {"enabled": False}})
class NoopApi:
    model = bentoml.depends(NoopModel)

    @bentoml.api(route="/noop")
    async def noop(self, video: Video, /) -> dict:
        return {"video_id": video.video_id, "confidence": 0.5}

    @bentoml.api(route="/noop_batched")
    async def noop_batched(self, video: Video, /) -> dict:
        (confidence,) = await self.model.to_async.predict([video.video_id])
        return {"video_id": video.video_id, "confidence": confidence}
