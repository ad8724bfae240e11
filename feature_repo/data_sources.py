"""Data sources: the privileged dense feature table (video_id, event_timestamp, created, dense_*).

CPFD_FEATURE_SOURCE gives its path (relative paths resolve against the store's repo folder);
CPFD_OFFLINE_STORE=spark declares it as a Spark table, to pair with feature_store.spark.yaml.
"""

import os

from feast import FileSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

_PATH = os.environ.get("CPFD_FEATURE_SOURCE", "data/features.parquet")
_COMMON = dict(
    name="video_dense_features_source",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Offline analyzer outputs and engagement statistics per video, one row per computation.",
    owner="ml-platform@cpfd.example",
    tags={"team": "ml-platform", "privileged": "true", "format": "parquet"},
)

if os.environ.get("CPFD_OFFLINE_STORE", "duckdb") == "spark":
    video_dense_source = SparkSource(path=_PATH, file_format="parquet", **_COMMON)
else:
    video_dense_source = FileSource(path=_PATH, **_COMMON)
