"""The speech front end of the learned sets (ser/frontend.py): known answers on synthetic
signals, and the invariances it exists for, on a real clip."""
from __future__ import annotations

import numpy as np
import pytest

from ser import audio, features, frontend

SR = audio.SAMPLE_RATE


def voice(seconds=2.0, f0=140.0, sr=SR, amp=0.2):
    """A vowel-like harmonic tone with a syllable envelope (4 Hz)."""
    t = np.arange(int(sr * seconds)) / sr
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
    return (amp * env * y / np.abs(y).max()).astype(np.float32)


def test_loudness_is_the_target_on_the_active_speech_whatever_the_gain():
    y = voice()
    for gain_db in (-30.0, -6.0, 0.0, 6.0):
        sp = frontend.speech(y * np.float32(10 ** (gain_db / 20)), SR)
        lv = frontend.frame_levels(sp.y)
        lv = lv[lv >= lv.max() - frontend.ACTIVE_RANGE_DB]
        rms_db = 10 * np.log10(np.mean(10 ** (lv / 10)))
        assert rms_db == pytest.approx(frontend.TARGET_DBFS, abs=0.05)
        assert sp.y.dtype == np.float32 and len(sp.y) == int(np.ceil(len(y) * 16000 / SR))


def test_silence_and_a_noise_floor_around_the_speech_are_not_speech():
    rng = np.random.default_rng(0)
    y = voice()
    pad = np.zeros(SR, np.float32)
    noisy = np.concatenate([pad, y, pad]) + np.float32(10 ** (-60 / 20)) * rng.standard_normal(
        3 * SR + len(y) - SR).astype(np.float32)[:len(y) + 2 * SR]
    sp = frontend.speech(noisy, SR)
    t = np.arange(len(sp.speech)) * frontend.HOP / frontend.RATE
    assert not sp.speech[(t < 0.95) | (t > 1.05 + len(y) / SR)].any()      # the padding
    assert sp.speech[(t > 1.1) & (t < 0.9 + len(y) / SR)].mean() > 0.9     # the voice
    # the same voice without the padding gets the same gain (within 0.2 dB)
    assert sp.gain_db == pytest.approx(frontend.speech(y, SR).gain_db, abs=0.2)


def test_nothing_above_8_khz_reaches_the_learned_sets():
    y = voice()
    t = np.arange(len(y)) / SR
    hiss = (0.05 * np.sin(2 * np.pi * 9500 * t) * np.hanning(len(y))).astype(np.float32)
    a, b = frontend.speech(y, SR), frontend.speech(y + hiss, SR)
    assert a.gain_db == pytest.approx(b.gain_db, abs=1e-4)
    assert np.array_equal(a.speech, b.speech)
    np.testing.assert_allclose(a.y, b.y, atol=1e-6)       # what the learned sets are fed


def test_mask_on_another_grid_and_an_all_one_level_clip():
    sp = frontend.Speech(np.zeros(16000, np.float32), np.array([False] * 50 + [True] * 51), 0.0)
    m = sp.mask_at(20, 0.05)                  # 50 ms frames: the second half is speech
    assert m.tolist() == [False] * 10 + [True] * 10
    # frames centred more than a hop past the clip's end are not speech
    assert sp.mask_at(4, 0.01, offset=0.99).tolist() == [True, True, True, False]
    flat = frontend.Speech(np.zeros(160, np.float32), np.zeros(2, bool), 0.0)
    assert flat.mask_at(3, 0.01).all()        # nothing is speech: every frame is taken


def test_segment_is_the_speech_with_its_margin_whatever_the_silence_around_it():
    y = voice(seconds=1.5)
    segs = {}
    for lead in (0.0, 0.1, 1.0):
        z = np.concatenate([np.zeros(int(lead * SR), np.float32), y, np.zeros(SR // 2, np.float32)])
        sp = frontend.speech(z, SR)
        seg, start = sp.segment()
        # the voice lies in [lead, lead + 1.5] s; the segment adds the margin and half a frame,
        # zero-padded where the clip has less
        half = frontend.FRAME / 2 / frontend.RATE
        assert start / frontend.RATE == pytest.approx(lead - frontend.SPAN_MARGIN - half, abs=0.03)
        assert len(seg) / frontend.RATE == pytest.approx(1.5 + 2 * (frontend.SPAN_MARGIN + half),
                                                         abs=0.03)
        segs[lead] = seg
    # the same samples whatever silence was added before the voice; with none, within the
    # frame that straddles the clip's start
    assert len(segs[0.1]) == len(segs[1.0])
    np.testing.assert_allclose(segs[0.1], segs[1.0], atol=1e-4)
    assert abs(len(segs[0.0]) - len(segs[1.0])) <= frontend.HOP
    flat = frontend.Speech(np.ones(320, np.float32), np.zeros(3, bool), 0.0)
    assert flat.segment()[1] == 0 and len(flat.segment()[0]) == 320     # nothing to cut to


def test_the_stats_of_a_real_clip_hold_under_the_recording_chain(shared_data):
    """16 kHz, gain and padding with digital silence move a real clip's stats vector far less
    than another utterance of the same speaker does (distances in units of the spread of
    that speaker's utterances)."""
    folder = shared_data / "ravdess_speech/Actor_05"
    clips = [audio.load_audio(f) for f in sorted(folder.glob("*.flac"))[:12]]
    stats = lambda z: features.extract_features(z, sets=("stats",))["stats"]   # noqa: E731
    V = np.stack([stats(z) for z in clips])
    scale = V.std(axis=0) + 1e-6
    y, base = clips[0], V[0]
    between = np.median(np.linalg.norm((V[1:] - base) / scale, axis=1))
    changes = {
        "16 kHz": audio.resample(audio.resample(y, SR, sr=16000), 16000),
        "-12 dB": y * np.float32(10 ** (-12 / 20)),
        "+6 dB": y * np.float32(2.0),
        "padded": np.concatenate([np.zeros(SR, np.float32), y, np.zeros(SR, np.float32)]),
    }
    for name, z in changes.items():
        d = np.linalg.norm((stats(z) - base) / scale)
        assert d < 0.25 * between, (name, d, between)
