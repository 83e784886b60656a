"""Data-parallel training with 2 CPU processes (gloo) equals single-process training at the same global batch."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spikescale.experiments.config import load_recipe
from spikescale.experiments.runner import run_recipe

OVERRIDES = ["data.options={steps: 30}", "data.batch_size=32", "data.batches_per_epoch=3", "data.eval_samples=64",
             "train.epochs=2", "train.progress=false", "report.plots=false", "report.gradient_flow=false",
             "report.raster_samples=0"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        run_recipe(load_recipe("xor-delayed-dh", OVERRIDES), run_dir)
    finally:
        dist.destroy_process_group()


def _metrics(path):
    drop = {"epoch_seconds", "wall_seconds", "samples_per_second"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = run_recipe(load_recipe("xor-delayed-dh", OVERRIDES), tmp_path / "single")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    one, two = _metrics(tmp_path / "single"), _metrics(tmp_path / "ddp")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert a["train_samples"] == b["train_samples"] == 96
        for key in ("train_loss", "valid_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
        for key in ("train_accuracy", "valid_accuracy"):
            assert b[key] == pytest.approx(a[key], abs=1e-9)
        assert b["valid_spikes_per_neuron"] == pytest.approx(a["valid_spikes_per_neuron"], rel=1e-5)
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=1e-9)
    versions = json.loads((tmp_path / "ddp" / "versions.json").read_text())
    assert versions["processes"] == 2
