"""Read a video's sampled frames from its reference in the ``frames`` column.

A reference is one of:
- ``path.npy``: one video, uint8 [T, H, W, 3];
- ``path.npy#i``: row ``i`` of a stacked uint8 [N, T, H, W, 3] array (memory-mapped);
- a folder of ``.png`` / ``.jpg`` images, one per frame, in name order.
Relative paths resolve against the videos table's folder.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from cpfd.errors import DataContractError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _split(ref: str) -> tuple[str, int | None]:
    if "#" in ref:
        path, _, row = ref.rpartition("#")
        if not row.isdigit():
            raise ValueError(f"row index {row!r} is not a number")
        return path, int(row)
    return ref, None


def image_files(folder: Path) -> list[Path]:
    """A frame folder's PNG/JPEG files in name order (the video's frame order)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_images(folder: Path) -> np.ndarray:
    from PIL import Image

    files = image_files(folder)
    if not files:
        raise ValueError("folder holds no .png or .jpg frames")
    return np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for f in files])


def load_frames(
    refs: list[str], base_dir: str | Path, num_frames: int | None = None, source: str = "videos table"
) -> np.ndarray:
    """Frames of every reference as uint8 [N, T, H, W, 3]; errors name the file, row and column."""
    base = Path(base_dir)
    by_file: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for i, ref in enumerate(refs):
        try:
            path, row = _split(ref)
        except ValueError as e:
            raise DataContractError(f"{source}: column 'frames', row {i}: bad reference {ref!r}: {e}") from None
        by_file[path].append((i, row))

    loaded: dict[int, np.ndarray] = {}
    for path, items in by_file.items():
        file = Path(path) if Path(path).is_absolute() else base / path
        where = f"{source}: column 'frames' -> {file}"
        try:
            arr = _load_images(file) if file.is_dir() else np.load(file, mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise DataContractError(f"{where}: unreadable frames ({type(e).__name__}: {e})") from None
        for i, row in items:
            frames = arr if row is None else _row(arr, row, where)
            loaded[i] = _checked(np.asarray(frames), f"{where} (row {i})", num_frames)
    out = [loaded[i] for i in range(len(refs))]
    shapes = {o.shape for o in out}
    if len(shapes) > 1:
        raise DataContractError(
            f"{source}: column 'frames' mixes frame shapes {sorted(shapes)[:3]}; resample to one shape"
        )
    return np.stack(out) if out else np.zeros((0, num_frames or 1, 1, 1, 3), np.uint8)


def _row(arr: np.ndarray, row: int, where: str) -> np.ndarray:
    if arr.ndim != 5:
        raise DataContractError(
            f"{where}: '#row' references need a stacked [N, T, H, W, 3] array, found shape {arr.shape}"
        )
    if row >= arr.shape[0]:
        raise DataContractError(f"{where}: row {row} out of range, the file holds {arr.shape[0]} videos")
    return arr[row]


def _checked(frames: np.ndarray, where: str, num_frames: int | None) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DataContractError(f"{where}: frames must be [T, H, W, 3], found shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise DataContractError(f"{where}: frames must be uint8, found {frames.dtype}")
    if num_frames is not None:
        frames = sample_frames(frames, num_frames)
    return frames


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Pick ``num_frames`` evenly spaced frames (repeats when the video is shorter)."""
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return frames[idx]
