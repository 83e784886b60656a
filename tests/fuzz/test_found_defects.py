"""One test per defect the fuzz campaigns found (see docs/reliability.md): each input used to crash deep
inside numpy/h5py/scipy, hang, or return a wrong result, and now gives a correct result or one clear error
naming the file and the field."""

from __future__ import annotations

import gzip
import struct

import h5py
import numpy as np
import pytest
import yaml

from spikescale.data.arrays import load_npz
from spikescale.data.audio import AudioError, CochlearEncoder, read_wav
from spikescale.data.events import MAX_SAMPLE_CELLS, EventBinning, bin_events
from spikescale.data.heidelberg import SpikeFile, SpikeFileError, write_spike_file
from spikescale.data.idx import IDXError, read_idx
from spikescale.experiments.config import RECIPES_DIR, ConfigError, load_recipe


def _wav(path, samples: np.ndarray, rate: int = 8000, data_size=None, tag: int = 1) -> None:
    payload = samples.tobytes()
    bits = samples.dtype.itemsize * 8
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * samples.dtype.itemsize, samples.dtype.itemsize, bits)
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# --- event binning --------------------------------------------------------------------------------


def test_huge_spike_time_is_an_error_naming_the_sample_not_an_overflow():
    times = np.array([0.001, 1e30], dtype=np.float32)
    units = np.array([0, 1])
    with pytest.raises(ValueError, match=r"shd_test\.h5: sample 3 spans .* frame cells"):
        bin_events(times, units, np.array([0, 2]), EventBinning(dt_ms=1.0, channels=4), source="shd_test.h5", first_sample=3)


def test_huge_spike_time_with_a_fixed_duration_is_dropped_not_wrapped_into_an_early_step():
    times = np.array([0.0005, 2.0**63], dtype=np.float64)
    frames = bin_events(times, np.array([0, 1]), np.array([0, 2]), EventBinning(dt_ms=1.0, duration_ms=5.0, channels=2))
    dense = frames.dense(0).numpy()
    assert dense.shape == (5, 2)
    assert dense[:, 0].sum() == 1 and dense[:, 1].sum() == 0


def test_binning_settings_of_the_wrong_type_or_too_large_are_errors():
    with pytest.raises(ValueError, match="binary must be true or false"):
        EventBinning(binary=1)
    with pytest.raises(ValueError, match="dt_ms must be a positive number"):
        EventBinning(dt_ms=True)
    with pytest.raises(ValueError, match="frame cells"):
        EventBinning(dt_ms=1e-6, duration_ms=1e3, channels=700)
    assert MAX_SAMPLE_CELLS == 1 << 28


# --- SHD/SSC HDF5 ---------------------------------------------------------------------------------


def test_negative_or_fractional_labels_are_an_error_naming_the_key(tmp_path):
    path = write_spike_file(tmp_path / "shd.h5", [(np.array([0.1]), np.array([1]))], [0])
    with h5py.File(path, "r+") as f:
        del f["labels"]
        f["labels"] = np.array([-1.5])
    with pytest.raises(SpikeFileError, match=r"shd\.h5: labels"):
        SpikeFile(path)


def test_event_dataset_that_is_not_variable_length_is_an_error(tmp_path):
    path = write_spike_file(tmp_path / "shd.h5", [(np.array([0.1]), np.array([1]))], [0])
    with h5py.File(path, "r+") as f:
        del f["spikes/units"]
        f["spikes/units"] = np.array([b"x"])
    with pytest.raises(SpikeFileError, match=r"shd\.h5: 'spikes/units' must hold one variable-length array"):
        SpikeFile(path)


# --- WAV ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [1000, 0x7FFFFFF0], ids=["cut", "gigabytes"])
def test_wav_data_chunk_shorter_than_its_header_says_is_a_truncation_error(tmp_path, declared):
    """scipy returned the bytes that exist as a shorter recording, without a warning."""
    path = tmp_path / "cut.wav"
    _wav(path, np.zeros(100, dtype=np.int16), data_size=declared)
    with pytest.raises(AudioError, match=rf"cut\.wav: truncated WAV file \(the data chunk ends {declared - 200} bytes"):
        read_wav(path)


def test_float_wav_beyond_float32_range_is_an_error_not_inf(tmp_path):
    path = tmp_path / "loud.wav"
    _wav(path, np.array([0.0, 1e300], dtype=np.float64), tag=3)
    with pytest.raises(AudioError, match=r"loud\.wav: .*float32 range"):
        read_wav(path)


def test_sample_rate_that_cannot_be_resampled_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "odd.wav"
    _wav(path, np.zeros(64, dtype=np.int16), rate=40_000_000)
    with pytest.raises(AudioError, match=r"odd\.wav: cannot resample 40000000 Hz"):
        CochlearEncoder(channels=8).read(path)


# --- IDX ------------------------------------------------------------------------------------------


def test_damaged_gzip_idx_is_an_idx_error(tmp_path):
    data = bytearray(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 64) + bytes(64)))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IDXError, match="labels-idx1-ubyte.gz"):
        read_idx(path)


def test_idx_header_with_an_impossible_shape_is_an_error(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(IDXError, match="too large for an array"):
        read_idx(path)


# --- NPZ ------------------------------------------------------------------------------------------


def test_npy_file_named_npz_is_an_error_not_read_as_one_array(tmp_path):
    path = tmp_path / "data.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(ValueError, match=r"data\.npz: not an \.npz archive"):
        load_npz(path)


def test_npz_with_text_arrays_or_no_training_samples_is_an_error(tmp_path):
    path = tmp_path / "text.npz"
    np.savez(path, X_train=np.array([[["a"]]]), y_train=np.array([0]), X_test=np.zeros((1, 1, 1)), y_test=np.array([0]))
    with pytest.raises(ValueError, match="must be real numbers"):
        load_npz(path)
    path = tmp_path / "empty.npz"
    np.savez(path, X_train=np.zeros((0, 2, 3)), y_train=np.zeros(0), X_test=np.zeros((1, 2, 3)), y_test=np.array([0]))
    with pytest.raises(ValueError, match=r"empty\.npz: X_train holds no samples"):
        load_npz(path)


# --- recipes --------------------------------------------------------------------------------------


def _recipe(tmp_path, edit, name: str = "fsdd-dh-sfnn") -> "Path":
    """A shipped recipe changed by ``edit(recipe)``, written to a file."""
    recipe = yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())
    edit(recipe)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_recipe_reports_every_out_of_range_value_at_once_with_its_key_path(tmp_path):
    def edit(recipe):
        recipe["data"]["options"]["dt_ms"] = -4
        recipe["data"]["options"]["valid_fraction"] = 1.5
        recipe["model"]["branches"] = 0
        recipe["train"]["lr"] = float("nan")

    with pytest.raises(ConfigError) as info:
        load_recipe(_recipe(tmp_path, edit))
    message = str(info.value)
    for path in ("data.options.dt_ms", "data.options.valid_fraction", "model.branches", "train.lr"):
        assert path in message


def test_recipe_data_option_that_the_source_does_not_have_is_named(tmp_path):
    path = _recipe(tmp_path, lambda recipe: recipe["data"]["options"].update(pixels=3))
    with pytest.raises(ConfigError, match=r"data\.options\.pixels: not an option of 'fsdd'"):
        load_recipe(path)


def test_delays_recipe_with_k_below_one_is_an_error(tmp_path):
    path = _recipe(tmp_path, lambda recipe: recipe["model"].update(max_delay=0), "fsdd-delays")
    with pytest.raises(ConfigError, match=r"model\.max_delay"):
        load_recipe(path)


def test_non_utf8_or_deeply_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="bytes.yaml"):
        load_recipe(path)
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="deep.yaml"):
        load_recipe(path)


def test_in_memory_float16_times_bin_like_the_official_loop_in_faithful_mode():
    """EventDataset used to widen times to float64 before faithful binning, which compares in the times' dtype."""
    from spikescale.data.arrays import EventDataset
    from spikescale.data.events import frames_reference

    times = np.array([0.4, 1.1947, 0.32, 0.4366, 0.2694, 0.7581, 0.0, 0.8906, 0.2247], dtype=np.float16)
    units = np.array([650, 104, 383, 426, 224, 337, 11, 78, 214])
    binning = EventBinning(dt_ms=0.5, duration_ms=1000.0, pool=5, faithful=True, channels=700)
    frames = EventDataset([(times, units)], [0], binning)[0][0].numpy()
    np.testing.assert_array_equal(frames, frames_reference(times, units, binning))


def test_test_value_that_normalisation_takes_beyond_float32_is_an_error(tmp_path):
    """minmax with the narrow training range turned a large (finite) test value into Inf silently."""
    from spikescale.data.registry import load_splits

    path = tmp_path / "series.npz"
    rng = np.random.default_rng(0)
    x_test = rng.normal(size=(2, 1, 6)) * 1e-3
    x_test[1, 0, 5] = 3e38
    np.savez(path, X_train=rng.normal(size=(4, 1, 6)) * 1e-3, y_train=np.zeros(4, dtype=int), X_test=x_test, y_test=np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"series\.npz:test: sample 1 has 3e\+38 at step 5, channel 0, which minmax"):
        load_splits("arrays", path=str(path), normalize="minmax", valid_fraction=0.0)


def test_npz_member_needing_an_unknown_zip_version_is_an_error(tmp_path):
    path = tmp_path / "new.npz"
    np.savez(path, X_train=np.zeros((2, 1, 3)), y_train=np.zeros(2), X_test=np.zeros((1, 1, 3)), y_test=np.zeros(1))
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 6: central + 8] = struct.pack("<H", 255)  # "version needed to extract" 25.5
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"new\.npz: not a readable \.npz file \(zip file version 25\.5\)"):
        load_npz(path)


def test_stereo_float_wav_with_opposite_infinities_is_an_error_without_a_numpy_warning(tmp_path):
    import warnings

    path = tmp_path / "inf.wav"
    _wav(path, np.array([0.0, 0.0, np.inf, -np.inf], dtype=np.float64), tag=3)
    data = bytearray(path.read_bytes())
    data[22:24] = struct.pack("<H", 2)  # two channels: the frame (inf, -inf) averages to NaN
    data[32:34] = struct.pack("<H", 16)  # block align of two float64 samples
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError, match=r"inf\.wav: the samples contain NaN"):
            read_wav(path)


def test_search_space_type_that_is_not_a_string_is_a_config_error(tmp_path):
    path = _recipe(tmp_path, lambda recipe: recipe["search"]["space"]["train.lr"].update(type={"seed": 1}), "xor-delayed-sweep")
    with pytest.raises(ConfigError, match=r"search\.space\.train\.lr: expected a mapping with type one of"):
        load_recipe(path)


def test_value_too_large_for_the_level_crossing_encoder_is_an_error(tmp_path):
    """floor(3e38 / 0.5) overflowed float32 and the level differences became NaN."""
    from spikescale.data.registry import load_splits

    path = tmp_path / "wide.npz"
    x_test = np.zeros((2, 1, 6))
    x_test[1, 0, 2] = 3e38
    np.savez(path, X_train=np.ones((4, 1, 6)), y_train=np.zeros(4, dtype=int), X_test=x_test, y_test=np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"wide\.npz:test: sample 1 has 3e\+38 at step 2, channel 0, .* levels of delta=0\.5"):
        load_splits("arrays", path=str(path), normalize="none", encoder="delta", valid_fraction=0.0)


def test_ttfs_recipe_with_null_sigma_is_a_config_error(tmp_path):
    """null is a valid σ for delay kernels (the default) but the TTFS loss has none: it crashed at model build."""
    path = _recipe(tmp_path, lambda recipe: recipe["model"].update(sigma=None), "fmnist-ttfs-fssr")
    with pytest.raises(ConfigError, match=r"model\.sigma: expected int or float, got NoneType"):
        load_recipe(path)
