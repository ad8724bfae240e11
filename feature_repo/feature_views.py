"""Privileged dense feature views: offline only (online=False), point-in-time joined with a TTL.

The synthetic source's dense_00..dense_31 are grouped by what computes them.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float32

from data_sources import video_dense_source
from entities import video

TTL = timedelta(days=7)  # a feature row older than this at the label's time is not used
_OWNER = "ml-platform@cpfd.example"


def _fields(first: int, last: int) -> list[Field]:
    return [Field(name=f"dense_{i:02d}", dtype=Float32) for i in range(first, last + 1)]


video_analyzer_features = FeatureView(
    name="video_analyzer_features",
    entities=[video],
    ttl=TTL,
    schema=_fields(0, 11),
    source=video_dense_source,
    online=False,
    description="Outputs of heavy offline content analyzers run on the whole video (privileged).",
    owner=_OWNER,
    tags={"team": "ml-platform", "privileged": "true", "kind": "analyzer"},
)

video_engagement_features = FeatureView(
    name="video_engagement_features",
    entities=[video],
    ttl=TTL,
    schema=_fields(12, 19),
    source=video_dense_source,
    online=False,
    description="Historical engagement statistics, known only after the video has been served (privileged).",
    owner=_OWNER,
    tags={"team": "ml-platform", "privileged": "true", "kind": "engagement"},
)

video_auxiliary_features = FeatureView(
    name="video_auxiliary_features",
    entities=[video],
    ttl=TTL,
    schema=_fields(20, 31),
    source=video_dense_source,
    online=False,
    description="Other offline signals (uploader history, moderation queue stats) (privileged).",
    owner=_OWNER,
    tags={"team": "ml-platform", "privileged": "true", "kind": "auxiliary"},
)
