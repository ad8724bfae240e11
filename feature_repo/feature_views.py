"""Privileged dense feature view: offline only (online=False), point-in-time joined with a TTL.

One view over the whole source: Feast joins each view separately, so splitting the 32 columns
by kind (analyzer / engagement / other) costs a join each; teacher versions pick columns with
projections in feature_services.py instead.
"""

from feast import FeatureView, Field
from feast.types import Float32

from cpfd.conventions import FEATURE_TTL  # a feature row older than this at the label's time is not used
from cpfd.data.synthetic import dense_feature_names  # the source table's dense_* columns
from data_sources import video_dense_source
from entities import video

video_dense_features = FeatureView(
    name="video_dense_features",
    entities=[video],
    ttl=FEATURE_TTL,
    schema=[Field(name=name, dtype=Float32) for name in dense_feature_names()],
    source=video_dense_source,
    online=False,
    description=(
        "Privileged per-video features computed offline: dense_00-11 heavy content analyzers, "
        "dense_12-19 engagement statistics, dense_20-31 other offline signals."
    ),
    owner="ml-platform@cpfd.example",
    tags={"team": "ml-platform", "privileged": "true", "serving": "offline-only"},
)
