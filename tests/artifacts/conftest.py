from pathlib import Path

import pytest

from jupyter_flow.artifacts import ArtifactStore


@pytest.fixture
def store(tmp_path):
    """A store in a fresh local directory."""
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def import_root():
    """The directory that holds ``jupyter_flow``: child interpreters run there (``-c``
    puts the working directory on ``sys.path``) so they import this checkout."""
    import jupyter_flow.artifacts

    return str(Path(jupyter_flow.artifacts.__file__).resolve().parents[2])
