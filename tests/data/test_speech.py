import h5py
import numpy as np
import pytest
from scipy.io import wavfile

from spikescale.data import speech as speech_module
from spikescale.data.audio import CochlearEncoder
from spikescale.data.events import EventBinning
from spikescale.data.registry import load_splits
from spikescale.data.speech import FSDD, AudioFolder, fsdd_root

try:
    FSDD_HOME = fsdd_root()
except FileNotFoundError:
    FSDD_HOME = None
needs_fsdd = pytest.mark.skipif(FSDD_HOME is None, reason="Free Spoken Digit Dataset not found (../shared/data/fsdd)")

SMALL = CochlearEncoder(channels=8, sample_rate=8000)


@pytest.fixture
def fsdd_subset(tmp_path):
    """Real FSDD recordings of 2 speakers, all digits, indices 0–8 (180 files), linked into a new root."""
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for speaker in ("george", "jackson"):
        for digit in range(10):
            for index in range(9):
                name = f"{digit}_{speaker}_{index}.wav"
                (root / "recordings" / name).symlink_to(FSDD_HOME / "recordings" / name)
    return root


@needs_fsdd
def test_fsdd_official_split_and_stratified_validation(fsdd_subset, monkeypatch):
    splits = {s: FSDD(s, fsdd_subset, encoder=SMALL, valid_fraction=0.25, progress=False) for s in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [60, 20, 100]
    with h5py.File(splits["test"].source_file) as f:
        stored = [n.decode() for n in f["extra/files"][()]]
    index = lambda i: int(stored[i].split("_")[2].split(".")[0])  # noqa: E731
    assert all(index(i) < 5 for i in splits["test"].indices)
    assert all(index(i) >= 5 for s in ("train", "valid") for i in splits[s].indices)
    assert not set(splits["train"].indices) & set(splits["valid"].indices)
    pairs = sorted(zip(splits["valid"].speakers.tolist(), splits["valid"].labels.tolist()))
    assert pairs == sorted((s, d) for s in (0, 1) for d in range(10))  # one per speaker and digit
    x, label = splits["train"][0]
    assert x.shape[1] == 8 and x.dtype.is_floating_point and 0 <= label < 10

    def no_encoding(*args, **kwargs):
        raise AssertionError("the encoding should come from the cache")

    monkeypatch.setattr(speech_module, "encode_files", no_encoding)
    again = FSDD("valid", fsdd_subset, encoder=SMALL, valid_fraction=0.25, progress=False)
    assert again.indices == splits["valid"].indices
    other_seed = FSDD("valid", fsdd_subset, encoder=SMALL, valid_fraction=0.25, seed=1, progress=False)
    assert other_seed.indices != splits["valid"].indices


@needs_fsdd
def test_fsdd_through_the_registry(fsdd_subset):
    splits = load_splits("fsdd", root=fsdd_subset, channels=8, dt_ms=5.0, pool=2, valid_fraction=0.25, progress=False)
    assert (splits.channels, splits.classes, splits.dt_ms) == (4, 10, 5.0)
    assert splits.train[0][0].shape[1] == 4 and "CC BY-SA 4.0" in splits.description


def test_missing_fsdd_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/Jakobovski/free-spoken-digit-dataset"):
        FSDD("train", tmp_path / "nowhere", encoder=SMALL)


def test_foreign_file_names_are_rejected(tmp_path):
    (tmp_path / "recordings").mkdir()
    wavfile.write(tmp_path / "recordings" / "hello.wav", 8000, np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="hello.wav: not an FSDD file name"):
        FSDD("train", tmp_path, encoder=SMALL)


def _audio_tree(root, lists: bool):
    rng = np.random.default_rng(0)
    names = []
    for label in ("left", "right", "_background_noise_"):
        (root / label).mkdir(parents=True)
        for k in range(10):
            name = f"spk{k % 5}_nohash_{k}.wav"
            wavfile.write(root / label / name, 16000, (rng.normal(0, 0.2, 1600) * 20000).astype(np.int16))
            names.append(f"{label}/{name}")
    if lists:
        (root / "validation_list.txt").write_text("left/spk0_nohash_0.wav\nright/spk1_nohash_1.wav\n")
        (root / "testing_list.txt").write_text("left/spk2_nohash_2.wav\nright/spk3_nohash_3.wav\nright/spk4_nohash_4.wav\n")


def test_audio_folder_with_speech_commands_lists(tmp_path):
    _audio_tree(tmp_path / "gsc", lists=True)
    parts = {s: AudioFolder(tmp_path / "gsc", s, encoder=SMALL, progress=False) for s in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [15, 2, 3]
    assert parts["train"].class_names == ["left", "right"]  # _background_noise_ skipped
    assert parts["test"].labels.tolist() == [0, 1, 1]
    assert parts["train"].speakers is not None


def test_audio_folder_without_lists_carves_splits(tmp_path):
    _audio_tree(tmp_path / "plain", lists=False)
    splits = load_splits("audio_folder", root=tmp_path / "plain", channels=8, sample_rate=8000,
                         valid_fraction=0.2, test_fraction=0.2, progress=False)
    sizes = [len(splits.train), len(splits.valid), len(splits.test)]
    assert sizes == [12, 4, 4] and splits.classes == 2
    indices = [set(s.indices) for s in (splits.train, splits.valid, splits.test)]
    assert not (indices[0] & indices[1] or indices[0] & indices[2] or indices[1] & indices[2])
