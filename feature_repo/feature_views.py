"""Privileged dense feature view: offline only (online=False), point-in-time joined with a TTL.

One view over the whole source: Feast joins each view separately, so splitting the 32 columns
by kind (analyzer / engagement / other) costs a join each; teacher versions pick columns with
projections in feature_services.py instead.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float32

from data_sources import video_dense_source
from entities import video

TTL = timedelta(days=7)  # a feature row older than this at the label's time is not used
N_DENSE = 32

video_dense_features = FeatureView(
    name="video_dense_features",
    entities=[video],
    ttl=TTL,
    schema=[Field(name=f"dense_{i:02d}", dtype=Float32) for i in range(N_DENSE)],
    source=video_dense_source,
    online=False,
    description=(
        "Privileged per-video features computed offline: dense_00-11 heavy content analyzers, "
        "dense_12-19 engagement statistics, dense_20-31 other offline signals."
    ),
    owner="ml-platform@cpfd.example",
    tags={"team": "ml-platform", "privileged": "true", "serving": "offline-only"},
)
