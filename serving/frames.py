"""Frames: JPEG/PNG headers read (format, size, the pixel limits) before anything is decoded, the decoding
itself, and ``.npy`` bodies of already-decoded frames checked from their header before any copy."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Limits
from .schemas import ServingInputError, too_large

_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


@dataclass
class EncodedFrame:
    """A JPEG/PNG frame whose header was read (size known), not decoded yet."""

    data: bytes
    fmt: str
    width: int
    height: int
    where: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes, limits: Limits, where: str) -> EncodedFrame:
    """Format and size from the image header only (PIL's open does not decode); size limits checked here."""
    from PIL import Image

    if len(data) > limits.max_frame_bytes:
        raise too_large(f"{where}: {len(data)} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}")
    fmt = next((f for magic, f in _MAGIC.items() if data.startswith(magic)), None)
    if fmt is None:
        raise ServingInputError(f"{where}: not a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise too_large(f"{where}: exceeds limit max_frame_pixels={limits.max_frame_pixels}") from None
    except Exception:
        raise ServingInputError(f"{where}: undecodable {fmt} image header") from None
    _check_frame_size(width, height, limits, where)
    return EncodedFrame(data, fmt, width, height, where)


def _check_frame_size(width: int, height: int, limits: Limits, where: str) -> None:
    if max(width, height) > limits.max_frame_side:
        raise too_large(f"{where}: {width}x{height} pixels exceeds limit max_frame_side={limits.max_frame_side}")
    if width * height > limits.max_frame_pixels:
        raise too_large(f"{where}: {width}x{height} pixels exceeds limit max_frame_pixels={limits.max_frame_pixels}")


def decode_frame(frame: EncodedFrame) -> np.ndarray:
    """A frame whose header passed the limits -> uint8 [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(frame.data), formats=[frame.fmt]) as im:
            if im.size != (frame.width, frame.height):
                raise ValueError("size changed")
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except Exception:
        raise ServingInputError(f"{frame.where}: undecodable {frame.fmt} image") from None


def decode_image(data: bytes, limits: Limits, where: str) -> np.ndarray:
    """JPEG or PNG bytes -> uint8 [H, W, 3]; refuses other formats, oversized and corrupt images."""
    return decode_frame(read_header(data, limits, where))


NPY_FORMATS = ((1, 0), (2, 0))  # the .npy versions accepted (3.0 only adds utf-8 field names, unused here)


def _npy_header(body: bytes, where: str) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran order, dtype, data offset) of a .npy body; a malformed header is a 400."""
    import numpy.lib.format as npy

    f = io.BytesIO(body)
    try:
        version = npy.read_magic(f)
    except Exception:
        raise ServingInputError(f"{where}: not a .npy array (NumPy format 1.0 or 2.0)") from None
    if version not in NPY_FORMATS:
        raise ServingInputError(f"{where}: .npy format version {version[0]}.{version[1]}; accepted: 1.0, 2.0")
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    try:
        shape, fortran, dtype = read(f, max_header_size=1024)
    except Exception:
        raise ServingInputError(f"{where}: not a valid .npy header (NumPy format 1.0 or 2.0)") from None
    return shape, fortran, dtype, f.tell()


def read_npy_frames(body: bytes, limits: Limits, where: str = "body") -> np.ndarray:
    """A ``.npy`` of uint8 [T, H, W, 3] -> the array; header (version, dtype, shape, sizes) checked before any
    copy. Every header either passes or is a 4xx naming ``where`` (a zero, negative or bool dimension too)."""
    shape, fortran, dtype, offset = _npy_header(body, where)
    if dtype != np.dtype(np.uint8) or fortran:
        raise ServingInputError(f"{where}: must be a C-order uint8 array of shape [frames, height, width, 3]")
    if len(shape) != 4 or any(type(d) is not int for d in shape) or shape[3] != 3:
        raise ServingInputError(f"{where}: must be of shape [frames, height, width, 3], each a whole number")
    frames, height, width = shape[:3]
    if frames < 1:
        raise ServingInputError(f"{where}: empty, a video needs at least one frame")
    if height < 1 or width < 1:
        raise ServingInputError(f"{where}: frames of {height}x{width} pixels; height and width must be at least 1")
    if frames > limits.max_frames_per_video:
        raise too_large(f"{where}: {frames} frames exceeds limit max_frames_per_video={limits.max_frames_per_video}")
    _check_frame_size(width, height, limits, where)
    if frames * width * height > limits.max_request_pixels:
        raise too_large(
            f"{where}: {frames * width * height} pixels exceeds limit max_request_pixels={limits.max_request_pixels}"
        )
    data = memoryview(body)[offset:]
    if len(data) != frames * height * width * 3:
        raise ServingInputError(
            f"{where}: {len(data)} data bytes, the header's shape needs {frames * height * width * 3}"
        )
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


def b64_chars(limits: Limits) -> int:
    """The base64 length of a frame of max_frame_bytes: the request schema's maxLength of a frame."""
    return 4 * -(-limits.max_frame_bytes // 3)


def b64_frame(text: str, where: str, limits: Limits) -> bytes:
    if len(text) > b64_chars(limits):  # stated in the request schema (maxLength): 400
        raise ServingInputError(
            f"{where}: {len(text)} base64 characters exceeds limit max_frame_bytes={limits.max_frame_bytes} "
            f"({b64_chars(limits)} characters)"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingInputError(f"{where}: not valid base64") from None


def read_frame_file(path: str, where: str, limits: Limits) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ServingInputError(f"{where}: not a readable file")
    if p.stat().st_size > limits.max_frame_bytes:
        raise too_large(f"{where}: {p.stat().st_size} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}")
    return p.read_bytes()
