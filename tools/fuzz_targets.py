"""Fuzz targets: spikescale's file readers, recipe loading and event binning fed hostile input.

Each :class:`Target` pairs a hypothesis strategy of cases (valid data plus mutations: random truncation,
flipped bytes, wrong dtypes, negative or non-monotonic times, unit ids out of range, empty samples, huge
values, missing keys, wrong shapes) with a runner that writes the case to a file, reads it back with the
library and checks the outcome against one contract (:func:`check`):

* a correct result (checked per reader: shapes, dtypes, finite values, agreement with a reference), or
* one clear error: a ``ValueError`` or ``FileNotFoundError`` raised by a ``raise`` statement inside
  spikescale (not by numpy, h5py, scipy or yaml, and not chained to another traceback) whose message names
  the file (or, for in-memory events, the source).

Anything else is a :class:`ContractViolation`: another exception type, an error from deep inside a
dependency, a warning, a malformed or non-finite result, or no answer within the time limit.

Users: ``tests/fuzz`` (pytest), ``tools/fuzz_report.py`` (counts per reader) and ``tools/fuzz_atheris.py``
(coverage-guided fuzzing through hypothesis' ``fuzz_one_input``).
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import linecache
import math
import resource
import signal
import struct
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import h5py
import numpy as np
import torch
import yaml
from hypothesis import strategies as st

import spikescale
from spikescale.data.audio import CochlearEncoder, encode_files, read_wav
from spikescale.data.arrays import EventDataset
from spikescale.data.events import EventBinning, bin_events, frames_reference
from spikescale.data.heidelberg import SpikeFile, SpikeFileDataset
from spikescale.data.idx import read_idx
from spikescale.data.registry import DATASETS, list_datasets, load_splits
from spikescale.data.xor import XOR_TASKS
from spikescale.experiments.config import RECIPES_DIR, build_model_from_recipe, load_recipe

__all__ = ["ContractViolation", "Outcome", "Target", "TARGETS", "check", "run_case"]

PACKAGE_DIR = Path(spikescale.__file__).resolve().parent
ACCEPTED_ERRORS = (ValueError, FileNotFoundError)
TIME_LIMIT_S = 30.0
MEMORY_HEADROOM = 3 << 30  # bytes of address space a case may add before allocations fail
DENSE_BUDGET = 4_000_000  # frames cells the checks materialise per item


# ----------------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------------


class ContractViolation(AssertionError):
    """A case ended in neither a correct result nor one clear spikescale error.

    ``kind``: ``crash`` (wrong exception), ``warning``, ``wrong result`` or ``hang``; ``where``: the code
    location (innermost spikescale frame → innermost frame) or the failed check.
    """

    def __init__(self, kind: str, where: str, detail: str):
        self.kind, self.where, self.detail = kind, where, detail
        super().__init__(f"{kind} at {where}: {detail}")

    @property
    def signature(self) -> str:
        """What makes two violations the same defect."""
        return f"{self.kind} at {self.where}"


@dataclass(frozen=True)
class Outcome:
    """How a case ended within the contract: ``kind`` is ``"ok"`` or ``"rejected"`` (with the error message)."""

    kind: str
    message: str = ""


class _OutOfTime(BaseException):
    """Raised by the alarm inside a case that runs past its time limit (not catchable as Exception)."""


def _short(filename: str) -> str:
    path = Path(filename)
    for anchor in ("site-packages", "lib"):
        if anchor in path.parts:
            return "/".join(path.parts[len(path.parts) - path.parts[::-1].index(anchor):])
    try:
        return str(path.resolve().relative_to(PACKAGE_DIR.parent))
    except ValueError:
        return path.name


def _in_package(filename: str) -> bool:
    return PACKAGE_DIR in Path(filename).resolve().parents


def _location(err: BaseException) -> str:
    """``innermost spikescale frame [→ innermost frame]`` of the traceback of ``err``."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return "?"
    ours = [f for f in frames if _in_package(f[0])]
    inner = f"{_short(frames[-1][0])}:{frames[-1][1]}"
    if not ours or ours[-1] == frames[-1]:
        return inner
    return f"{_short(ours[-1][0])}:{ours[-1][1]} → {inner}"


def _clear_error_problem(err: BaseException, names: Sequence[str]) -> Optional[str]:
    """``None`` if ``err`` is one clear spikescale error naming all of ``names``, else what is wrong."""
    if not isinstance(err, ACCEPTED_ERRORS):
        return f"{type(err).__name__} is neither a ValueError nor a FileNotFoundError"
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    if not _in_package(filename) or not linecache.getline(filename, tb.tb_lineno).strip().startswith("raise"):
        return "raised inside a dependency or a builtin, not by a spikescale raise statement"
    if err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        return "chained to another exception (two tracebacks)"
    missing = [name for name in names if name not in str(err)]
    if missing:
        return f"the message does not name {missing}"
    return None


@contextlib.contextmanager
def _time_limit(seconds: Optional[float]):
    """Interrupt the block after ``seconds`` (main thread only; elsewhere no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _memory_limit(headroom: int):
    """Let the block grow the address space by at most ``headroom`` bytes (a failing allocation raises
    ``MemoryError``, which counts as a crash, instead of exhausting the machine)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as handle:
        used = int(handle.read().split()[0]) * resource.getpagesize()
    limit = used + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_IGNORED_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ResourceWarning)


def check(
    read: Callable[[], Any],
    verify: Callable[[Any], None],
    names: Sequence[str],
    must_accept: bool = False,
    time_limit: Optional[float] = TIME_LIMIT_S,
) -> Outcome:
    """Run ``read()``; ``ok`` if it returns and ``verify(result)`` passes, ``rejected`` if it raises one clear
    spikescale error naming ``names`` (a violation too when ``must_accept``: the input was valid); otherwise
    raise :class:`ContractViolation`.

    Both run under a time limit and a memory limit; ``verify`` signals a wrong result by ``AssertionError``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _memory_limit(MEMORY_HEADROOM), _time_limit(time_limit):
                try:
                    result = read()
                except _OutOfTime:
                    raise
                except Exception as err:
                    problem = _clear_error_problem(err, names)
                    if problem:
                        raise ContractViolation("crash", _location(err), f"{type(err).__name__}: {err} — {problem}") from None
                    if must_accept:
                        raise ContractViolation("wrong result", f"valid input rejected at {_location(err)}", str(err)) from None
                    outcome = Outcome("rejected", f"{type(err).__name__}: {err}")
                else:
                    verify(result)
                    outcome = Outcome("ok")
        except ContractViolation:
            raise
        except _OutOfTime as err:
            raise ContractViolation("hang", _location(err), f"no answer within {time_limit} s") from None
        except AssertionError as err:
            message = str(err)
            raise ContractViolation("wrong result", message.split(":")[0], message) from None
        except Exception as err:  # the checks themselves failed on what the reader returned
            raise ContractViolation("crash", _location(err), f"{type(err).__name__} while checking the result: {err}") from None
    leaked = [w for w in caught if not issubclass(w.category, _IGNORED_WARNINGS)]
    if leaked:
        first = leaked[0]
        raise ContractViolation("warning", f"{_short(first.filename)}:{first.lineno}", f"{first.category.__name__}: {first.message}")
    return outcome


# ----------------------------------------------------------------------------------------------------
# Shared pieces of the strategies and checks
# ----------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
# Hostile spike times: negative, non-finite, and so large that no sample can span them in memory.
HOSTILE_TIMES = (-0.5, -1e-3, NAN, INF, -INF, 1e30, 2.0**63, 3e38)
NORMAL_TIMES = st.floats(0.0, 1.375, allow_nan=False, width=32)


def _times(hostile: bool) -> st.SearchStrategy:
    return st.one_of(NORMAL_TIMES, NORMAL_TIMES, st.sampled_from(HOSTILE_TIMES)) if hostile else NORMAL_TIMES


def _units(channels: int, hostile: bool) -> st.SearchStrategy:
    valid = st.integers(0, channels - 1)
    return st.one_of(valid, valid, st.sampled_from([-1, channels, 2**16 - 1, 2**31, 2**40])) if hostile else valid


def _rarely(draw, common, *rare):
    """``common`` in about 7 of 8 draws, else one of ``rare``."""
    return draw(st.sampled_from([common] * (7 * len(rare)) + list(rare)))


def _cast(values, dtype) -> np.ndarray:
    """``values`` as ``dtype`` the way a careless writer would store them (wrapping, no warnings)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = np.asarray(values, dtype=np.float64 if np.dtype(dtype).kind == "f" else object)
        if array.dtype == object:
            array = np.asarray([_wrap_int(v) for v in array.ravel()], dtype=np.int64).reshape(array.shape)
        return array.astype(dtype)


def _wrap_int(value) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return ((int(value) + 2**63) % 2**64) - 2**63


@st.composite
def _corruption(draw) -> Optional[tuple]:
    """``None`` (most cases), ``("truncate", fraction)`` or ``("flip", [(fraction, byte), ...])``."""
    kind = draw(st.sampled_from([None] * 6 + ["truncate", "flip"]))
    if kind == "truncate":
        return ("truncate", draw(st.floats(0.0, 0.999)))
    if kind == "flip":
        return ("flip", draw(st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(0, 255)), min_size=1, max_size=8)))
    return None


def _corrupt(data: bytes, corruption: Optional[tuple]) -> bytes:
    if corruption is None or not data:
        return data
    if corruption[0] == "truncate":
        return data[: int(corruption[1] * len(data))]
    out = bytearray(data)
    for fraction, byte in corruption[1]:
        out[int(fraction * len(out))] = byte
    return bytes(out)


def _write(path: Path, data: bytes, corruption: Optional[tuple]) -> Path:
    path.write_bytes(_corrupt(data, corruption))
    return path


def _all_items(splits) -> tuple:
    """``(splits, items of each split)``: every item read once, so lazy readers meet all their data."""
    parts = [p for p in (splits.train, splits.valid, splits.test) if p is not None]
    return splits, [[part[i] for i in range(len(part))] for part in parts]


def _check_frames(x, channels: int, binary: bool, steps: Optional[int], who: str) -> None:
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32, f"frames type: {who} is {type(x).__name__} {getattr(x, 'dtype', '')}"
    assert x.ndim == 2 and x.shape[1] == channels and x.shape[0] >= 1, f"frames shape: {who} has {tuple(x.shape)}, expected [T>=1, {channels}]"
    assert steps is None or x.shape[0] == steps, f"frames length: {who} has {x.shape[0]} steps, expected {steps}"
    assert bool(torch.isfinite(x).all()) and bool((x >= 0).all()), f"frames values: {who} holds negative or non-finite counts"
    assert not binary or bool((x <= 1).all()), f"frames values: {who} is binary but holds counts above 1"


def _check_label(label, classes: Optional[int], who: str) -> None:
    assert isinstance(label, int) and label >= 0, f"label: {who} has label {label!r}, expected a non-negative int"
    assert classes is None or label < classes, f"label: {who} has label {label} but the data report {classes} classes"


def _budget_ok(steps: int, channels: int) -> bool:
    return 0 < steps * channels <= DENSE_BUDGET


def _events_valid(times: Sequence[np.ndarray], units: Sequence[np.ndarray], channels: int, fixed_duration: bool,
                  units_dtype: str) -> bool:
    """Whether stored events are what every reader must accept: finite times >= 0 (below 1000 s unless a
    fixed duration drops later ones), units of an integer type (even with no events) in ``[0, channels)``,
    equal lengths per sample."""
    if np.dtype(units_dtype).kind not in "iu":
        return False
    for t, u in zip(times, units):
        t, u = np.asarray(t), np.asarray(u)
        if t.shape != u.shape or t.dtype.kind not in "iuf" or u.dtype.kind not in "iu":
            return False
        t = t.astype(np.float64)
        if not (np.all(np.isfinite(t)) and np.all(t >= 0) and (fixed_duration or np.all(t < 1000))):
            return False
        if u.size and not (u.min() >= 0 and u.max() < channels):
            return False
    return True


# ----------------------------------------------------------------------------------------------------
# Event binning (in-memory events, EventBinning settings)
# ----------------------------------------------------------------------------------------------------

_HOSTILE_SETTINGS = {
    "dt_ms": [0.0, -1.0, NAN, INF, 1e-300, 1e300, "1", True, None],
    "duration_ms": [0.0, -5.0, NAN, INF, 1e300, "x", True],
    "align": ["first", None, 3],
    "pool": [0, -1, 1.5, True, "2", 7],
    "channels": [0, -1, 2.0, True, 2**40],
    "binary": ["yes", 2, None],
    "faithful": ["no", 2],
}


@st.composite
def binning_settings(draw, channels: int) -> dict:
    """Valid keyword arguments of :class:`EventBinning` for events on ``channels`` units."""
    settings = {
        "dt_ms": draw(st.sampled_from([0.5, 1.0, 4.0, 10.0, 25.3])),
        "duration_ms": draw(st.sampled_from([None, None, 1.0, 7.5, 100.0, 1000.0])),
        "align": draw(st.sampled_from(["zero", "first_spike"])),
        "pool": draw(st.sampled_from([p for p in (1, 2, 5, 10) if channels % p == 0])),
        "binary": draw(st.booleans()),
        "faithful": False,
        "channels": channels,
    }
    if settings["align"] == "zero" and settings["duration_ms"] is not None:
        settings["faithful"] = draw(st.booleans())
    return settings


_TIME_DTYPES = ["float16", "float32", "float64", "int32", "uint8"]
_UNIT_DTYPES = ["uint16", "uint8", "int8", "int32", "int64", "uint64", "float32"]


@st.composite
def event_samples(draw, channels: int, max_samples: int = 5, max_events: int = 12) -> list:
    """``[(times, units), ...]``: sorted or shuffled times; in some cases hostile times or units."""
    times_strategy = _times(draw(st.integers(0, 3)) == 0)
    units_strategy = _units(channels, draw(st.integers(0, 3)) == 0)
    samples = []
    for _ in range(draw(st.integers(0, max_samples))):
        n = draw(st.integers(0, max_events))
        times = draw(st.lists(times_strategy, min_size=n, max_size=n))
        if draw(st.integers(0, 3)):
            times = sorted(times, key=lambda t: (math.isnan(t), t))
        samples.append((times, draw(st.lists(units_strategy, min_size=n, max_size=n))))
    return samples


@st.composite
def binning_cases(draw) -> dict:
    channels = draw(st.sampled_from([700, 20, 6]))
    hostile = draw(st.sampled_from([None] * 14 + sorted(_HOSTILE_SETTINGS)))
    return {
        "hostile": None if hostile is None else (hostile, draw(st.sampled_from(_HOSTILE_SETTINGS[hostile]))),
        "samples": draw(event_samples(channels)),
        "times_dtype": draw(st.sampled_from(["float16", "float32", "float64"] * 3 + ["int64"])),
        "units_dtype": _rarely(draw, "int64", *_UNIT_DTYPES),
        "offsets": _rarely(draw, "right", "shuffled", "short", "negative"),
        "binning": draw(binning_settings(channels)),
        "api": draw(st.sampled_from(["bin_events", "bin_events", "EventDataset"])),
    }


def _frames_match_reference(frames, sample_events: list, binning: EventBinning, who: str) -> None:
    """Every item of ``frames`` (a callable index → [T, C] or None when too big) equals frames_reference."""
    for i, (times, units) in enumerate(sample_events):
        x = frames(i)
        if x is None:
            continue
        _check_frames(x, binning.out_channels, binning.binary, binning.fixed_steps, f"{who}[{i}]")
        expected = frames_reference(times, units, binning)
        assert expected.shape == tuple(x.shape) and np.array_equal(x.numpy(), expected), (
            f"frames differ from frames_reference: {who}[{i}]"
        )


def run_binning(case: dict, workdir: Path) -> Outcome:
    source = "fuzz-events"
    times = [_cast(t, case["times_dtype"]) for t, _ in case["samples"]]
    units = [_cast(u, case["units_dtype"]) for _, u in case["samples"]]
    sizes = [len(t) for t in times]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
    if case["offsets"] == "shuffled" and len(offsets) > 2:
        offsets = offsets[[0, *range(len(offsets) - 2, 0, -1), len(offsets) - 1]]
    elif case["offsets"] == "short":
        offsets = offsets[:-1] if len(offsets) > 1 else offsets
    elif case["offsets"] == "negative":
        offsets = offsets - 1
    all_times = np.concatenate(times) if times else np.zeros(0, case["times_dtype"])
    all_units = np.concatenate(units) if units else np.zeros(0, case["units_dtype"])

    settings = dict(case["binning"])
    names = ["events" if case["api"] == "EventDataset" else source]
    if case["hostile"] is not None:
        settings[case["hostile"][0]] = case["hostile"][1]
        outcome = check(lambda: EventBinning(**settings), lambda _: None, [case["hostile"][0]])
        if outcome.kind == "rejected":
            return outcome

    def read():
        binning = EventBinning(**settings)
        if case["api"] == "EventDataset":
            data = EventDataset(list(zip(times, units)), np.zeros(len(times), dtype=np.int64), binning)
            return binning, data.frames
        return binning, bin_events(all_times, all_units, offsets, binning, source=source)

    def verify(result):
        binning, frames = result
        count = len(times) if case["api"] == "EventDataset" else len(offsets) - 1  # offsets say how many samples
        assert len(frames) == count, f"sample count: {len(frames)} frames for {count} samples"

        def item(i):
            length = int(frames.lengths[i])
            assert length >= 1, f"frames length: sample {i} has {length} steps"
            return frames.dense(i) if _budget_ok(length, binning.out_channels) else None

        _frames_match_reference(item, list(zip(times, units))[:count], binning, source)

    valid = (case["hostile"] is None and case["offsets"] == "right"
             and _events_valid(times, units, case["binning"]["channels"], case["binning"]["duration_ms"] is not None,
                               case["units_dtype"]))
    return check(read, verify, names, must_accept=valid)


# ----------------------------------------------------------------------------------------------------
# HDF5 files in the SHD schema
# ----------------------------------------------------------------------------------------------------

_SHD_KEYS = ("spikes/times", "spikes/units", "labels", "extra/speaker", "extra/keys")


@st.composite
def spike_file_cases(draw) -> dict:
    channels = draw(st.sampled_from([700, 20, 6]))
    samples = draw(event_samples(channels))
    n = len(samples)
    if samples and draw(st.integers(0, 9)) == 0:  # one sample whose times and units differ in length
        times, units = samples[0]
        samples[0] = (times, units[:-1] if units else [0])
    label_values = st.integers(0, 3)
    if draw(st.integers(0, 7)) == 0:
        label_values = st.one_of(label_values, st.sampled_from([-1, 2.5, NAN, 1e30, 70000]))
    return {
        "samples": samples,
        "times_dtype": _rarely(draw, "float16", "float32", "float64", "int32", "uint8", "string"),
        "units_dtype": _rarely(draw, "uint16", *_UNIT_DTYPES[1:]),
        "layout": _rarely(draw, "vlen", "fixed", "flat", "group"),
        "labels": draw(st.lists(label_values, min_size=n, max_size=n) if draw(st.integers(0, 7)) else st.lists(label_values, max_size=n + 1)),
        "labels_dtype": _rarely(draw, "uint16", "int8", "int64", "float32", "float64", "string"),
        "labels_2d": _rarely(draw, False, True),
        "speakers": draw(st.sampled_from(["none", "valid", "valid"] * 4 + ["short", "string", "negative"])),
        "keys": draw(st.sampled_from(["none", "names", "names"] * 3 + ["ints", "empty"])),
        "drop": _rarely(draw, None, *_SHD_KEYS[:3]),
        "corruption": draw(_corruption()),
        "binning": draw(binning_settings(channels)),
        "cache": draw(st.booleans()),
    }


def _vlen(f: h5py.File, key: str, arrays: list, dtype: str) -> None:
    if dtype == "string":
        f.create_dataset(key, data=[" ".join(str(v) for v in a) for a in arrays], dtype=h5py.string_dtype())
        return
    data = f.create_dataset(key, (len(arrays),), dtype=h5py.vlen_dtype(np.dtype(dtype)))
    for i, a in enumerate(arrays):
        data[i] = _cast(a, dtype)


def _put_events(f: h5py.File, key: str, arrays: list, dtype: str, layout: str) -> None:
    if layout == "vlen":
        _vlen(f, key, arrays, dtype)
        return
    numeric = "float64" if dtype == "string" else dtype
    if layout == "fixed":  # one padded 2-D array instead of variable-length rows
        width = max([len(a) for a in arrays] + [1])
        data = np.zeros((len(arrays), width), dtype=numeric)
        for i, a in enumerate(arrays):
            data[i, : len(a)] = _cast(a, numeric)
        f.create_dataset(key, data=data)
    elif layout == "flat":  # one number per sample
        f.create_dataset(key, data=_cast([a[0] if len(a) else 0 for a in arrays], numeric))
    else:  # a group where a dataset belongs
        f.create_group(key).create_dataset("0", data=np.zeros(3))


def _write_spike_file(path: Path, case: dict) -> bytes:
    n = len(case["samples"])
    with h5py.File(path, "w") as f:
        for key, index, dtype in (("spikes/times", 0, case["times_dtype"]), ("spikes/units", 1, case["units_dtype"])):
            if key != case["drop"]:
                _put_events(f, key, [s[index] for s in case["samples"]], dtype, case["layout"])
        if case["drop"] != "labels":
            labels = case["labels"]
            if case["labels_dtype"] == "string":
                f.create_dataset("labels", data=[str(v).encode() for v in labels])
            else:
                data = _cast(labels, case["labels_dtype"])
                f.create_dataset("labels", data=data[:, None] if case["labels_2d"] else data)
        speakers = {"valid": list(range(n)), "short": list(range(max(n - 1, 0))), "negative": [-2] * n}.get(case["speakers"])
        if case["speakers"] == "string":
            f.create_dataset("extra/speaker", data=[b"anna"] * n)
        elif speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.int16))
        keys = {"names": [b"zero", b"one", b"two", b"three"], "ints": [0, 1, 2, 3], "empty": []}.get(case["keys"])
        if keys is not None:
            f.create_dataset("extra/keys", data=np.asarray(keys, dtype=object if keys and isinstance(keys[0], bytes) else np.int64),
                             dtype=h5py.string_dtype() if keys and isinstance(keys[0], bytes) else None)
    return path.read_bytes()


def run_spike_file(case: dict, workdir: Path) -> Outcome:
    path = workdir / "fuzz_train.h5"
    _write(path, _write_spike_file(path, case), case["corruption"])

    def read():
        binning = EventBinning(**case["binning"])
        data = SpikeFileDataset(path, binning, cache=case["cache"], cache_dir=workdir / "cache")
        classes = data.source.classes
        events = [data.source.events(i) for i in range(len(data))]
        items = [data[i] for i in range(len(data))]
        return binning, data, classes, events, items

    def verify(result):
        binning, data, classes, events, items = result
        assert len(items) == len(case["samples"]) or case["layout"] != "vlen", (
            f"sample count: {len(items)} items for {len(case['samples'])} samples"
        )
        for i, (x, label) in enumerate(items):
            _check_label(label, classes, f"item {i}")
        _frames_match_reference(lambda i: items[i][0], events, binning, path.name)

    return check(read, verify, [path.name], must_accept=_spike_file_valid(case))


def _spike_file_valid(case: dict) -> bool:
    """Whether the file written for ``case`` is a valid SHD-schema file (judged on the stored values)."""
    samples, n = case["samples"], len(case["samples"])
    if (case["layout"] != "vlen" or case["drop"] or case["corruption"] or "string" in (case["times_dtype"], case["labels_dtype"])
            or case["labels_2d"] or len(case["labels"]) != n or case["speakers"] not in ("none", "valid")
            or (case["keys"] == "empty" and n)):
        return False
    labels = _cast(case["labels"], case["labels_dtype"]).astype(np.float64)
    if n and not (np.all(labels == np.floor(labels)) and labels.min() >= 0 and labels.max() < (2**31 if case["keys"] == "none" else 4)):
        return False
    times = [_cast(t, case["times_dtype"]) for t, _ in samples]
    units = [_cast(u, case["units_dtype"]) for _, u in samples]
    return _events_valid(times, units, case["binning"]["channels"], case["binning"]["duration_ms"] is not None, case["units_dtype"])


# ----------------------------------------------------------------------------------------------------
# WAV files and the cochlear encoder
# ----------------------------------------------------------------------------------------------------

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_SUBFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_ENCODER = CochlearEncoder(channels=4, sample_rate=8000)


@st.composite
def wav_cases(draw) -> dict:
    fmt = draw(st.sampled_from([(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_PCM, 64), (_FLOAT, 32), (_FLOAT, 64)]))
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(0, 300))
    hostile = st.sampled_from([NAN, INF, -INF, 1e38, -1e300, 5.0])
    injected = draw(st.lists(st.tuples(st.floats(0, 0.999), hostile), max_size=2)) if fmt[0] == _FLOAT else []
    hostile_fields = {  # header fields that do not match the data (None: consistent)
        "tag": [_EXTENSIBLE, 2, 0, 6], "channels": [0, 7], "bits": [0, 12, 7, 128], "block_align": [0, 1, 3],
        "data_size": [0, 1, 2**32 - 1, "odd"], "riff_size": [0, 2**32 - 1], "extra_chunk": ["LIST", "odd", "huge", "fmt-last"],
    }
    fields = {name: None for name in hostile_fields}
    fields["rate"] = draw(st.sampled_from([8000, 16000, 11025, 44100] * 6 + [7, 1, 0, 2**32 - 1, 2**31]))
    mutated = draw(st.sampled_from([None] * len(hostile_fields) + sorted(hostile_fields)))
    if mutated is not None:
        fields[mutated] = draw(st.sampled_from(hostile_fields[mutated]))
    return {
        "format": fmt, "channels": channels, "frames": frames, "seed": draw(st.integers(0, 2**32 - 1)),
        "injected": injected, "fields": fields, "corruption": draw(_corruption()),
    }


def _wav_samples(case: dict) -> np.ndarray:
    """The ``[frames, channels]`` float64 signal in [-1, 1] (plus injected hostile values for float data)."""
    rng = np.random.default_rng(case["seed"])
    values = rng.uniform(-1.0, 1.0, (case["frames"], case["channels"])) * rng.uniform(0, 1)
    flat = values.reshape(-1)
    for fraction, value in case["injected"]:
        if flat.size:
            flat[int(fraction * flat.size)] = value
    return values


def _encode_pcm(values: np.ndarray, tag: int, bits: int) -> tuple[bytes, np.ndarray]:
    """``(payload bytes, the samples a correct reader returns, as float)``."""
    if tag == _FLOAT:
        dtype = "<f4" if bits == 32 else "<f8"
        with np.errstate(all="ignore"):
            stored = values.astype(dtype)
        return stored.tobytes(), stored.astype(np.float64)
    if bits == 8:
        stored = np.clip(np.round(values * 127 + 128), 0, 255).astype(np.uint8)
        return stored.tobytes(), (stored.astype(np.float64) - 128) / 128
    scale = 2.0 ** (bits - 1)
    ints = np.clip(np.round(values * scale), -scale, np.nextafter(scale, 0.0)).astype(np.int64)
    if bits == 24:
        raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return raw.tobytes(), ints / scale
    return ints.astype(f"<i{bits // 8}").tobytes(), ints / scale


def _chunk(name: bytes, payload: bytes, size: Optional[int] = None) -> bytes:
    body = payload + (b"\x00" if len(payload) % 2 else b"")
    return name + struct.pack("<I", len(payload) if size is None else size) + body


def _wav_bytes(case: dict) -> tuple[bytes, Optional[np.ndarray]]:
    """The file, and the mono signal a correct reader returns when the file is valid (else ``None``)."""
    tag, bits = case["format"]
    fields = case["fields"]
    payload, expected = _encode_pcm(_wav_samples(case), tag, bits)
    channels = case["channels"] if fields["channels"] is None else fields["channels"]
    header_bits = bits if fields["bits"] is None else fields["bits"]
    block_align = channels * header_bits // 8 if fields["block_align"] is None else fields["block_align"]
    rate = fields["rate"]
    header_tag = tag if fields["tag"] is None else fields["tag"]
    fmt = struct.pack("<HHIIHH", header_tag, channels, rate, (rate * block_align) % 2**32, block_align, header_bits % 2**16)
    if header_tag == _EXTENSIBLE:
        fmt += struct.pack("<HHIH", 22, header_bits % 2**16, 0, tag) + _SUBFORMAT_TAIL
    data_size = {None: None, "odd": len(payload) + 1}.get(fields["data_size"], fields["data_size"])
    extra = {None: b"", "LIST": _chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00fuzz\x00"), "odd": _chunk(b"junk", b"abc"),
             "huge": _chunk(b"junk", b"abcd", 2**32 - 2), "fmt-last": b""}[fields["extra_chunk"]]
    chunks = [_chunk(b"fmt ", fmt), extra, _chunk(b"data", payload, data_size)]
    if fields["extra_chunk"] == "fmt-last":
        chunks = [chunks[2], chunks[0]]
    body = b"WAVE" + b"".join(chunks)
    riff = struct.pack("<I", len(body) if fields["riff_size"] is None else fields["riff_size"])
    consistent = (all(v is None for k, v in fields.items() if k not in ("rate", "extra_chunk"))
                  and fields["extra_chunk"] in (None, "LIST", "odd"))
    usable = expected.size and np.all(np.isfinite(expected)) and np.abs(expected).max() <= np.finfo(np.float32).max
    valid = consistent and usable and case["corruption"] is None and 0 < rate <= 2000 * _ENCODER.sample_rate
    return b"RIFF" + riff + body, (expected.mean(axis=1) if valid else None)


def run_wav(case: dict, workdir: Path) -> Outcome:
    path = workdir / "fuzz.wav"
    data, expected = _wav_bytes(case)
    _write(path, data, case["corruption"])
    out = workdir / "encoded.h5"

    def read():
        samples, rate = read_wav(path)
        encode_files([path], out, _ENCODER, [0], progress=False)
        return samples, rate, SpikeFile(out).events(0)

    def verify(result):
        samples, rate, (times, units) = result
        assert isinstance(samples, np.ndarray) and samples.dtype == np.float32 and samples.ndim == 1 and samples.size, (
            f"samples type: {samples.dtype} {samples.shape}, expected non-empty float32 [n]"
        )
        assert np.all(np.isfinite(samples)), "samples values: NaN or Inf returned"
        assert isinstance(rate, int) and rate > 0, f"sample rate: {rate!r}"
        if expected is not None:
            assert samples.shape == expected.shape and np.allclose(samples, expected, atol=1e-6, rtol=1e-6), (
                "samples differ from the data written"
            )
        assert np.all(np.isfinite(times)) and np.all(times >= 0) and np.all(np.diff(times) >= 0), "events: bad spike times"
        assert np.all(units < _ENCODER.channels), "events: unit out of range"

    return check(read, verify, [path.name], must_accept=expected is not None)


# ----------------------------------------------------------------------------------------------------
# IDX files (MNIST format) and the sequential-image sources
# ----------------------------------------------------------------------------------------------------

_IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


@st.composite
def idx_specs(draw, shape: Optional[tuple] = None, code: int = 0x08, high: int = 255) -> dict:
    """One IDX file: data type code, shape, values, and header/body/gzip mutations (mostly none)."""
    mutate = draw(st.integers(0, 4)) == 0
    return {
        "mutated": mutate,
        "code": draw(st.sampled_from(sorted(_IDX_CODES) + [0x07, 0xFF])) if mutate else code,
        "shape": tuple(draw(st.lists(st.integers(0, 4), max_size=4))) if shape is None or mutate else shape,
        "high": draw(st.sampled_from([high, 300, 1e30])) if mutate else high,
        "negative": mutate and draw(st.booleans()),
        "nan": mutate and draw(st.booleans()),
        "magic": draw(st.sampled_from([b"\x00\x00", b"\x00\x00", b"\x08\x03"])) if mutate else b"\x00\x00",
        "rank": draw(st.sampled_from([None, 0, 9, 255])) if mutate else None,
        "huge_size": mutate and draw(st.booleans()),
        "body": draw(st.sampled_from([0, 0, -1, 3])) if mutate else 0,
        "gzip": draw(st.booleans()),
        "corruption": draw(_corruption()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _idx_bytes(spec: dict) -> tuple[bytes, Optional[np.ndarray]]:
    """The file bytes and the array a correct reader returns (``None`` where the file is broken)."""
    dtype = np.dtype(_IDX_CODES.get(spec["code"], ">u1"))
    rng = np.random.default_rng(spec["seed"])
    with np.errstate(all="ignore"):
        values = rng.integers(0, int(min(spec["high"], 2**31)) + 1, spec["shape"]).astype(np.float64)
        if spec["negative"]:
            values -= 50
        if spec["nan"] and values.size:
            values.flat[0] = NAN
        data = _cast(values, dtype)
    sizes = [2**32 - 1 if (spec["huge_size"] and i == 0) else s for i, s in enumerate(spec["shape"])]
    rank = len(sizes) if spec["rank"] is None else spec["rank"]
    header = spec["magic"] + bytes([spec["code"], rank]) + struct.pack(f">{len(sizes)}I", *sizes)
    body = data.tobytes()
    body = body + b"\x00" * spec["body"] if spec["body"] >= 0 else body[: spec["body"]]
    raw = header + body
    intact = (spec["magic"] == b"\x00\x00" and spec["code"] in _IDX_CODES and spec["rank"] is None and sizes
              and not spec["huge_size"] and spec["body"] == 0 and spec["corruption"] is None)
    return (gzip.compress(raw, mtime=0) if spec["gzip"] else raw), (data if intact else None)


def _write_idx(folder: Path, stem: str, spec: dict) -> tuple[Path, Optional[np.ndarray]]:
    data, expected = _idx_bytes(spec)
    path = folder / (stem + (".gz" if spec["gzip"] else ""))
    return _write(path, data, spec["corruption"]), expected


@st.composite
def idx_cases(draw) -> dict:
    if draw(st.booleans()):
        return {"kind": "file", "spec": draw(idx_specs())}
    count = {split: draw(st.integers(0, 5)) for split in ("train", "test")}
    side = draw(st.integers(0, 3))
    files = {}
    for split in ("train", "test"):
        files[f"{split}_images"] = draw(idx_specs((count[split], side, side)))
        files[f"{split}_labels"] = draw(idx_specs((count[split],), high=3))
    return {"kind": "set", "files": files, "permuted": draw(st.booleans()), "valid_fraction": draw(st.sampled_from([0.0, 0.1, 0.5]))}


def run_idx(case: dict, workdir: Path) -> Outcome:
    if case["kind"] == "file":
        path, expected = _write_idx(workdir, "fuzz-idx1-ubyte", case["spec"])

        def verify_array(array):
            assert isinstance(array, np.ndarray) and array.dtype.isnative, f"array type: {type(array).__name__}"
            assert expected is None or (array.shape == expected.shape and np.array_equal(array, expected, equal_nan=True)), (
                "array differs from the data written"
            )

        return check(lambda: read_idx(path), verify_array, [path.name], must_accept=expected is not None)
    written = [_write_idx(workdir, _IDX_NAMES[name], spec)[1] for name, spec in case["files"].items()]
    # A valid set: intact, unmutated files (so image and label counts agree) holding at least one pixel and label.
    valid = all(w is not None and w.size for w in written) and not any(spec["mutated"] for spec in case["files"].values())
    name = "psmnist" if case["permuted"] else "smnist"

    def read():
        return _all_items(load_splits(name, root=workdir, valid_fraction=case["valid_fraction"]))

    def verify(result):
        splits, parts = result
        for part in parts:
            for i, (x, label) in enumerate(part):
                assert x.dtype == torch.float32 and x.ndim == 2 and x.shape[1] == 1 and x.shape[0] >= 1, (
                    f"sequence shape: item {i} is {tuple(x.shape)} {x.dtype}"
                )
                assert bool(torch.isfinite(x).all()), f"sequence values: item {i} holds NaN or Inf"
                _check_label(label, splits.classes, f"item {i}")

    return check(read, verify, [workdir.name], must_accept=valid)


# ----------------------------------------------------------------------------------------------------
# NPZ files (your own arrays)
# ----------------------------------------------------------------------------------------------------

_NPZ_HOSTILE = [NAN, INF, -INF, 1e300, -1e300, 3e38]


@st.composite
def npz_cases(draw) -> dict:
    return {
        "layout": draw(st.sampled_from(["NCT", "NTC"])),
        "count": {"train": draw(st.integers(1, 6)) if draw(st.integers(0, 7)) else 0, "test": draw(st.integers(0, 3))},
        "channels": draw(st.integers(1, 3)) if draw(st.integers(0, 7)) else 0,
        "steps": draw(st.integers(1, 8)) if draw(st.integers(0, 7)) else 0,
        "x_dtype": draw(st.sampled_from(["float32", "float64"] * 12 + ["float16", "int16", "uint8", "bool", "complex64", "<U4", "object"])),
        "x_ndim": _rarely(draw, 3, 2, 4),
        "test_channels": _rarely(draw, 0, 1),
        "padding": draw(st.booleans()),
        "injected": draw(st.lists(st.tuples(st.sampled_from(["train", "test"]), st.floats(0, 0.999), st.sampled_from(_NPZ_HOSTILE)),
                                  max_size=2 if draw(st.integers(0, 3)) == 0 else 0)),
        "labels": _rarely(draw, "valid", "negative", "fraction", "nan", "huge", "string", "2d", "short"),
        "lengths": draw(st.sampled_from(["none", "valid"] * 8 + ["zero", "long", "fraction", "short"])),
        "drop": _rarely(draw, None, "X_train", "y_test"),
        "compressed": draw(st.booleans()),
        "corruption": draw(_corruption()),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "options": {
            **draw(st.sampled_from([{}, {}, {"steps": 1}, {"steps": 5}, {"time_factor": 0.5}, {"time_factor": 2.0}])),
            "normalize": draw(st.sampled_from(["auto", "standard", "minmax", "none"])),
            "encoder": draw(st.sampled_from(["direct", "delta", "rate"])),
            "valid_fraction": draw(st.sampled_from([0.0, 0.1, 0.5])),
        },
    }


def _npz_arrays(case: dict) -> dict:
    rng = np.random.default_rng(case["seed"])
    arrays = {}
    for split, count in case["count"].items():
        channels = case["channels"] + (case["test_channels"] if split == "test" else 0)
        x = rng.normal(size=(count, case["steps"], channels)) * 10.0 ** rng.integers(-3, 4)  # [N, T, C]
        lengths = rng.integers(1, case["steps"] + 1, count) if case["steps"] else np.zeros(count, dtype=np.int64)
        if case["padding"]:
            for i, length in enumerate(lengths):
                x[i, length:] = NAN
        flat = x.reshape(-1)
        for where, fraction, value in case["injected"]:
            if where == split and flat.size:
                flat[int(fraction * flat.size)] = value
        if case["layout"] == "NCT":
            x = x.transpose(0, 2, 1)
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2]) if case["x_ndim"] == 2 else (x[..., None] if case["x_ndim"] == 4 else x)
        arrays[f"X_{split}"] = x.astype(object) if case["x_dtype"] == "object" else _cast_any(x, case["x_dtype"])
        labels = rng.integers(0, 3, count)
        arrays[f"y_{split}"] = {
            "negative": labels - 2, "fraction": labels + 0.5, "nan": np.full(count, NAN), "huge": labels * 1e30,
            "string": labels.astype(str), "2d": labels[:, None], "short": labels[:-1],
        }.get(case["labels"], labels)
        if case["lengths"] != "none":
            arrays[f"len_{split}"] = {
                "zero": np.zeros(count, dtype=np.int64), "long": lengths + 1000, "fraction": lengths - 0.5, "short": lengths[:-1],
            }.get(case["lengths"], lengths)
    if case["drop"]:
        arrays.pop(case["drop"], None)
    return arrays


def _cast_any(x: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x.astype(dtype)


def run_npz(case: dict, workdir: Path) -> Outcome:
    path = workdir / "fuzz_arrays.npz"
    (np.savez_compressed if case["compressed"] else np.savez)(path, **_npz_arrays(case))
    _write(path, path.read_bytes(), case["corruption"])

    def read():
        return _all_items(load_splits("arrays", path=str(path), layout=case["layout"], **case["options"]))

    def verify(result):
        splits, parts = result
        for part in parts:
            for i, (x, label) in enumerate(part):
                assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 2, f"series type: item {i} {x.dtype} {tuple(x.shape)}"
                assert x.shape[0] >= 1 and x.shape[1] == splits.channels, f"series shape: item {i} {tuple(x.shape)}, {splits.channels} channels"
                assert bool(torch.isfinite(x).all()), f"series values: item {i} holds NaN or Inf"
                _check_label(label, splits.classes, f"item {i}")

    valid = (case["drop"] is None and case["x_dtype"] in ("float32", "float64", "float16", "int16", "uint8", "bool")
             and case["x_ndim"] == 3 and not case["test_channels"] and case["channels"] and case["steps"]
             and case["count"]["train"] and case["labels"] == "valid" and case["lengths"] in ("none", "valid")
             and not case["injected"] and case["corruption"] is None)
    return check(read, verify, [path.name], must_accept=bool(valid))


# ----------------------------------------------------------------------------------------------------
# Recipes (YAML)
# ----------------------------------------------------------------------------------------------------

_RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
_YAML_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0, -1, 10**12, 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "large", "auto", "1e-3", "zero", "fast"]),
    st.lists(st.integers(-2, 5), max_size=3), st.dictionaries(st.sampled_from(["a", "lr", "seed"]), st.integers(-1, 2), max_size=2),
)
_YAML_HAZARDS = [
    "[" * 400 + "]" * 400, "{a: " * 3000 + "}" * 3000, "&a [*a, *a]", "!!python/object/apply:os.system ['true']", "\t- x", ": :", "%YAML 1.1\n---\n",
    "\x00", "key: [unclosed", "? [a, b]\n: c", "{1: 2, '1': 3}", "!!binary AAAA", "--- |\n  text", "a: &x 1\nb: *x", "...",
]
_DATA_OPTION_NAMES = sorted({name for options in list_datasets().values() for name in options}
                            | {name for task in XOR_TASKS.values() for name in inspect.signature(task).parameters})


def _paths(node, prefix=()) -> list:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    return out


@st.composite
def recipe_cases(draw) -> dict:
    recipe = yaml.safe_load((RECIPES_DIR / f"{draw(st.sampled_from(_RECIPES))}.yaml").read_text())
    candidates = _paths(recipe) + [("data", "options", name) for name in _DATA_OPTION_NAMES] + [
        ("model", k) for k in ("branches", "dt", "threshold", "max_delay", "tau", "dropout", "sparsity", "group_size")
    ] + [("train", k) for k in ("lr", "epochs", "eps", "clip_grad_norm")] + [("data", "batch_size"), ("seed",)]
    mutations = draw(st.lists(st.tuples(st.sampled_from(["set", "set", "set", "delete", "rename"]), st.sampled_from(candidates),
                                        _YAML_VALUES, st.one_of(st.text(max_size=4), st.integers(-1, 3), st.none(), st.booleans())),
                              max_size=4))
    document = draw(st.sampled_from(["keep"] * 12 + [[1, 2], "just text", 3, None, {}]))
    text_edit = draw(st.sampled_from([None] * 6 + ["truncate", "insert", "bytes", "bom"]))
    return {
        "recipe": recipe, "mutations": mutations, "document": document, "text_edit": text_edit,
        "fraction": draw(st.floats(0, 1)), "hazard": draw(st.sampled_from(_YAML_HAZARDS)),
        "overrides": draw(st.lists(st.sampled_from(["train.lr=0.005", "model.hidden=[8]", "data.options.dt_ms=-1", "seed=x",
                                                    "model.hidden.0=4", "model.hidden.x=4", "seed.a=1", "=3", "novalue",
                                                    "train.epochs=[", "data.options={pool: 0}"]),
                                   max_size=2 if draw(st.integers(0, 3)) == 0 else 0)),
    }


def _apply(recipe: dict, mutation: tuple) -> None:
    action, path, value, new_key = mutation
    node = recipe
    for key in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        return
    if action == "set":
        node[path[-1]] = value
    elif path[-1] in node:
        moved = node.pop(path[-1])
        if action == "rename":
            node[new_key] = moved


def _recipe_text(case: dict) -> bytes:
    recipe = case["recipe"]
    for mutation in case["mutations"]:
        _apply(recipe, mutation)
    document = recipe if case["document"] == "keep" else case["document"]
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    cut = int(case["fraction"] * len(text))
    edit = case["text_edit"]
    if edit == "truncate":
        text = text[:cut]
    elif edit == "insert":
        text = text[:cut] + case["hazard"] + text[cut:]
    data = text.encode("utf-8")
    if edit == "bytes":
        data = data[:cut] + b"\xff\xfe\x80" + data[cut:]
    elif edit == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


_MODEL_BUDGET = 512  # hidden neurons up to which a validated recipe's model is built as a check


def run_recipe(case: dict, workdir: Path) -> Outcome:
    path = workdir / "fuzz-recipe.yaml"
    path.write_bytes(_recipe_text(case))

    def verify(recipe):
        assert isinstance(recipe, dict) and {"data", "model", "train"} <= set(recipe), "recipe: sections missing after validation"
        data = recipe["data"]
        options = data["options"]
        if data["name"] in DATASETS:
            try:
                inspect.signature(DATASETS[data["name"]]).bind_partial(**options)
            except TypeError as err:
                raise AssertionError(f"validated data options do not fit the dataset: {err}") from None
        hidden = recipe["model"].get("hidden", [])
        if sum(hidden) <= _MODEL_BUDGET and len(hidden) <= 3:
            _builds_or_clear_error(lambda: build_model_from_recipe(recipe, 4, 3), "validated recipe fails to build the model")
        task = XOR_TASKS.get(data["name"])
        if task is not None and all(not isinstance(v, (int, float)) or abs(v) <= 400 for v in options.values()):
            generator = torch.Generator().manual_seed(0)
            _builds_or_clear_error(lambda: task(2, generator=generator, **options), "validated data options fail to generate a batch")

    names = [] if case["overrides"] else [path.name]  # errors in overrides name the --set item instead
    valid = not (case["mutations"] or case["overrides"] or case["text_edit"]) and case["document"] == "keep"
    return check(lambda: load_recipe(path, case["overrides"]), verify, names, must_accept=valid)


def _builds_or_clear_error(build: Callable[[], Any], what: str) -> None:
    """``build()`` succeeds or raises one clear spikescale error (see :func:`_clear_error_problem`)."""
    try:
        build()
    except Exception as err:
        problem = _clear_error_problem(err, [])
        if problem:
            raise AssertionError(f"{what} at {_location(err)}: {type(err).__name__}: {err} ({problem})") from None


# ----------------------------------------------------------------------------------------------------
# Registry of targets
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One reader under fuzzing: ``cases`` generates inputs, ``run(case, workdir)`` checks one."""

    name: str
    reader: str
    cases: st.SearchStrategy
    run: Callable[[Any, Path], Outcome]


TARGETS = {
    t.name: t
    for t in (
        Target("hdf5", "SpikeFile / SpikeFileDataset (SHD/SSC schema)", spike_file_cases(), run_spike_file),
        Target("wav", "read_wav + encode_files (cochlear encoder)", wav_cases(), run_wav),
        Target("idx", "read_idx, smnist / psmnist sources", idx_cases(), run_idx),
        Target("npz", "load_npz + the arrays source", npz_cases(), run_npz),
        Target("yaml", "load_recipe (YAML, overrides, validation)", recipe_cases(), run_recipe),
        Target("binning", "EventBinning + bin_events / EventDataset", binning_cases(), run_binning),
    )
}


def run_case(target: Target, case: Any) -> Outcome:
    """Run one case in a fresh temporary folder: its :class:`Outcome`, or :class:`ContractViolation`."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as folder:
        return target.run(case, Path(folder))
