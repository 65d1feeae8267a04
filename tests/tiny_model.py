"""A tiny real model for the prediction tests (the shipped model may not exist yet).

Input (40, 1) MFCC means -> Dense(8, softmax), trained for 150 full-batch steps on three real
RAVDESS speech files per emotion and saved with :func:`ser.checkpoint.save_model` and a complete
sidecar (normalisation from the training vectors). It fits its training files, so they give
confident, distinct predictions, which is what the tests need; it is not a useful classifier.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import ser.audio
import ser.checkpoint
import ser.console
import ser.corpora
import ser.features
import ser.paths

ACTORS = (1, 2, 3)          # RAVDESS speech actors used for training
STATEMENT_REPETITION = (1, 1)


def training_files(data: Path) -> list[Path]:
    """Three RAVDESS speech files per emotion (strong intensity where the emotion has it)."""
    files = []
    st, rep = STATEMENT_REPETITION
    for code in range(1, ser.corpora.N_CLASSES + 1):
        intensity = 1 if code == 1 else 2          # neutral has no strong intensity
        for actor in ACTORS:
            name = f"03-01-{code:02d}-{intensity:02d}-{st:02d}-{rep:02d}-{actor:02d}.flac"
            files.append(data / "ravdess_speech" / f"Actor_{actor:02d}" / name)
    return files


def build_tiny_model(dest_dir: Path, data: Path, *, name: str = "tiny.h5") -> Path:
    """Train and save the tiny model into ``dest_dir`` (reused when already there)."""
    dest = Path(dest_dir) / name
    if dest.exists() and ser.checkpoint.sidecar_path(dest).exists():
        return dest
    ser.console.quiet_tensorflow()
    import keras
    files = training_files(data)
    X = np.stack([ser.features.extract_features(ser.audio.load_audio(f))["mfcc"] for f in files])
    y = np.array([ser.corpora.parse_ravdess_name(f).label for f in files])
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    meta = {"labels": list(ser.corpora.EMOTIONS), "feature": "mfcc",
            "feature_params": ser.features.feature_params("mfcc"), "input_shape": [ser.features.N_MFCC, 1],
            "normalization": {"mean": mean.tolist(), "std": std.tolist()},
            "adaptation": "none", "model": "tiny-test-dense",
            "trained_on": [str(Path(f).name) for f in files], "protocol": "test fixture",
            "metrics": {}}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((ser.features.N_MFCC, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(ser.corpora.N_CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05),
                  loss="sparse_categorical_crossentropy")
    Xn = ser.checkpoint.model_input(X, meta)
    for _ in range(150):                     # full-batch steps; fit() costs ~50 ms an epoch
        model.train_on_batch(Xn, y)
    Path(dest_dir).mkdir(parents=True, exist_ok=True)
    ser.checkpoint.save_model(model, dest, meta)
    return dest


if __name__ == "__main__":   # build one by hand: python tests/tiny_model.py OUT_DIR
    import sys
    data = Path(os.environ.get("SER_DATA", ser.paths.ROOT.parent / "shared" / "data"))
    print(build_tiny_model(Path(sys.argv[1]), data))
