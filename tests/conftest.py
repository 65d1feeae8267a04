import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The real corpora (see ../shared/data/README.md); SER_DATA overrides.
SHARED_DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))


def _has_data() -> bool:
    return (SHARED_DATA / "ravdess_speech").is_dir() and (SHARED_DATA / "tess").is_dir()


needs_data = pytest.mark.skipif(not _has_data(),
                                reason=f"real corpora not found at {SHARED_DATA} (set SER_DATA)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not _has_data():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set SER_DATA)")
    return SHARED_DATA


from unprivileged import open_tmp, unprivileged  # noqa: E402,F401  (fixtures for every test module)
from pulse import pulse_server  # noqa: E402,F401  (the virtual microphone, session-scoped)
