"""Where the pipeline's folders are: the repository's features/, models/, media/, data/."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the repository (installed with pip install -e .)
FEATURES_DIR = ROOT / "features"          # Actor_XX audio folders and the .joblib feature files
MODELS_DIR = ROOT / "models"
MEDIA_DIR = ROOT / "media"
DATA_DIR = ROOT / "data"                  # downloads and the raw TESS tree
TESS_SOURCE_DIR = DATA_DIR / "tess"       # where download_data.py leaves TESS for tess_pipeline.py
TESS_MANIFEST = FEATURES_DIR / "tess_manifest.csv"
CNN_MODEL = MODELS_DIR / "Emotion_Voice_Detection_Model.h5"   # the original's improved CNN
RECOMMENDED_MODEL = MODELS_DIR / "emotion_mlp_stats_whisper.h5"    # voices it never heard
ADAPTIVE_MODEL = MODELS_DIR / "emotion_mlp_stats_whisper_speaker.h5"   # with --enrol / --stream
DEFAULT_MODEL = RECOMMENDED_MODEL     # what prediction uses when no model is named
