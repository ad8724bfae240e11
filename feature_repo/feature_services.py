"""Feature services: one per teacher version. The student (served online) has none by design."""

from feast import FeatureService

from feature_views import video_dense_features

teacher_dense_v1 = FeatureService(
    name="teacher_dense_v1",
    features=[video_dense_features],
    description="All privileged dense features of the DF-X-VLM teacher, version 1.",
    owner="ml-platform@cpfd.example",
    tags={"team": "ml-platform", "model": "teacher", "version": "1"},
)
