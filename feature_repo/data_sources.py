"""Data sources: one per declared source, a Parquet table of (video_id, event_timestamp, created, features...).

With ``feature_store.offline: spark`` they are declared as Spark tables (the Spark offline store reads only those).
"""

from feast import FileSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

from declarations import DECLARATIONS, SOURCE_PATHS


def _source(name: str):
    decl = DECLARATIONS.sources[name]
    common = dict(
        name=name,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=decl.description,
        owner=decl.owner,
        tags=decl.tags,
    )
    if DECLARATIONS.offline == "spark":
        return SparkSource(path=str(SOURCE_PATHS[name]), file_format="parquet", **common)
    return FileSource(path=str(SOURCE_PATHS[name]), **common)


SOURCES = {name: _source(name) for name in DECLARATIONS.sources}
globals().update(SOURCES)  # module-level names, as `feast apply` collects them
