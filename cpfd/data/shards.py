"""The streamed form of a dataset split: row-ordered shards that training reads a batch at a time.

A split's folder (local, or any fsspec URL such as ``s3://`` or ``gs://``) holds ``index.json``, ``meta.parquet``
(``video_id`` and ``label`` of every row, the only per-row data a reader keeps in memory) and per shard of
``shard_rows`` rows a ``shard-NNNNN.parquet`` (title, dense features, where each row's frames lie) and a
``shard-NNNNN.frames`` file: each row's frames as raw uint8 [T, H, W, 3] bytes, or, for videos whose frames came as
a folder of PNG/JPEG images, those encoded images, decoded by whichever process reads the row (the loader's
workers). Rows keep the split table's order, so row ``i`` of the stream is row ``i`` of ``<split>.parquet``.

Reads are positioned (``os.pread``) on local files, never memory-mapped: a reader's memory is its cached shard
tables (a bounded number) and the batch at hand, whatever the number of rows. Remote shards are first copied into
a local cache folder (``$CPFD_STREAM_CACHE``, else a temporary one) that keeps at most ``$CPFD_STREAM_CACHE_GB``
(default 50) gigabytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from cpfd.data.frames import image_files, load_frames
from cpfd.errors import DataContractError

STREAM_DIR = "stream"  # beside the split tables in a built dataset
DEFAULT_SHARD_ROWS = 4096
INDEX_FILE = "index.json"
META_FILE = "meta.parquet"
FORMAT_VERSION = 1
RAW, IMAGES = 0, 1  # how a row's frames are stored in the .frames file


class MissingShardFile(DataContractError):
    """A file of a streamed split is not where its index says."""


def is_url(path: str | Path) -> bool:
    """A location read through fsspec (``s3://``, ``gs://``, ``file://``, ...) rather than a plain local path."""
    return "://" in str(path)


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_url(root) else str(Path(root) / name)


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _encoded_frames(ref: str, shape: tuple[int, ...] | None, where: str) -> tuple[list[bytes], tuple[int, ...]]:
    """A folder's encoded frames as they are on disk, checked against the split's frame shape from their headers."""
    from PIL import Image

    folder = Path(ref)
    files = image_files(folder)
    if not files:
        raise DataContractError(f"{where}: {folder} holds no .png or .jpg frames")
    blobs = [f.read_bytes() for f in files]
    sizes = set()
    for blob in blobs:  # the headers only: nothing is decoded here
        with Image.open(io.BytesIO(blob)) as im:
            sizes.add(im.size)
    if len(sizes) > 1:
        raise DataContractError(f"{where}: {folder} mixes frame sizes {sorted(sizes)}")
    width, height = sizes.pop()
    found = (len(files), height, width, 3)
    if shape is not None and found != shape:
        raise DataContractError(f"{where}: {folder} has frames of shape {found}, the split's are {shape}")
    return blobs, found


def write_split_stream(split: pd.DataFrame, out: str | Path, feature_names: list[str], shard_rows: int, source: str):
    """Write ``split`` (a built split table, frame references absolute) as shards under ``out``; returns the index.

    Frames are read one shard at a time, so memory stays at one shard's worth whatever the split's size."""
    out_root = str(out)
    local_dir = Path(tempfile.mkdtemp(prefix="cpfd-stream-")) if is_url(out_root) else Path(out_root)
    local_dir.mkdir(parents=True, exist_ok=True)
    has_frames = "frames" in split
    shape: tuple[int, ...] | None = None
    shards = []
    for i, start in enumerate(range(0, max(len(split), 1), shard_rows)):
        part = split.iloc[start : start + shard_rows]
        name = _shard_name(i)
        offsets, sizes, kinds = [], [], []
        with open(local_dir / f"{name}.frames", "wb") as blob:
            if has_frames:
                refs = part["frames"].tolist()
                is_folder = [Path(r).is_dir() for r in refs]
                raw_rows = [j for j, d in enumerate(is_folder) if not d]
                raw = load_frames([refs[j] for j in raw_rows], ".", source=source) if raw_rows else None
                raw_at = {j: k for k, j in enumerate(raw_rows)}
                for j, ref in enumerate(refs):
                    where = f"{source}: column 'frames', row {start + j}"
                    offsets.append(blob.tell())
                    if is_folder[j]:
                        encoded, found = _encoded_frames(ref, shape, where)
                        blob.write(b"".join(encoded))
                        sizes.append([len(e) for e in encoded])
                        kinds.append(IMAGES)
                    else:
                        assert raw is not None
                        frames = raw[raw_at[j]]
                        found = tuple(frames.shape)
                        if shape is not None and found != shape:
                            raise DataContractError(f"{where}: frames of shape {found}, the split's are {shape}")
                        blob.write(np.ascontiguousarray(frames).tobytes())
                        sizes.append([frames.nbytes])
                        kinds.append(RAW)
                    shape = found
        table = pd.DataFrame(
            {
                "title": part["title"].astype(str).to_numpy() if "title" in part else np.full(len(part), ""),
                **{f: part[f].to_numpy(np.float32) for f in feature_names},
                "frames_offset": np.asarray(offsets if has_frames else [0] * len(part), np.int64),
                "frames_sizes": sizes if has_frames else [[] for _ in range(len(part))],
                "frames_kind": np.asarray(kinds if has_frames else [RAW] * len(part), np.int8),
            }
        )
        table.to_parquet(local_dir / f"{name}.parquet", index=False)
        shards.append({"name": name, "rows": len(part), "frames_bytes": (local_dir / f"{name}.frames").stat().st_size})
    split[["video_id", "label"]].astype("int64").to_parquet(local_dir / META_FILE, index=False)
    index = {
        "format": FORMAT_VERSION,
        "rows": len(split),
        "shard_rows": shard_rows,
        "shards": shards,
        "frame_shape": list(shape) if shape is not None else None,
        "feature_names": feature_names,
    }
    (local_dir / INDEX_FILE).write_text(json.dumps(index, indent=1))
    if is_url(out_root):
        _upload(local_dir, out_root)
    return index


def _filesystem(url: str):
    """fsspec's filesystem and path for ``url``; a missing driver (s3fs, gcsfs) is named with its install."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise DataContractError(
            f"{url}: cannot open this location ({e}); for s3:// and gs:// install cpfd[cloud]"
        ) from None


def _upload(local_dir: Path, url: str) -> None:
    import shutil

    fs, root = _filesystem(url)
    fs.makedirs(root, exist_ok=True)
    for f in sorted(local_dir.iterdir()):
        fs.put_file(str(f), f"{root.rstrip('/')}/{f.name}")
    shutil.rmtree(local_dir)


class ShardCache:
    """Local copies of remote files, at most ``limit_bytes`` of them; the least recently used go first."""

    def __init__(self, url: str, folder: str | Path | None = None, limit_bytes: int | None = None):
        base = Path(folder or os.environ.get("CPFD_STREAM_CACHE") or Path(tempfile.gettempdir()) / "cpfd-stream")
        self.folder = base / hashlib.sha1(url.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        gb = float(os.environ.get("CPFD_STREAM_CACHE_GB", "50"))
        self.limit = limit_bytes if limit_bytes is not None else int(gb * 2**30)
        self.url = url

    def local(self, name: str) -> Path:
        path = self.folder / name
        if path.exists():
            os.utime(path)  # most recently used
            return path
        fs, root = _filesystem(self.url)
        tmp = path.with_name(f".{name}.{os.getpid()}.part")
        try:
            with fs.open(f"{root.rstrip('/')}/{name}", "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        files = [p for p in self.folder.iterdir() if not p.name.startswith(".")]
        files.sort(key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.limit:
                break
            if p != keep and p.name not in (INDEX_FILE, META_FILE):
                total -= p.stat().st_size
                p.unlink(missing_ok=True)


class ShardReader:
    """Rows of one streamed split by row number, in any order; safe to use from forked loader workers (each process
    opens its own files)."""

    def __init__(self, root: str | Path, max_tables: int = 32):
        self.root = str(root)
        self._cache = ShardCache(self.root) if is_url(self.root) else None
        try:
            self.index = json.loads(self._path(INDEX_FILE).read_text())
        except MissingShardFile:
            raise DataContractError(
                f"{self.root}: no streamed split here ({INDEX_FILE} missing); rebuild with `cpfd dataset build`"
            ) from None
        if self.index.get("format") != FORMAT_VERSION:
            raise DataContractError(
                f"{self.root}: streamed split format {self.index.get('format')}, "
                f"this version reads {FORMAT_VERSION}; rebuild the dataset"
            )
        self.shard_rows = int(self.index["shard_rows"])
        self.frame_shape = tuple(self.index["frame_shape"]) if self.index["frame_shape"] else None
        self.max_tables = max_tables
        self._tables: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.index["rows"])

    def _path(self, name: str) -> Path:
        try:
            path = self._cache.local(name) if self._cache is not None else Path(self.root) / name
            if not path.exists():
                raise FileNotFoundError(path)
        except FileNotFoundError:
            raise MissingShardFile(f"{_join(self.root, name)}: missing from the streamed split") from None
        return path

    def meta(self) -> pd.DataFrame:
        return pd.read_parquet(self._path(META_FILE))

    def _table(self, shard: int) -> dict[str, np.ndarray]:
        if shard in self._tables:
            self._tables.move_to_end(shard)
            return self._tables[shard]
        df = pd.read_parquet(self._path(f"{_shard_name(shard)}.parquet"))
        names = self.index["feature_names"]
        table = {
            "title": df["title"].to_numpy(object),
            "dense": df[names].to_numpy(np.float32) if names else np.zeros((len(df), 0), np.float32),
            "frames_offset": df["frames_offset"].to_numpy(np.int64),
            "frames_sizes": df["frames_sizes"].to_numpy(object),
            "frames_kind": df["frames_kind"].to_numpy(np.int8),
        }
        self._tables[shard] = table
        if len(self._tables) > self.max_tables:
            self._tables.popitem(last=False)
        return table

    def _fd(self, shard: int) -> int:
        if shard not in self._fds:
            self._fds[shard] = os.open(self._path(f"{_shard_name(shard)}.frames"), os.O_RDONLY)
            if len(self._fds) > self.max_tables:
                os.close(self._fds.pop(next(iter(self._fds))))
        return self._fds[shard]

    def read(self, rows: np.ndarray, frames: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Frames (uint8 [n, T, H, W, 3], or None), titles (object [n]) and dense features (float32 [n, F]) of
        ``rows``, in the order given."""
        if self._pid != os.getpid():  # a forked worker: descriptors and tables are the parent's
            self._fds, self._tables, self._pid = {}, OrderedDict(), os.getpid()
        rows = np.asarray(rows, dtype=np.int64)
        n, n_features = len(rows), len(self.index["feature_names"])
        titles = np.empty(n, dtype=object)
        dense = np.empty((n, n_features), np.float32)
        out = np.empty((n, *self.frame_shape), np.uint8) if frames and self.frame_shape else None
        shards, ats = np.divmod(rows, self.shard_rows)
        for shard in np.unique(shards):
            sel = np.flatnonzero(shards == shard)
            table, at = self._table(int(shard)), ats[sel]
            titles[sel] = table["title"][at]
            dense[sel] = table["dense"][at]
            if out is not None:
                fd = self._fd(int(shard))
                for j, a in zip(sel, at, strict=True):
                    where = table["frames_offset"][a], table["frames_sizes"][a], table["frames_kind"][a]
                    out[j] = self._frames(fd, *where)
        return out, titles, dense

    def _frames(self, fd: int, offset: int, frame_sizes, kind: int) -> np.ndarray:
        sizes = [int(s) for s in frame_sizes]
        data = os.pread(fd, sum(sizes), int(offset))
        if int(kind) == RAW:
            assert self.frame_shape is not None
            return np.frombuffer(data, np.uint8).reshape(self.frame_shape)
        from PIL import Image

        out, pos = [], 0
        for size in sizes:
            with Image.open(io.BytesIO(data[pos : pos + size])) as im:
                out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            pos += size
        return np.stack(out)

    def columns(self, names: list[str]) -> pd.DataFrame:
        """Columns ``names`` of every row, each shard table read once (for the fits that need whole columns: the
        tokenizer's titles, the dense standardisation)."""
        pieces = [pd.read_parquet(self._path(f"{s['name']}.parquet"), columns=names) for s in self.index["shards"]]
        return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=names)
