"""Tests of ser/byols.py: the BYOL-S checkpoint read without PyTorch, its front end, the numpy
encoder and the Keras builder against the reference pair, and fetching from a local server.

Real files only: the checkpoint and reference in ../shared/models (tests that need them skip
when the folder is absent), checkpoints crafted here as real zips, and a real HTTP server on
127.0.0.1 (test_download.py's mirror).
"""
from __future__ import annotations

import collections
import hashlib
import os
import pickle
import pickletools
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ser import byols
from ser.byols import CheckpointError, FetchError
from test_download import mirror  # noqa: F401  (the local HTTP server fixture)

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
CKPT = MODELS / "byols_default512.pth"
REFERENCE = MODELS / "byols_reference.npz"
needs_models = pytest.mark.skipif(not (CKPT.is_file() and REFERENCE.is_file()),
                                  reason=f"BYOL-S checkpoint and reference not found in {MODELS}")
SERVED = "/models/byols_default512.pth"


@pytest.fixture(scope="module")
def state():
    if not CKPT.is_file():
        pytest.skip(f"BYOL-S checkpoint not found in {MODELS}")
    return byols.read_state_dict(CKPT)


@pytest.fixture(scope="module")
def ref():
    if not REFERENCE.is_file():
        pytest.skip(f"BYOL-S reference not found in {MODELS}")
    with np.load(REFERENCE, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def encoder(state):
    return byols.Encoder(state)


def ref_input(ref) -> np.ndarray:
    """The reference's encoder input: its log-mel normalised with its own two scalars."""
    mean, std = ref["norm"]
    return ((ref["logmel"] - mean) / std).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Reading the checkpoint
# --------------------------------------------------------------------------------------------
@needs_models
def test_constants_describe_the_shared_file():
    assert CKPT.stat().st_size == byols.SIZE
    assert hashlib.sha256(CKPT.read_bytes()).hexdigest() == byols.SHA256
    assert byols.URL.startswith("https://github.com/Neclow/SERAB/raw/"
                                "cc0ebd74014c19ce4fad752afe5dfd374fc7fdb2/")
    assert "MIT" in byols.LICENCE


def test_real_checkpoint_keys_and_shapes(state):
    assert set(state) == set(byols.EXPECTED_SHAPES) | set(byols.OPTIONAL_KEYS)
    for key, shape in byols.EXPECTED_SHAPES.items():
        assert state[key].shape == shape, key
        assert state[key].dtype == np.float32, key
        assert state[key].flags.c_contiguous
    assert state["features.0.weight"].shape == (64, 1, 3, 3)
    assert state["fc.0.weight"].shape == (512, 512)
    for key in byols.OPTIONAL_KEYS:
        assert state[key].shape == () and state[key].dtype == np.int64
    assert sum(v.size for k, v in state.items() if k in byols.EXPECTED_SHAPES) == 600_576
    assert np.all(state["features.1.running_var"] > 0)


def real_members() -> dict[str, bytes]:
    with zipfile.ZipFile(CKPT) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


class SystemCall:
    """Unpickling this runs a shell command (os.system), as a malicious checkpoint would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@needs_models
def test_checkpoint_with_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(collections.OrderedDict(
        [("features.0.weight", SystemCall(f"touch {marker}"))]), protocol=2)
    # The payload is live: a plain unpickler runs it.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(SystemCall(f"touch {control}"), protocol=2))
    assert control.exists()

    members = real_members()
    members["archive/data.pkl"] = payload
    evil = write_zip(tmp_path / "evil.pth", members)
    with pytest.raises(CheckpointError) as e:
        byols.read_state_dict(evil)
    msg = str(e.value)
    assert str(evil) in msg and "refused global" in msg and "system" in msg
    assert not marker.exists()


def test_non_zip_and_zip_without_data_pkl_are_refused(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a zip archive") as e:
        byols.read_state_dict(text)
    assert str(text) in str(e.value)

    other = write_zip(tmp_path / "other.pth", {"readme.txt": b"hello", "data/0": b"\0" * 8})
    with pytest.raises(CheckpointError, match="no data.pkl") as e:
        byols.read_state_dict(other)
    assert str(other) in str(e.value)

    with pytest.raises(CheckpointError, match="not found"):
        byols.read_state_dict(tmp_path / "missing.pth")


@needs_models
def test_missing_storage_is_refused(tmp_path):
    members = real_members()
    del members["archive/data/7"]                 # features.4.weight's storage
    broken = write_zip(tmp_path / "broken.pth", members)
    with pytest.raises(CheckpointError, match=r"storage key '7' is missing") as e:
        byols.read_state_dict(broken)
    assert str(broken) in str(e.value)

    members = real_members()
    members["archive/data/7"] = members["archive/data/7"][:1000]
    short = write_zip(tmp_path / "short.pth", members)
    with pytest.raises(CheckpointError, match=r"holds 1000 bytes"):
        byols.read_state_dict(short)


def edited_pickle(pkl: bytes, key: str, new_dim: int) -> bytes:
    """data.pkl with the first dimension of ``key``'s shape tuple (a BININT1) replaced."""
    ops = list(pickletools.genops(pkl))
    at = next(i for i, (op, arg, _) in enumerate(ops) if op.name == "BINUNICODE" and arg == key)
    # after the key: the storage tuple, BINPERSID, the offset, then the shape's first int
    persid = next(i for i in range(at, len(ops)) if ops[i][0].name == "BINPERSID")
    dim = next(i for i in range(persid + 2, len(ops)) if ops[i][0].name == "BININT1")
    pos = ops[dim][2]
    return pkl[:pos + 1] + bytes([new_dim]) + pkl[pos + 2:]


@needs_models
def test_wrong_shape_and_wrong_keys_are_refused(tmp_path):
    members = real_members()
    members["archive/data.pkl"] = edited_pickle(members["archive/data.pkl"],
                                                "features.5.bias", 32)
    wrong = write_zip(tmp_path / "wrong_shape.pth", members)
    with pytest.raises(CheckpointError,
                       match=r"features\.5\.bias has shape \(32,\), the network needs \(64,\)"):
        byols.read_state_dict(wrong)

    members = real_members()
    members["archive/data.pkl"] = members["archive/data.pkl"].replace(b"fc.3.bias", b"fc.3.bia_")
    renamed = write_zip(tmp_path / "renamed.pth", members)
    with pytest.raises(CheckpointError, match=r"missing keys \['fc\.3\.bias'\]"):
        byols.read_state_dict(renamed)


# --------------------------------------------------------------------------------------------
# Front end
# --------------------------------------------------------------------------------------------
def test_log_mel_known_answer_1khz_sine():
    sr = byols.SAMPLE_RATE
    t = np.arange(sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    lm = byols.log_mel(y, sr=sr)
    assert lm.shape == (64, 1 + sr // byols.HOP) and lm.dtype == np.float32
    # band centres from the HTK formula, independently of librosa
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)              # noqa: E731
    centres = 700.0 * (10 ** (np.linspace(mel(60.0), mel(7800.0), 66)[1:-1] / 2595.0) - 1.0)
    np.testing.assert_allclose(byols.mel_centres(), centres, rtol=1e-9)
    assert int(np.argmax(lm.mean(axis=1))) == int(np.argmin(np.abs(centres - 1000.0)))


def test_mel_filterbank_is_librosas_bit_for_bit():
    """The numpy filterbank (no librosa at prediction time) = librosa's HTK filters."""
    from ser import numba_cache
    librosa = numba_cache.librosa()
    want = librosa.filters.mel(sr=byols.SAMPLE_RATE, n_fft=byols.N_FFT, n_mels=byols.N_MELS,
                               fmin=byols.FMIN, fmax=byols.FMAX, htk=True, norm=None,
                               dtype=np.float32)
    fb = byols.mel_filterbank()
    assert fb.shape == (64, 513) and fb.dtype == np.float32 and not fb.flags.writeable
    np.testing.assert_array_equal(fb, want)
    np.testing.assert_array_equal(
        byols.mel_centres(),
        librosa.mel_frequencies(66, fmin=byols.FMIN, fmax=byols.FMAX, htk=True)[1:-1])


def test_log_mel_checks_its_input():
    y = np.zeros(16000, np.float32)
    with pytest.raises(ValueError, match="sr must be 16000"):
        byols.log_mel(y, sr=22050)
    with pytest.raises(ValueError, match="expected mono audio"):
        byols.log_mel(np.zeros((2, 16000)))
    with pytest.raises(ValueError, match="NaN"):
        byols.log_mel(np.full(16000, np.nan))
    with pytest.raises(ValueError, match=f"at least {byols.MIN_SAMPLES} samples"):
        byols.log_mel(y[:1000])
    assert byols.log_mel(y[:byols.MIN_SAMPLES]).shape == (64, byols.MIN_FRAMES)


@needs_models
def test_log_mel_matches_the_reference(ref, shared_data):
    import ser.audio
    path = shared_data / str(ref["source"])
    y = ser.audio.load_audio(path, sr=16000)
    lm = byols.log_mel(y, sr=16000)
    assert lm.shape == ref["logmel"].shape == (64, 411)
    # measured 9.5e-7 (one float32 ulp at |x| ~ 10); a float32 FFT would give ~1.3e-5
    np.testing.assert_allclose(lm, ref["logmel"], rtol=0, atol=1e-5)


@needs_models
def test_normalisation_scalars_are_the_references_rounded(ref):
    np.testing.assert_allclose([byols.NORM_MEAN, byols.NORM_STD], ref["norm"], rtol=0, atol=5e-5)


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
@needs_models
def test_numpy_encoder_matches_the_reference_frames(encoder, ref):
    frames = encoder.frames(ref_input(ref))
    assert frames.shape == (51, 512) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, ref["frames"], rtol=0, atol=1e-4)   # measured 1.1e-5


@needs_models
def test_pool_matches_the_reference(ref):
    pooled = byols.pool(ref["frames"], method="maxmean_std")
    assert pooled.shape == (1024,) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, ref["pooled"], rtol=0, atol=1e-5)
    maxmean = byols.pool(ref["frames"], method="maxmean")
    np.testing.assert_allclose(maxmean, ref["pooled"][:512], rtol=0, atol=1e-5)
    assert byols.pool(ref["frames"], method="mean_std").shape == (1024,)
    with pytest.raises(ValueError, match="method must be one of"):
        byols.pool(ref["frames"], method="median")
    with pytest.raises(ValueError, match="frames must have shape"):
        byols.pool(ref["frames"][:, :100])


@needs_models
def test_embed_end_to_end_matches_the_reference(encoder, ref, shared_data):
    import ser.audio
    path = shared_data / str(ref["source"])
    y, sr = ser.audio.load_audio(path, sr=22050), 22050        # the file's own rate
    vec = byols.embed(y, sr=sr, encoder=encoder)
    assert vec.shape == (1024,) and vec.dtype == np.float32
    # measured 1.2e-4: NORM_MEAN / NORM_STD are the README's 4-decimal roundings of the
    # reference's -8.044472 / 5.2735147 (with the reference's own scalars: 1.1e-5)
    np.testing.assert_allclose(vec, ref["pooled"], rtol=0, atol=5e-4)


@needs_models
def test_batched_frames_equal_one_clip_at_a_time(encoder, ref):
    x = ref_input(ref)
    clips = [x[:, :n] for n in (411, 8, 9, 57, 200, 23, 411, 101)]
    singles = [encoder.frames(c) for c in clips]
    for max_frames in (1, 512, 10_000):
        batched = encoder.frames_batch(clips, max_frames=max_frames)
        assert [b.shape for b in batched] == [s.shape for s in singles]
        for s, b in zip(singles, batched):
            np.testing.assert_allclose(b, s, rtol=0, atol=1e-5)
    assert encoder.frames_batch([]) == []


@needs_models
def test_encoder_checks_its_input(encoder, state):
    with pytest.raises(ValueError, match=r"must have shape \(64, T\)"):
        encoder.frames(np.zeros((40, 100), np.float32))
    with pytest.raises(ValueError, match="at least 8 frames"):
        encoder.frames(np.zeros((64, 7), np.float32))
    with pytest.raises(ValueError, match=r"logmels\[1\] contains NaN"):
        encoder.frames_batch([np.zeros((64, 20)), np.full((64, 20), np.nan)])
    bad = dict(state)
    bad["fc.0.weight"] = bad["fc.0.weight"].T[:100]
    with pytest.raises(CheckpointError, match=r"fc\.0\.weight has shape \(100, 512\)"):
        byols.Encoder(bad)


@needs_models
def test_keras_encoder_matches_the_reference_frames(state, ref, encoder):
    model = byols.keras_encoder(state)
    x = ref_input(ref)
    out = np.asarray(model(x[None, :, :, None], training=False))     # (batch, 64 mel, T, 1)
    assert out.shape == (1, 51, 512)
    np.testing.assert_allclose(out[0], ref["frames"], rtol=0, atol=1e-4)   # measured 0.0
    odd = x[:, :203]                                   # another length, floors in every pool
    out = np.asarray(model(odd[None, :, :, None], training=False))
    np.testing.assert_allclose(out[0], encoder.frames(odd), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------
@pytest.fixture
def served(mirror, monkeypatch):   # noqa: F811
    """The local mirror serving a copy of the checkpoint; SER_BYOLS_URL points at it."""
    if not CKPT.is_file():
        pytest.skip(f"BYOL-S checkpoint not found in {MODELS}")
    mirror.blobs[SERVED] = CKPT.read_bytes()
    monkeypatch.delenv(byols.ENV_PATH, raising=False)
    monkeypatch.setenv(byols.ENV_URL, mirror.url + SERVED)
    return mirror


def requests_for(m, path: str = SERVED) -> int:
    with m.lock:
        return sum(1 for p, _ in m.log if p == path)


def test_fetch_downloads_once_then_uses_the_cache(served, tmp_path):
    cache = tmp_path / "cache"
    path = byols.fetch_checkpoint(cache_dir=cache)
    assert path == cache / byols.FNAME
    assert byols.sha256_of(path) == byols.SHA256
    assert requests_for(served) == 1
    assert byols.fetch_checkpoint(cache_dir=cache) == path
    assert requests_for(served) == 1
    assert set(byols.read_state_dict(path)) >= set(byols.EXPECTED_SHAPES)


def test_corrupted_download_fails_and_is_not_trusted_later(served, tmp_path):
    good = served.blobs[SERVED]
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    served.blobs[SERVED] = bytes(bad)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as e:
        byols.fetch_checkpoint(cache_dir=cache)
    msg = str(e.value)
    assert "\n" not in msg and served.url + SERVED in msg and byols.SHA256 in msg
    assert requests_for(served) == 1
    assert not cache.exists() or list(cache.iterdir()) == []     # nothing left, not even a temp

    # a damaged file under the cache name (say, copied there by hand) is downloaded again
    cache.mkdir(exist_ok=True)
    (cache / byols.FNAME).write_bytes(bytes(bad))
    served.blobs[SERVED] = good
    path = byols.fetch_checkpoint(cache_dir=cache)
    assert requests_for(served) == 2
    assert byols.sha256_of(path) == byols.SHA256


def test_fetch_network_errors_are_one_clear_line(served, tmp_path, monkeypatch):
    missing = served.url + "/models/nothing-here.pth"
    monkeypatch.setenv(byols.ENV_URL, missing)
    with pytest.raises(FetchError) as e:
        byols.fetch_checkpoint(cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and missing in str(e.value) and "404" in str(e.value)

    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/byols.pth"
    with pytest.raises(FetchError) as e:
        byols.fetch_checkpoint(url=closed, cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and closed in str(e.value)
    assert not (tmp_path / "cache" / byols.FNAME).exists()


def test_local_copy_is_checked_and_used_without_the_network(served, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"not the checkpoint")
    monkeypatch.setenv(byols.ENV_PATH, str(wrong))
    with pytest.raises(CheckpointError) as e:
        byols.fetch_checkpoint(cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert str(wrong) in msg and byols.SHA256 in msg
    assert hashlib.sha256(b"not the checkpoint").hexdigest() in msg

    copy = tmp_path / "copy.pth"
    shutil.copyfile(CKPT, copy)
    monkeypatch.setenv(byols.ENV_PATH, str(copy))
    assert byols.fetch_checkpoint(cache_dir=tmp_path / "cache") == copy
    assert byols.fetch_checkpoint(path=copy) == copy
    monkeypatch.delenv(byols.ENV_PATH)
    with pytest.raises(CheckpointError, match="not found"):
        byols.fetch_checkpoint(path=tmp_path / "absent.pth")
    assert requests_for(served) == 0
    assert not (tmp_path / "cache").exists()


def test_folder_name_inside_the_zip_does_not_matter(tmp_path, state):
    """The same members under another top folder (newer PyTorch names it after the file)."""
    members = {n.replace("archive/", "byols_default512/", 1): b
               for n, b in real_members().items()}
    renamed = write_zip(tmp_path / "renamed_folder.pth", members)
    other = byols.read_state_dict(renamed)
    assert set(other) == set(state)
    for k in state:
        assert np.array_equal(other[k], state[k])
