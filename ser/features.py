"""The feature sets: one table (size, version, parts, parameters, computation).

Adding a feature set is one entry in :data:`SETS`: a cached set has a ``compute`` function
(an :class:`Utterance` -> a vector of ``dim`` values), a composite set lists its ``parts``
(cached sets, concatenated in that order, never computed again). Everything else (the
``--feature`` choices and help, the per-file cache, the ``.joblib`` files, the model sidecars)
is derived from the table.

The computations are numpy alone, built from :mod:`ser.dsp` (each the librosa 0.11 / scipy
1.17 call it replaces); tests/test_features_numpy.py checks every set against librosa on real
and synthetic audio.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ser import encoder as byols_encoder  # the BYOL-S encoder's weights and feature set
from ser import frontend
from ser.dsp import (  # the numpy signal processing the sets are built from
    chroma_stft,
    delta,
    frame,
    log_mel,
    mfcc,
    N_CHROMA,
    N_CONTRAST_BANDS,
    N_MFCC,
    spectral_contrast,
    stft_magnitude,
    trim,
)
from ser.audio import (
    HOP_LENGTH,
    MIN_SAMPLES,
    N_FFT,
    SAMPLE_RATE,
    AudioError,
    check_samples,
    resample,
)
from ser.encoders import Encoder, embed, whisper
from ser.encoders.byols import BYOLSEncoder

STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")
# "stats" frames: MFCC 40 + deltas + delta-deltas, chroma 12, contrast 7, RMS, ZCR, spectral
# centroid, bandwidth, roll-off, flatness; each pooled by STATS over the frames
STATS_FRAME_DIM = 3 * N_MFCC + N_CHROMA + (N_CONTRAST_BANDS + 1) + 6
FEATURE_PARAMS = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                  "n_mfcc": N_MFCC, "n_chroma": N_CHROMA, "n_contrast_bands": N_CONTRAST_BANDS,
                  "resampler": "soxr_hq", "pooling": "mean"}


# --------------------------------------------------------------------------------------------
# One utterance
# --------------------------------------------------------------------------------------------
class Utterance:
    """One utterance being featurised: its audio and the work its sets share (one STFT, one
    MFCC, chroma and contrast matrix, reused by ``stats`` when trimming leaves it whole)."""

    def __init__(self, y: np.ndarray, sr: int):
        self.y, self.sr = y, sr

    @functools.cached_property
    def magnitude(self) -> np.ndarray:
        """|STFT|, shape (1 + N_FFT // 2, n_frames), float32."""
        return stft_magnitude(self.y)

    @functools.cached_property
    def power(self) -> np.ndarray:
        return self.magnitude ** 2

    @functools.cached_property
    def mfcc(self) -> np.ndarray:
        """MFCC frames, shape (N_MFCC, n_frames), float32."""
        return mfcc(log_mel(self.power, self.sr), n_mfcc=N_MFCC)

    @functools.cached_property
    def chroma(self) -> np.ndarray:
        return chroma_stft(self.magnitude, self.sr, n_chroma=N_CHROMA)

    @functools.cached_property
    def contrast(self) -> np.ndarray:
        return spectral_contrast(self.magnitude, self.sr, n_bands=N_CONTRAST_BANDS)

    @functools.cached_property
    def speech(self) -> frontend.Speech:
        """The utterance through the learned sets' speech front end (:mod:`ser.frontend`):
        16 kHz, loudness-normalised, with its speech frames."""
        return frontend.speech(self.y, self.sr)

    @functools.cached_property
    def trimmed(self) -> "Utterance":
        """The utterance with its leading and trailing silence cut (:func:`trim`), or itself
        when nothing is cut or what is left is shorter than :data:`MIN_SAMPLES`."""
        yt = trim(self.y)
        if len(yt) < MIN_SAMPLES or len(yt) == len(self.y):
            return self
        return Utterance(yt, self.sr)


@dataclass(frozen=True)
class FeatureSet:
    """One entry of :data:`SETS`."""
    name: str
    dim: int
    version: int                 # bump when the code changes what the set computes
    help: str                    # a few words for --help
    compute: Callable[[Utterance], np.ndarray] | None = None   # cached sets
    parts: tuple[str, ...] = ()  # composite sets: the cached sets concatenated, in order
    params: dict = field(default_factory=lambda: FEATURE_PARAMS)  # what defines its values
    ready: Callable[[], None] | None = None   # checks (or fetches) what compute needs, once
                                 # (a pretrained encoder's weights: encoder_set)


class _Pooled:
    """``compute`` of an encoder's set: the utterance's frames, pooled (picklable for the
    extraction's worker processes)."""

    def __init__(self, encoder: Encoder, pooling: str):
        self.encoder, self.pooling = encoder, pooling

    def __call__(self, u: Utterance) -> np.ndarray:
        return embed(self.encoder, u.y, sr=u.sr, method=self.pooling)


def encoder_set(name: str, version: int, help: str, encoder: Encoder, *, pooling: str,
                compute: Callable[[Utterance], np.ndarray] | None = None,
                params: dict | None = None) -> FeatureSet:
    """A table entry for a pretrained encoder (:class:`ser.encoders.Encoder`).

    Parameters
    ----------
    name, version, help : see :class:`FeatureSet`.
    encoder : Encoder
        Its frames of the utterance, pooled by ``pooling``, are the set's values (unless
        ``compute`` says otherwise); its parameters and the pooling define the set (caches,
        sidecars: a model trained on other weights is refused); its weights are checked
        once before an extraction (``ready``).
    pooling : str, keyword-only
        One of ``encoder.poolings``: the set's width.
    compute : callable, optional, keyword-only
        The set's own computation from the encoder's frames (Whisper's speech segment).
    params : dict, optional, keyword-only
        More parameters that define what ``compute`` does.
    """
    if pooling not in encoder.poolings:
        raise ValueError(f"feature set {name}: pooling must be one of "
                         f"{sorted(encoder.poolings)} for {encoder.name}; got {pooling!r}")
    return FeatureSet(name, encoder.poolings[pooling], version, help,
                      compute or _Pooled(encoder, pooling),
                      params={**encoder.params(), "pooling": pooling, **(params or {})},
                      ready=encoder.check_weights)


def _mfcc(u: Utterance) -> np.ndarray:
    return u.mfcc.mean(axis=1)


def _chroma(u: Utterance) -> np.ndarray:
    return u.chroma.mean(axis=1)


def _contrast(u: Utterance) -> np.ndarray:
    return u.contrast.mean(axis=1)


def _stats(u: Utterance) -> np.ndarray:
    """Pooled statistics of the utterance through the speech front end: band-limited to
    8 kHz, loudness-normalised, pooled over its speech frames only."""
    sp = u.speech
    v = Utterance(resample(sp.y, frontend.RATE, sr=u.sr), u.sr)
    n = v.mfcc.shape[1]
    return _pooled_stats(v, mask=sp.mask_at(n, HOP_LENGTH / u.sr))


def _whisper(u: Utterance) -> np.ndarray:
    """Whisper tiny.en's last encoder layer over the front end's audio from the first speech
    frame to the last (:meth:`ser.frontend.Speech.segment`: its attention sees the whole
    input, so silence added around the utterance would reach every frame), mean and std over
    its speech frames (an encoder frame is 20 ms, centred 5 ms after its first mel frame)."""
    sp = u.speech
    y, start = sp.segment()
    frames = whisper.default_encoder().frames(y, sr=frontend.RATE)
    mask = sp.mask_at(frames.shape[0], 2 * whisper.HOP / whisper.SAMPLE_RATE,
                      offset=start / frontend.RATE + 0.005)
    return whisper.pool(frames[mask], method=WHISPER_POOLING)


WHISPER_POOLING = "mean_std"


def _pooled_stats(u: Utterance, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Pooled statistics of frame features of the utterance ``u``, shape
    (FEATURE_DIMS["stats"],): MFCC, deltas and delta-deltas, chroma (with the clip's own tuning
    estimated, librosa's default: measured +0.04 restricted UAR across corpora over a fixed
    A440 grid), spectral contrast, RMS, ZCR, centroid, bandwidth, roll-off, flatness; over
    the frames of ``mask`` (bool, one per STFT frame) when given."""
    m = u.mfcc
    return pool_frames([m, delta(m, width=9), delta(m, width=9, order=2), u.chroma,
                        u.contrast, *spectral_descriptors(u.y, u.magnitude, u.power, u.sr)],
                       mask=mask)


def spectral_descriptors(y: np.ndarray, S: np.ndarray, power: np.ndarray, sr: int
                         ) -> list[np.ndarray]:
    """Frame descriptors from the magnitude ``S`` and ``power`` spectrograms (shape
    (1 + N_FFT // 2, frames)) and the signal: RMS, ZCR, log centroid, log bandwidth, log
    roll-off, log flatness, each of shape (1, frames)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)[:, None]
    mag_sum = np.maximum(S.sum(axis=0, keepdims=True), 1e-10)
    centroid = (freqs * S).sum(axis=0, keepdims=True) / mag_sum
    bandwidth = np.sqrt((S / mag_sum * (freqs - centroid) ** 2).sum(axis=0, keepdims=True))
    cum = np.cumsum(power, axis=0)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[-1:], axis=0), 0][None, :]
    rms = np.sqrt(power.mean(axis=0, keepdims=True) * 2 / N_FFT)
    flatness = np.exp(np.log(power + 1e-10).mean(axis=0, keepdims=True)) / \
        (power.mean(axis=0, keepdims=True) + 1e-10)
    padded = np.pad(y, N_FFT // 2, mode="edge")
    frames = frame(padded, N_FFT, HOP_LENGTH)
    zcr = np.mean(np.signbit(frames[1:]) != np.signbit(frames[:-1]), axis=0, keepdims=True)
    return [rms, zcr, np.log1p(centroid), np.log1p(bandwidth), np.log1p(rolloff),
            np.log10(flatness + 1e-10)]


def pool_frames(parts: list[np.ndarray], *, mask: np.ndarray | None = None) -> np.ndarray:
    """Frame features (each (rows, frames), cut to the shortest) pooled over time by
    :data:`STATS` (over the frames where ``mask`` is true, when given): shape
    (sum of rows * 7,), float32."""
    n = min(f.shape[1] for f in parts)
    frames = np.vstack([f[:, :n] for f in parts])
    if mask is not None:
        frames = frames[:, np.asarray(mask[:n], bool)]
    p10, p50, p90 = np.percentile(frames, [10, 50, 90], axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), frames.min(axis=1),
                           frames.max(axis=1), p10, p50, p90]).astype(np.float32)


def _table(*sets: FeatureSet) -> dict[str, FeatureSet]:
    out: dict[str, FeatureSet] = {}
    for s in sets:
        if s.parts:        # a composite: its size and needs come from its parts
            bad = [p for p in s.parts if p not in out or out[p].parts]
            if bad:
                raise ValueError(f"feature set {s.name}: parts {bad} are not cached sets "
                                 f"listed before it")
            s = FeatureSet(s.name, sum(out[p].dim for p in s.parts), s.version, s.help,
                           parts=s.parts, params=s.params)
        elif s.compute is not None and s.dim <= 0:
            raise ValueError(f"feature set {s.name}: a computed set needs its dim")
        out[s.name] = s
    return out


# versions: mfcc 2, combined 2, stats 6, stats_byols 2 since the numpy implementation (issue 20):
# its DCT is a float64 product rounded to float32 where scipy's ran in float32, which moves the
# MFCCs by 1-2 float32 ulps; chroma and contrast are bit-identical to librosa's, so unchanged
SETS: dict[str, FeatureSet] = _table(
    FeatureSet("mfcc", N_MFCC, 2, "MFCC means over time", _mfcc),
    FeatureSet("chroma", N_CHROMA, 1, "chroma means", _chroma),
    FeatureSet("contrast", N_CONTRAST_BANDS + 1, 1, "spectral contrast means", _contrast),
    FeatureSet("combined", 0, 2, "the three above", parts=("mfcc", "chroma", "contrast")),
    FeatureSet("stats", STATS_FRAME_DIM * len(STATS), 7, "pooled statistics", _stats,
               params={**FEATURE_PARAMS, "speech_frontend": frontend.PARAMS}),
    encoder_set("byols", byols_encoder.VERSION, "the BYOL-S encoder", BYOLSEncoder(),
                pooling=byols_encoder.POOLING),
    FeatureSet("stats_byols", 0, 3, "stats and byols", parts=("stats", "byols")),
    encoder_set("whisper", 2, "Whisper tiny.en's encoder", whisper.default_encoder(),
                pooling=WHISPER_POOLING, compute=_whisper,
                params={"speech_frontend": frontend.PARAMS, "span_margin": frontend.SPAN_MARGIN}),
    FeatureSet("stats_whisper", 0, 2, "stats and whisper", parts=("stats", "whisper")),
    FeatureSet("stats_byols_whisper", 0, 2, "stats, byols and whisper",
               parts=("stats", "byols", "whisper")),
)
"""Every feature set, by name, in the order of ``--feature all``."""

# views of the table
FEATURE_SETS = tuple(SETS)
CACHED_FEATURES = tuple(n for n, s in SETS.items() if not s.parts)   # computed, cached per file
COMPOSITE_SETS = {n: s.parts for n, s in SETS.items() if s.parts}
FEATURE_DIMS = {n: s.dim for n, s in SETS.items()}
FEATURE_VERSIONS = {n: s.version for n, s in SETS.items()}


def describe_sets() -> str:
    """``mfcc (MFCC means over time, 40), ...``: the table for --help."""
    return ", ".join(f"{s.name} ({s.help}, {s.dim})" for s in SETS.values())


def parts_of(feature: str) -> tuple[str, ...]:
    """The cached sets a feature set is made of: its parts if composite, else itself."""
    return COMPOSITE_SETS.get(feature, (feature,))


def needs_encoder(feature: str) -> bool:
    """Whether the set needs a pretrained encoder's weights (a part with a ``ready`` check:
    :func:`encoder_set`)."""
    return feature in SETS and any(SETS[p].ready for p in parts_of(feature))


def make_ready(feature_sets) -> None:
    """Check (or fetch) once what the sets' computations need (an encoder's weights), so that
    a missing file is one line before the work rather than an error per file."""
    need = {p for f in feature_sets for p in parts_of(f)}
    for p in sorted(need):
        if SETS[p].ready is not None:
            SETS[p].ready()


def feature_params(feature: str) -> dict:
    """Parameters that define a feature set (stored in caches and model sidecars).

    A composite set whose parts share their parameters (``combined``) has them flat, as a
    cached set; one whose parts differ (``stats_byols``) lists each part's under ``parts``.
    """
    if feature not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature!r} (choose from {', '.join(FEATURE_SETS)})")
    head = {"feature": feature, "dim": FEATURE_DIMS[feature], "version": FEATURE_VERSIONS[feature]}
    parts = parts_of(feature)
    own = [SETS[p].params for p in parts]
    if all(o == own[0] for o in own):
        return {**head, **own[0]}
    return {**head, "parts": {p: feature_params(p) for p in parts}}


def params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def extract_features(y: np.ndarray, *, sr: int = SAMPLE_RATE,
                     sets: tuple[str, ...] = ("mfcc",)) -> dict[str, np.ndarray]:
    """Feature vectors of one utterance, computing the STFT once.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``sr`` (from :func:`ser.audio.load_audio`).
    sr : int, keyword-only
    sets : tuple of str, keyword-only
        Any of :data:`FEATURE_SETS` (see :data:`SETS`).

    Returns
    -------
    dict
        name -> np.ndarray of shape (FEATURE_DIMS[name],), float32, all finite.
    """
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown} (choose from {FEATURE_SETS})")
    check_samples(y)
    need = {p for s in sets for p in parts_of(s)}
    u = Utterance(np.asarray(y, dtype=np.float32), sr)
    out = {name: SETS[name].compute(u) for name in CACHED_FEATURES if name in need}
    result = {}
    for s in sets:
        v = np.asarray(set_vector(s, out.__getitem__), dtype=np.float32)
        if not np.all(np.isfinite(v)):
            raise AudioError("features are not finite")
        result[s] = v
    return result


def set_vector(feature: str, base) -> np.ndarray:
    """One file's vector of ``feature`` from its base-set vectors (``base(name)``): a
    composite set is the concatenation of its parts (:data:`COMPOSITE_SETS`)."""
    if feature in COMPOSITE_SETS:
        return np.concatenate([base(b) for b in COMPOSITE_SETS[feature]])
    return base(feature)
