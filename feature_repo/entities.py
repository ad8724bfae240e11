"""Entities: the video, keyed by its int64 id."""

from feast import Entity, ValueType

video = Entity(
    name="video",
    join_keys=["video_id"],
    value_type=ValueType.INT64,
    description="An uploaded short video; video_id is unique across scenarios.",
    owner="ml-platform@cpfd.example",
    tags={"team": "ml-platform", "domain": "content-understanding"},
)
