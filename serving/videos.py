"""One request's videos checked against the serving config: scenario, title, arm, frames (their headers, the
pixel limits of the whole request), and only then decoded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpfd.config import ALL_MODALITIES

from .arms import assign_arm
from .config import ScenarioServing, ServingConfig
from .frames import EncodedFrame, b64_frame, decode_frame, read_frame_file, read_header, read_npy_frames
from .schemas import FramesQuery, ServingInputError, VideoRequest, too_large


@dataclass
class ValidVideo:
    scenario: str
    video_id: int
    title: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    arm: str
    experiment: str


@dataclass
class CheckedVideo:
    """A request that passed every check but decoding: its frames' headers are read, pixels counted."""

    video: ValidVideo
    encoded: list[EncodedFrame]

    @property
    def pixels(self) -> int:
        return sum(f.pixels for f in self.encoded)

    def decode(self) -> ValidVideo:
        if self.encoded:
            images = [decode_frame(f) for f in self.encoded]
            self.video.frames = np.stack(images)
        return self.video


def check_video(
    req: VideoRequest, cfg: ServingConfig, where: str = "video", modalities: dict[str, list[str]] | None = None
) -> CheckedVideo:
    """Every check of one video short of decoding its frames; the arm is assigned here."""
    lim = cfg.limits
    video, reads = _check_fields(req, cfg, where, modalities)
    if req.frames and req.frame_paths:
        raise ServingInputError(f"{where}: give frames or frame_paths, not both")
    if req.frame_paths and not cfg.allow_frame_paths:
        raise ServingInputError(
            f"{where}.frame_paths: local frame paths are disabled on this deployment (allow_frame_paths)",
            403,
            "forbidden",
        )
    sources = req.frames or req.frame_paths
    field = "frames" if req.frames else "frame_paths"
    if len(sources) > lim.max_frames_per_video:  # a bound the request schema states: 400, as any schema violation
        raise ServingInputError(
            f"{where}.{field}: {len(sources)} frames exceeds limit max_frames_per_video={lim.max_frames_per_video}"
        )
    if "frames" not in reads:
        return CheckedVideo(video, [])
    if not sources:
        raise ServingInputError(f"{where}.frames: empty, a video needs at least one frame")
    encoded = []
    for i, src in enumerate(sources):
        w = f"{where}.{field}[{i}]"
        encoded.append(read_header(b64_frame(src, w, lim) if req.frames else read_frame_file(src, w, lim), lim, w))
    sizes = sorted({(f.height, f.width) for f in encoded})
    if len(sizes) > 1:
        raise ServingInputError(f"{where}.{field}: frames have different sizes {sizes[:4]}; send one size")
    return CheckedVideo(video, encoded)


def _check_fields(
    req: VideoRequest | FramesQuery, cfg: ServingConfig, where: str, modalities: dict[str, list[str]] | None
) -> tuple[ValidVideo, tuple[str, ...] | list[str]]:
    """Scenario, title and arm of a request (frames not yet); returns the video and what its models read."""
    scen = cfg.scenarios.get(req.scenario)
    if scen is None:
        raise ServingInputError(f"{where}.scenario: not a served scenario; served: {sorted(cfg.scenarios)}")
    reads = (modalities or {}).get(req.scenario, ALL_MODALITIES)
    if req.title is None and "title" in reads:
        raise ServingInputError(f"{where}.title: required for scenario {req.scenario!r} (its models read titles)")
    title = req.title or ""
    if len(title) > cfg.limits.max_title_chars:
        raise ServingInputError(  # stated in the request schema (maxLength): 400
            f"{where}.title: {len(title)} characters exceeds limit max_title_chars={cfg.limits.max_title_chars}"
        )
    experiment = cfg.experiment_of(req.scenario)
    arm = _arm(req, scen, experiment, where)
    return ValidVideo(req.scenario, req.video_id, title, np.zeros((0, 0, 0, 3), np.uint8), arm, experiment), reads


def validate_frames(
    query: FramesQuery, body: bytes, cfg: ServingConfig, modalities: dict[str, list[str]] | None = None
) -> ValidVideo:
    """A /classify_frames request: the query's fields and the body's .npy frames (ignored for title-only models)."""
    video, reads = _check_fields(query, cfg, "query", modalities)
    if "frames" in reads:
        video.frames = read_npy_frames(body, cfg.limits)
    return video


def _within_request_pixels(checked: list[CheckedVideo], cfg: ServingConfig, where: str) -> None:
    total = sum(c.pixels for c in checked)
    if total > cfg.limits.max_request_pixels:
        raise too_large(
            f"{where}: {total} pixels in all frames exceeds limit max_request_pixels={cfg.limits.max_request_pixels}"
        )


def validate_video(
    req: VideoRequest, cfg: ServingConfig, where: str = "video", modalities: dict[str, list[str]] | None = None
) -> ValidVideo:
    """Check one request against the config and limits; decode its frames; assign its arm.

    ``modalities`` (scenario -> the inputs its models read; default both) decides whether a title and frames
    are required; frames sent to a title-only scenario are ignored, not decoded.
    """
    checked = check_video(req, cfg, where, modalities)
    _within_request_pixels([checked], cfg, f"{where}.frames")
    return checked.decode()


def _arm(req: VideoRequest | FramesQuery, scen: ScenarioServing, experiment: str, where: str) -> str:
    """The caller's arm (checked) or a stable hash of (experiment, video_id)."""
    if req.arm is None:
        return assign_arm(experiment, req.video_id, {k: a.traffic for k, a in scen.arms.items()})
    if req.arm not in scen.arms:
        raise ServingInputError(f"{where}.arm: not an arm of scenario {req.scenario!r}; arms: {list(scen.arms)}")
    return req.arm


def validate_batch(
    videos: list[VideoRequest], cfg: ServingConfig, modalities: dict[str, list[str]] | None = None
) -> list[ValidVideo]:
    """Every video checked, the request's pixels counted from the headers, and only then decoded."""
    if not videos:
        raise ServingInputError("videos: empty, send at least one video")
    if len(videos) > cfg.limits.max_batch_videos:
        raise ServingInputError(  # stated in the request schema (maxItems): 400
            f"videos: {len(videos)} videos exceeds limit max_batch_videos={cfg.limits.max_batch_videos}"
        )
    checked = [check_video(v, cfg, f"videos[{i}]", modalities) for i, v in enumerate(videos)]
    _within_request_pixels(checked, cfg, "videos")
    return [c.decode() for c in checked]
