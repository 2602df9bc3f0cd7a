import os
from pathlib import Path

import pytest

from jupyter_flow.artifacts import ArtifactStore


@pytest.fixture
def signing_key():
    """A store key, as ``Store().artifact_key()`` makes one."""
    return os.urandom(32)


@pytest.fixture
def store(tmp_path, signing_key):
    """A store in a fresh local directory, signing its pickles."""
    return ArtifactStore(str(tmp_path / "artifacts"), signing_key=signing_key)


@pytest.fixture
def import_root():
    """The directory that holds ``jupyter_flow``: child interpreters run there (``-c``
    puts the working directory on ``sys.path``) so they import this checkout."""
    import jupyter_flow.artifacts

    return str(Path(jupyter_flow.artifacts.__file__).resolve().parents[2])
