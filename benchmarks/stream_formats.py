"""Which shard format the streamed training path reads: measured on one built split, in one process.

The candidates that install next to torch 2.13.0 (LitData 0.2.76 and MosaicML Streaming 0.13.0 both require
another torch; WebDataset 1.0.2 installs alone, without its random-access ``wids`` module):
- ``pread``: the project's shards (``cpfd.data.shards``), a batch of rows in random order read with ``os.pread``;
- ``mmap``: the same shard files memory-mapped (``numpy.memmap``) and indexed;
- ``webdataset``: the same rows as WebDataset tar shards (one ``.npy`` frames member a sample), read in order (the
  only way it reads: a shuffle buffer after that, batches that depend on the number of workers and ranks).
Each reads every row of the split once, in batches of 64; examples/s and how much the process's resident memory
grew (memory-mapped pages count there, as they do towards a container's memory limit).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

BATCH = 64


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(read_all) -> dict:
    before, t0 = _rss_mb(), time.perf_counter()
    n = read_all()
    seconds = time.perf_counter() - t0
    return {"examples_per_s": round(n / seconds), "rss_growth_mb": round(_rss_mb() - before)}


def _pread(split: Path):
    from cpfd.data.shards import ShardReader

    reader = ShardReader(split)
    order = np.random.default_rng(0).permutation(len(reader))

    def run() -> int:
        for start in range(0, len(order), BATCH):
            reader.read(order[start : start + BATCH], frames=True)
        return len(order)

    return run


def _mmap(split: Path):
    import pandas as pd

    from cpfd.data.shards import ShardReader

    reader = ShardReader(split)
    shape, rows = tuple(reader.frame_shape or ()), reader.shard_rows
    maps = [np.memmap(split / f"{s['name']}.frames", np.uint8, "r").reshape(-1, *shape) for s in reader.index["shards"]]
    titles = [
        pd.read_parquet(split / f"{s['name']}.parquet", columns=["title"])["title"] for s in reader.index["shards"]
    ]
    order = np.random.default_rng(0).permutation(len(reader))

    def run() -> int:
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            np.stack([maps[r // rows][r % rows] for r in batch])
            [titles[r // rows].iloc[r % rows] for r in batch]
        return len(order)

    return run


def _webdataset(split: Path, work: Path):
    import webdataset as wds

    from cpfd.data.shards import ShardReader

    reader = ShardReader(split)
    work.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(work / "shard-%05d.tar"), maxcount=reader.shard_rows, verbose=0) as sink:
        for start in range(0, len(reader), 1024):
            rows = np.arange(start, min(start + 1024, len(reader)))
            frames, titles, _ = reader.read(rows, frames=True)
            assert frames is not None
            for r, f, t in zip(rows, frames, titles, strict=True):
                buf = io.BytesIO()
                np.save(buf, f)
                sink.write({"__key__": f"{r:09d}", "frames.npy": buf.getvalue(), "title.txt": str(t)})
    urls = sorted(str(p) for p in work.glob("shard-*.tar"))

    def run() -> int:
        n = 0
        data = wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("frames.npy", "title.txt")
        for batch in data.batched(BATCH):
            n += len(batch[0])
        return n

    return run


def compare_formats(split: Path, work: Path) -> dict:
    """examples/s and resident-memory growth of each format reading every row of ``split`` once."""
    from cpfd.data.shards import ShardReader

    return {
        "rows": len(ShardReader(split)),
        "pread": _timed(_pread(split)),
        "mmap": _timed(_mmap(split)),
        "webdataset": _timed(_webdataset(split, work)),
    }
