"""The numpy feature code (ser/features.py, ser/audio.resample) against librosa, the reference.

The reference below is the project's feature code as it was before issue 20 (``git show
HEAD~4:ser_common.py``: ``extract_features`` and ``_pooled_stats``, librosa 0.11 / scipy 1.17),
copied here: librosa is a test-time reference only. Checked on real files of every corpus and
format (skipped without ../shared/data) and on synthetic signals with known answers:

- resampling (soxr via ``ser.audio.resample``) is bit-identical to ``librosa.resample(...,
  res_type='soxr_hq')``; so are the STFT, the mel filterbank, log-mel, trim, delta, the tuning
  estimate, chroma and spectral contrast (the ``chroma`` and ``contrast`` sets are identical);
- the MFCC differs by float32 rounding only (a float64 DCT product rounded to float32, where
  scipy's DCT runs in float32): the sets that contain MFCCs agree within :data:`ATOL` /
  :data:`RTOL` (measured worst case on all 4836 corpus files + the 11 originals: 1.8e-4
  absolute (mfcc, combined; stats 1.2e-4), on values up to ~700, i.e. 1-3 float32 ulps; and
  2.2e-5 relative where |value| > 1);
- ``extract_features`` for every set (the encoder's too) imports none of librosa, scipy, numba,
  sklearn.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from ser import audio, dsp, features, frontend
from ser.features import extract_features

ROOT = Path(__file__).resolve().parents[1]
ATOL = 2e-4     # absolute, on MFCC values up to ~700 (worst seen on every real file: 1.8e-4)
RTOL = 3e-5     # relative part of np.allclose (worst seen 2.2e-5 where |value| > 1)
NUMPY_SETS = ("mfcc", "chroma", "contrast", "combined", "stats")
IDENTICAL_SETS = ("chroma", "contrast")          # no MFCC in them: bit-identical


# --------------------------------------------------------------------------------------------
# The reference: the project's code before issue 20, librosa throughout
# --------------------------------------------------------------------------------------------
def _librosa():
    from ser import numba_cache
    return numba_cache.librosa()


def ref_log_mel(power, sr):
    librosa = _librosa()
    return librosa.power_to_db(np.einsum("...ft,mf->...mt", power,
                                         librosa.filters.mel(sr=sr, n_fft=features.N_FFT),
                                         optimize=True))


def ref_pooled_stats(y, sr):
    """The ``stats`` set with librosa: the speech front end (ser.frontend, tested on its own in
    tests/test_frontend.py) gives the band-limited, normalised audio and its speech frames;
    the frame features and their pooling over those frames follow."""
    librosa = _librosa()
    N_FFT, HOP = features.N_FFT, features.HOP_LENGTH
    sp = frontend.speech(np.asarray(y, np.float32), sr)
    y = ref_resample(sp.y, frontend.RATE, sr)
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    power = S ** 2
    mfcc = librosa.feature.mfcc(S=ref_log_mel(power, sr), n_mfcc=features.N_MFCC)
    d1 = librosa.feature.delta(mfcc, width=9, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode="nearest")
    chroma = librosa.feature.chroma_stft(S=S, sr=sr, n_chroma=features.N_CHROMA)
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_bands=features.N_CONTRAST_BANDS)
    # the descriptors and the pooling were numpy in the librosa version too: shared
    return features.pool_frames([mfcc, d1, d2, chroma, contrast,
                                 *features.spectral_descriptors(y, S, power, sr)],
                                mask=sp.mask_at(S.shape[1], HOP / sr))


def ref_extract(y, sr=audio.SAMPLE_RATE, sets=NUMPY_SETS):
    """The old ``extract_features`` for the librosa-computed sets."""
    librosa = _librosa()
    y = np.asarray(y, dtype=np.float32)
    S = np.abs(librosa.stft(y, n_fft=features.N_FFT, hop_length=features.HOP_LENGTH))
    out = {"mfcc": librosa.feature.mfcc(S=ref_log_mel(S ** 2, sr),
                                        n_mfcc=features.N_MFCC).mean(axis=1),
           "chroma": librosa.feature.chroma_stft(S=S, sr=sr,
                                                 n_chroma=features.N_CHROMA).mean(axis=1),
           "contrast": librosa.feature.spectral_contrast(
               S=S, sr=sr, n_bands=features.N_CONTRAST_BANDS).mean(axis=1),
           "stats": ref_pooled_stats(y, sr)}
    out["combined"] = np.concatenate([out["mfcc"], out["chroma"], out["contrast"]])
    return {s: np.asarray(out[s], dtype=np.float32) for s in sets}


def ref_resample(y, orig_sr, sr):
    return _librosa().resample(np.asarray(y, np.float32), orig_sr=orig_sr, target_sr=sr,
                               res_type="soxr_hq")


# --------------------------------------------------------------------------------------------
def _check_sets(y, sr=audio.SAMPLE_RATE, where="signal"):
    got = extract_features(y, sr=sr, sets=NUMPY_SETS)
    want = ref_extract(y, sr)
    worst = {}
    for s in NUMPY_SETS:
        assert got[s].shape == want[s].shape == (features.FEATURE_DIMS[s],), (where, s)
        assert got[s].dtype == np.float32
        if s in IDENTICAL_SETS:
            assert np.array_equal(got[s], want[s]), f"{where}: {s} not bit-identical"
        else:
            np.testing.assert_allclose(got[s], want[s], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{where}: {s}")
        worst[s] = float(np.max(np.abs(got[s].astype(np.float64) - want[s])))
    return worst


def _real_files() -> list[Path]:
    files = []
    for corpus in ("ravdess_speech", "ravdess_song", "tess"):
        found = sorted((SHARED_DATA / corpus).rglob("*.flac"))
        files += found[:: max(1, len(found) // 12)]
    files += sorted((SHARED_DATA / "originals").rglob("*.wav"))   # 48/96 kHz, stereo, AIFF
    return files


@pytest.fixture(scope="module")
def real_files(shared_data):
    files = _real_files()
    if not files:
        pytest.skip(f"no audio files under {shared_data}")
    return files


def test_real_files_every_set_matches_librosa(real_files):
    import soundfile as sf
    worst = {}
    for p in real_files:
        y = audio.load_audio(p)
        for s, d in _check_sets(y, where=str(p)).items():
            worst[s] = max(worst.get(s, 0.0), d)
        # the primitives shared by the sets: bit-identical
        librosa = _librosa()
        S = np.abs(librosa.stft(y, n_fft=features.N_FFT, hop_length=features.HOP_LENGTH))
        assert np.array_equal(dsp.stft_magnitude(y), S), p
        assert np.array_equal(dsp.log_mel(S ** 2, audio.SAMPLE_RATE),
                              ref_log_mel(S ** 2, audio.SAMPLE_RATE)), p
        m = librosa.feature.mfcc(S=ref_log_mel(S ** 2, audio.SAMPLE_RATE), n_mfcc=40)
        assert np.array_equal(dsp.delta(m, 9),
                              librosa.feature.delta(m, width=9, mode="nearest")), p
        assert np.array_equal(dsp.delta(m, 9, 2),
                              librosa.feature.delta(m, width=9, order=2, mode="nearest")), p
        assert np.array_equal(dsp.trim(y), librosa.effects.trim(
            y, top_db=30, frame_length=features.N_FFT, hop_length=features.HOP_LENGTH)[0]), p
        assert dsp.estimate_tuning(S, audio.SAMPLE_RATE) == librosa.estimate_tuning(
            S=S, sr=audio.SAMPLE_RATE, bins_per_octave=12), p
        # resampling from the file's own rate, to the project's and to BYOL-S's 16 kHz
        raw, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
        raw = raw.mean(axis=1) if raw.shape[1] > 1 else raw[:, 0]
        for sr in (audio.SAMPLE_RATE, 16000):
            got, want = audio.resample(raw, file_sr, sr=sr), ref_resample(raw, file_sr, sr)
            assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want), (p, sr)
    print("worst |numpy - librosa| per set:", {s: f"{d:.2g}" for s, d in worst.items()})


def _tone(freq, seconds=1.5, sr=audio.SAMPLE_RATE, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# librosa (the reference) warns on a DC signal, where no pitch can be estimated; the numpy
# code answers the same without a warning
@pytest.mark.filterwarnings("ignore:Trying to estimate tuning from empty frequency set")
@pytest.mark.parametrize("kind", ["tone", "chirp", "noise", "silence_padded", "clicks",
                                  "short", "loud_dc"])
def test_synthetic_every_set_matches_librosa(kind):
    rng = np.random.default_rng(7)
    sr = audio.SAMPLE_RATE
    if kind == "tone":
        y = _tone(440.0)
    elif kind == "chirp":
        t = np.arange(2 * sr) / sr
        y = (0.3 * np.sin(2 * np.pi * (100 * t + 900 * t ** 2))).astype(np.float32)
    elif kind == "noise":
        y = (0.1 * rng.standard_normal(sr)).astype(np.float32)
    elif kind == "silence_padded":   # trim cuts both ends
        y = np.concatenate([np.zeros(sr // 2), _tone(220.0, 0.7),
                            np.zeros(sr)]).astype(np.float32)
    elif kind == "clicks":
        y = np.zeros(sr, np.float32)
        y[::2205] = 0.9
    elif kind == "short":            # one FFT frame: delta, trim at their edges
        y = (0.2 * rng.standard_normal(features.MIN_SAMPLES)).astype(np.float32)
    else:
        y = (0.5 + 0.01 * rng.standard_normal(sr)).astype(np.float32)
    _check_sets(y, where=kind)


def test_known_answers():
    sr = audio.SAMPLE_RATE
    # a pure A440 tone: chroma peaks at A (index 9, librosa's C-based order), tuning ~0
    y = _tone(440.0, seconds=2.0)
    v = extract_features(y, sets=("chroma", "mfcc", "contrast"))
    assert int(np.argmax(v["chroma"])) == 9 and v["chroma"].max() == pytest.approx(1.0, abs=0.05)
    S = dsp.stft_magnitude(y)
    assert abs(dsp.estimate_tuning(S, sr)) <= 0.02
    # a tone 30 cents sharp is estimated as such
    assert dsp.estimate_tuning(dsp.stft_magnitude(_tone(440 * 2 ** (0.3 / 12), 2.0)),
                                    sr) == pytest.approx(0.3, abs=0.02)
    # the STFT of a tone peaks at its bin, with the periodic Hann's amplitude n_fft/4
    k = int(round(440.0 * features.N_FFT / sr))
    frame_mid = S[:, S.shape[1] // 2]
    assert abs(int(np.argmax(frame_mid)) - k) <= 1
    # the DCT matrix is orthonormal (so the MFCC is scipy's DCT-II 'ortho')
    M = dsp._dct_matrix(128, 128)
    np.testing.assert_allclose(M @ M.T, np.eye(128), atol=1e-12)
    # delta of a ramp is its slope, delta-delta of a parabola its second derivative
    x = np.arange(50, dtype=np.float32)[None, :]
    np.testing.assert_allclose(dsp.delta(3 * x)[:, 4:-4], 3.0, rtol=1e-6)
    np.testing.assert_allclose(dsp.delta(x ** 2, order=2)[:, 4:-4], 2.0, rtol=1e-5)
    # trim cuts leading/trailing silence, keeping at most a window and a hop around the tone
    tone = _tone(300.0, 1.0)
    y2 = np.concatenate([np.zeros(sr), tone, np.zeros(sr)]).astype(np.float32)
    yt = dsp.trim(y2)
    assert len(tone) <= len(yt) <= len(tone) + 2 * (features.N_FFT // 2 + features.HOP_LENGTH)
    assert np.max(np.abs(yt)) == np.max(np.abs(y2))
    # resample: the length librosa gives, and a tone keeps its frequency
    r = audio.resample(_tone(1000.0, 1.0, sr=48000), 48000, sr=sr)
    assert r.shape == (int(np.ceil(48000 * sr / 48000)),) and r.dtype == np.float32
    spec = np.abs(np.fft.rfft(r))
    assert abs(np.argmax(spec) * sr / len(r) - 1000.0) < 2.0


def test_resample_bit_identical_synthetic():
    rng = np.random.default_rng(3)
    for orig in (8000, 16000, 24414, 44100, 48000, 96000):
        y = (0.3 * rng.standard_normal(orig + 123)).astype(np.float32)
        for sr in (16000, audio.SAMPLE_RATE):
            got, want = audio.resample(y, orig, sr=sr), ref_resample(y, orig, sr)
            assert np.array_equal(got, want), (orig, sr)
    y = _tone(100.0)
    assert audio.resample(y, audio.SAMPLE_RATE) is not None
    assert np.array_equal(audio.resample(y, audio.SAMPLE_RATE), y)


_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
import numpy as np
from ser.audio import load_audio, SAMPLE_RATE
from ser.features import extract_features
if {path!r}:
    y = load_audio({path!r})
else:
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(t.size)).astype(np.float32)
    from ser.audio import resample
    y = resample(resample(y, SAMPLE_RATE, sr=48000), 48000)
v = extract_features(y, sets=("mfcc", "stats", "chroma", "contrast", "combined", "byols",
                             "stats_byols"))
assert all(np.all(np.isfinite(x)) for x in v.values())
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("librosa", "scipy", "numba", "sklearn",
                                               "llvmlite", "tensorflow", "keras"))))
"""


def test_prediction_path_imports_no_librosa_scipy_numba():
    wav = sorted((SHARED_DATA / "originals").rglob("*.wav"))
    path = str(wav[0]) if wav else ""
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), path=path)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


# --------------------------------------------------------------------------------------------
# The 16-bit PCM WAV fast path of load_audio (issue 20): the same samples and the same errors
# as libsndfile's float read, which every other file still takes
# --------------------------------------------------------------------------------------------
def _load_both(path, monkeypatch, **kw):
    """load_audio's result (array or (exception type, message)) with and without the fast
    path, and whether the fast path took the file."""
    def run():
        try:
            return audio.load_audio(path, **kw)
        except audio.AudioError as e:
            return type(e), str(e)
    fast = run()
    took = audio._read_pcm16_wav(Path(path), None) is not None
    with monkeypatch.context() as m:
        m.setattr(audio, "_read_pcm16_wav", lambda p, s: None)
        slow = run()
    return fast, slow, took


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return a == b


def _wav_variants(tmp: Path, y: np.ndarray, sr: int) -> dict[str, bool]:
    """WAV files made from the int16 samples ``y``, each with whether the fast path should
    take it."""
    import struct

    import soundfile as sf
    made = {}

    def write(name, data, rate=sr, **kw):
        sf.write(str(tmp / name), data, rate, **kw)
    write("mono.wav", y, subtype="PCM_16"); made["mono.wav"] = True
    write("stereo.wav", np.stack([y, np.roll(y, 5) // 2], 1), subtype="PCM_16")
    made["stereo.wav"] = True
    write("three.wav", np.stack([y, y // 3, -y], 1), subtype="PCM_16"); made["three.wav"] = True
    write("r22050.wav", y, rate=22050, subtype="PCM_16"); made["r22050.wav"] = True
    write("wavex.wav", y, subtype="PCM_16", format="WAVEX"); made["wavex.wav"] = False
    write("pcm24.wav", y.astype(np.int32) << 8, subtype="PCM_24"); made["pcm24.wav"] = False
    write("float.wav", y / 32768.0, subtype="FLOAT"); made["float.wav"] = False
    raw = (tmp / "mono.wav").read_bytes()
    fmt, data = raw[12:36], raw[36:]

    def riff(body):
        return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
    extra = {"fllr.wav": (fmt + b"FLLR" + struct.pack("<I", 200) + bytes(200) + data, True),
             "list.wav": (fmt + b"LIST" + struct.pack("<I", 4) + b"INFO" + data, True),
             "oddchunk.wav": (fmt + b"junk" + struct.pack("<I", 3) + b"abc\0" + data, False)}
    for name, (body, fast) in extra.items():
        (tmp / name).write_bytes(riff(body)); made[name] = fast
    (tmp / "cut.wav").write_bytes(raw[:len(raw) // 2]); made["cut.wav"] = False
    (tmp / "cut_odd.wav").write_bytes(raw[:len(raw) // 2 + 1]); made["cut_odd.wav"] = False
    small = bytearray(raw); small[4:8] = struct.pack("<I", 1000)
    (tmp / "riff_small.wav").write_bytes(bytes(small)); made["riff_small.wav"] = False
    partial = bytearray(raw[:44]); partial[40:44] = struct.pack("<I", 101)
    (tmp / "partial_frame.wav").write_bytes(bytes(partial) + raw[44:145] + b"\0")
    made["partial_frame.wav"] = False
    empty = bytearray(raw[:44]); empty[40:44] = struct.pack("<I", 0); empty[4:8] = b"\x24\0\0\0"
    (tmp / "empty.wav").write_bytes(bytes(empty)); made["empty.wav"] = False
    write("short.wav", y[:500], subtype="PCM_16"); made["short.wav"] = True
    return made


def test_pcm16_fast_path_same_samples_and_errors(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    t = np.arange(int(1.3 * 48000)) / 48000
    y = np.clip(np.round(9000 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 800, t.size)),
                -32768, 32767).astype(np.int16)
    y[:4] = (-32768, 32767, 0, -1)
    for name, fast in _wav_variants(tmp_path, y, 48000).items():
        for kw in ({}, {"max_seconds": 1.0}, {"max_seconds": 5.0}, {"sr": 16000}):
            got, want, took = _load_both(tmp_path / name, monkeypatch, **kw)
            assert took == fast, name
            assert _same(got, want), (name, kw, got, want)


def test_pcm16_fast_path_real_wavs(real_files, monkeypatch):
    """The originals (48 kHz mono and stereo RAVDESS WAVs with FLLR/LIST/bext chunks, TESS
    WAVs, AIFF data named .wav) read the same with and without the fast path."""
    wavs = [p for p in real_files if p.suffix == ".wav"]
    taken = 0
    for p in wavs:
        got, want, took = _load_both(p, monkeypatch)
        taken += took
        assert _same(got, want), p
    assert taken >= len(wavs) - 2     # all but the two AIFF files
