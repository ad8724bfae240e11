"""Feature views: one per declared view, offline only (online=False), point-in-time joined with its TTL."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float32, Float64, Int64

from data_sources import SOURCES
from declarations import DECLARATIONS
from entities import video

FEAST_TYPES = {"float32": Float32, "float64": Float64, "int64": Int64}


def _view(name: str) -> FeatureView:
    decl = DECLARATIONS.views[name]
    return FeatureView(
        name=name,
        entities=[video],
        ttl=timedelta(days=decl.ttl_days),
        schema=[Field(name=column, dtype=FEAST_TYPES[decl.dtype]) for column in decl.features],
        source=SOURCES[decl.source],
        online=False,
        description=decl.description,
        owner=decl.owner,
        tags=decl.tags,
    )


VIEWS = {name: _view(name) for name in DECLARATIONS.views}
globals().update(VIEWS)  # module-level names, as `feast apply` collects them
