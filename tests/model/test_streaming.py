"""Streamed training data against the in-memory path: the same batches, the same weights, exact resume after a real
kill, disjoint rows per rank under torchrun, and shards read back from a URL through the local cache.

Tolerance: none. Both paths feed the loop the same tensors in the same order (the loader's workers only read and
tokenize; the global RNG that dropout draws from is never touched by the loader), so on one CPU process the float
operations are the same ones and the weights are equal bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cpfd.config import ModelConfig, TrainConfig, load_config
from cpfd.conventions import WEIGHTS_FILE
from cpfd.data.loader import TrainBatches, epoch_order
from cpfd.data.shards import ShardReader
from cpfd.data.streamed import StreamedSplit
from cpfd.data.tensors import prepare_data
from cpfd.training.recipes import train_classifier

CFG = TrainConfig(epochs=2, batch_size=16, patience=10, seed=3, threads=1, loader_workers=2)
KILL_AT_STEP = 12  # inside the second epoch (144 training rows: 9 steps an epoch); checkpoints every 4 steps


def _project(synthetic_dir: Path):
    project = load_config(synthetic_dir / "scenarios.yaml")
    return project.model_copy(update={"model": ModelConfig(size="tiny", dropout=0.1)})


@pytest.fixture(scope="module")
def both(clickbait_dataset, synthetic_dir):
    project = _project(synthetic_dir)
    memory = prepare_data(clickbait_dataset, project.model, CFG.model_copy(update={"data": "memory"}))
    streamed = prepare_data(clickbait_dataset, project.model, CFG.model_copy(update={"data": "stream"}))
    return project, memory, streamed


def _assert_same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(torch.nan_to_num(a[k], -7.0), torch.nan_to_num(b[k], -7.0)), k


def test_streamed_split_reads_the_rows_of_the_in_memory_one(both):
    _, memory, streamed = both
    assert isinstance(streamed.splits["train"], StreamedSplit)
    assert streamed.max_tokens == memory.max_tokens and streamed.title_stats == memory.title_stats
    for split in ("train", "val", "test"):
        m, s = memory.splits[split], streamed.splits[split]
        assert torch.equal(m.labels, s.labels) and torch.equal(m.video_ids, s.video_ids)
        idx = torch.randperm(len(m), generator=torch.Generator().manual_seed(0))[:40]
        _assert_same_batch(m.batch(idx), s.batch(idx))
    sub = torch.tensor([7, 2, 30])
    _assert_same_batch(
        memory.splits["train"].subset(sub).batch(torch.arange(3)),
        streamed.splits["train"].subset(sub).batch(torch.arange(3)),
    )
    assert torch.equal(
        torch.nan_to_num(memory.splits["train"].dense_matrix()),
        torch.nan_to_num(streamed.splits["train"].dense_matrix()),
    )


def test_streamed_and_in_memory_training_give_the_same_weights(both, tmp_path):
    project, memory, streamed = both
    for name, data in (("memory", memory), ("stream", streamed)):
        train_classifier(data, "teacher", project, tmp_path / name, progress=False, train_cfg=CFG)
    a, b = load_file(tmp_path / "memory" / WEIGHTS_FILE), load_file(tmp_path / "stream" / WEIGHTS_FILE)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    info = [json.loads((tmp_path / n / "cpfd_model.json").read_text()) for n in ("memory", "stream")]
    assert [h["val_macro_f1"] for h in info[0]["history"]] == [h["val_macro_f1"] for h in info[1]["history"]]


def test_killed_streamed_run_resumes_to_the_same_weights(both, clickbait_dataset, synthetic_dir, tmp_path):
    """A run killed with SIGKILL inside an epoch resumes from its last step checkpoint (sampler position, optimizer,
    RNG) and ends with the weights of an uninterrupted run."""
    project, _, streamed = both
    cfg = CFG.model_copy(update={"checkpoint_every_steps": 4})
    train_classifier(streamed, "student", project, tmp_path / "full", progress=False, train_cfg=cfg)
    cmd = [sys.executable, __file__, str(synthetic_dir), str(clickbait_dataset), str(tmp_path / "cut")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["batch"], state["global_step"]) == (1, 3, KILL_AT_STEP)
    torch.manual_seed(999)  # the resumed process starts from another RNG state
    train_classifier(streamed, "student", project, tmp_path / "cut", progress=False, train_cfg=cfg)
    a, b = load_file(tmp_path / "full" / WEIGHTS_FILE), load_file(tmp_path / "cut" / WEIGHTS_FILE)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _killed_worker(synthetic_dir: Path, dataset: Path, out: Path) -> None:
    project = _project(synthetic_dir)
    data = prepare_data(dataset, project.model, CFG.model_copy(update={"data": "stream"}))

    def kill(step: int) -> None:
        if step == KILL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = CFG.model_copy(update={"checkpoint_every_steps": 4})
    train_classifier(data, "student", project, out, progress=False, train_cfg=cfg, on_step_end=kill)


def test_ranks_read_disjoint_rows_of_each_global_batch():
    """Two ranks' requests partition every global batch of the single-process order; a resumed sampler replays
    the same epoch from its position."""
    order = epoch_order(1000, seed=5, epoch=2, window=300, block_rows=64)
    assert sorted(order.tolist()) == list(range(1000))
    single = [r.rows for r in TrainBatches(order, 48)]
    ranks = [list(TrainBatches(order, 48, rank=r, world_size=2)) for r in (0, 1)]
    for b, rows in enumerate(single):
        parts = [ranks[0][b].rows, ranks[1][b].rows]
        assert torch.equal(torch.cat(parts), rows)
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert [r.rows.tolist() for r in TrainBatches(order, 48, start=5)] == [r.tolist() for r in single[5:]]
    # windows: a window's rows come from window // block_rows blocks only (a reader touches few shards at once)
    assert len({int(r) // 64 for r in order[:192]}) == 300 // 64  # 4 blocks (the short last one has 40 rows)


@pytest.mark.slow
def test_two_gloo_processes_read_disjoint_rows(synthetic_dir, clickbait_dataset, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__]
    done = subprocess.run(
        [*cmd, "ddp", str(synthetic_dir), str(clickbait_dataset), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    read = [set(json.loads((tmp_path / f"rows.{r}.json").read_text())) for r in (0, 1)]
    train_rows = len(json.loads((tmp_path / "rows.0.json").read_text()))
    assert read[0] and read[1] and not read[0] & read[1]
    assert train_rows > 0 and len(read[0] | read[1]) == 144  # every training row, each read by one rank only


def _ddp_worker(synthetic_dir: Path, dataset: Path, out: Path) -> None:
    """One rank: the training rows its loader workers read (ShardReader.read during training) go to rows.<rank>.json."""
    rank = os.environ["RANK"]
    trace = out / f"trace.{rank}"
    trace.mkdir(parents=True, exist_ok=True)
    read = ShardReader.read

    def traced(self, rows, frames):
        if self.root.endswith("/train"):
            with open(trace / str(os.getpid()), "a") as f:
                f.write(" ".join(map(str, rows.tolist())) + "\n")
        return read(self, rows, frames)

    ShardReader.read = traced  # type: ignore[method-assign]
    project = _project(synthetic_dir)
    data = prepare_data(dataset, project.model, CFG.model_copy(update={"data": "stream"}))
    cfg = CFG.model_copy(update={"epochs": 1})
    train_classifier(data, "student", project, out / "run", progress=False, train_cfg=cfg)
    rows = [int(r) for f in trace.iterdir() for line in f.read_text().split("\n") for r in line.split()]
    (out / f"rows.{rank}.json").write_text(json.dumps(rows))


def test_shards_read_from_a_url_through_a_bounded_cache(clickbait_dataset, tmp_path, monkeypatch):
    """A split whose shards sit behind a URL (file:// here, s3:// or gs:// on a cluster: the same fsspec code) reads
    the same rows, copying each shard into the cache folder, which keeps within its limit."""
    remote = tmp_path / "bucket" / "train"
    shutil.copytree(clickbait_dataset / "stream" / "train", remote)
    monkeypatch.setenv("CPFD_STREAM_CACHE", str(tmp_path / "cache"))
    local, url = ShardReader(clickbait_dataset / "stream" / "train"), ShardReader(remote.as_uri())
    rows = np.array([3, 99, 0, 143])
    (f1, t1, d1), (f2, t2, d2) = local.read(rows, frames=True), url.read(rows, frames=True)
    assert np.array_equal(f1, f2) and list(t1) == list(t2) and np.array_equal(d1, d2, equal_nan=True)
    cached = {p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert {"index.json", "shard-00000.frames", "shard-00000.parquet"} <= cached
    monkeypatch.setenv("CPFD_STREAM_CACHE", str(tmp_path / "tight"))
    monkeypatch.setenv("CPFD_STREAM_CACHE_GB", "0")  # nothing but the index and the file just fetched stay cached
    tight = ShardReader(remote.as_uri(), max_tables=1)
    tight._cache.local("shard-00000.parquet")
    tight._cache.local("shard-00000.frames")
    assert not (tight._cache.folder / "shard-00000.parquet").exists()


def test_dataset_built_with_its_shards_behind_a_url(both, synthetic_dir, tmp_path, monkeypatch):
    """`cpfd dataset build --stream-root URL`: the shards go to the URL (file:// here), the manifest names it, and
    training reads them from there: the same rows as the in-memory split of the same videos."""
    from cpfd.data.build import build_scenario_dataset

    project, memory, _ = both
    url = (tmp_path / "bucket" / "run-1").as_uri()
    monkeypatch.setenv("CPFD_STREAM_CACHE", str(tmp_path / "cache"))
    manifest = build_scenario_dataset(
        synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet", "clickbait", project, tmp_path / "ds", url
    )
    assert manifest["stream"]["root"] == url and not (tmp_path / "ds" / "stream").exists()
    assert (tmp_path / "bucket" / "run-1" / "train" / "index.json").exists()
    remote = prepare_data(tmp_path / "ds", project.model, CFG.model_copy(update={"data": "stream"}))
    idx = torch.tensor([0, 17, 5])
    _assert_same_batch(memory.splits["val"].batch(idx), remote.splits["val"].batch(idx))


if __name__ == "__main__":
    if sys.argv[1] == "ddp":  # a torchrun worker
        _ddp_worker(*map(Path, sys.argv[2:5]))
    else:
        _killed_worker(*map(Path, sys.argv[1:4]))
