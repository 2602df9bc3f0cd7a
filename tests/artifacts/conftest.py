from pathlib import Path

import pytest

from jupyter_flow.artifacts import ArtifactStore
from jupyter_flow.artifacts.keyring import load_keyring


@pytest.fixture
def keyring(tmp_path):
    """A user's keys, as ``load_keyring()`` makes them on first use."""
    return load_keyring(tmp_path / "keys")


@pytest.fixture
def store(tmp_path, keyring):
    """A store in a fresh local directory, signing its pickles with the user's key."""
    return ArtifactStore(str(tmp_path / "artifacts"), keyring=keyring)


@pytest.fixture
def import_root():
    """The directory that holds ``jupyter_flow``: child interpreters run there (``-c``
    puts the working directory on ``sys.path``) so they import this checkout."""
    import jupyter_flow.artifacts

    return str(Path(jupyter_flow.artifacts.__file__).resolve().parents[2])
