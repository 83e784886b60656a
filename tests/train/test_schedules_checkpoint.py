import os
import pickle

import pytest
import torch

from spikescale.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikescale.train.schedules import schedule_factor


def test_schedules():
    step = schedule_factor("step", 150, step_size=50, gamma=0.1)
    assert [step(e) for e in (0, 49, 50, 100)] == pytest.approx([1, 1, 0.1, 0.01])
    cosine = schedule_factor("cosine", 10)
    assert cosine(0) == 1 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    one = schedule_factor("onecycle", 100)
    assert one(0) == pytest.approx(1 / 25) and one(30) == pytest.approx(1.0)
    assert one(99) == pytest.approx(1 / 25e4, rel=1e-6)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_factor("linear", 5)


def test_checkpoint_round_trip_and_atomicity(tmp_path):
    path = tmp_path / "c" / "last.pt"
    save_checkpoint(path, {"w": torch.arange(3.0), "epoch": 2, "notes": ["a"]})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2 and torch.equal(loaded["w"], torch.arange(3.0))

    class Boom:
        def __reduce__(self):  # pickling fails half-way through the write
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(2), "bad": Boom()})
    assert load_checkpoint(path)["epoch"] == 2  # the previous checkpoint is intact
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(bad)
