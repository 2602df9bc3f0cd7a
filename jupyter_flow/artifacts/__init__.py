"""Content-addressed artifact storage for op outputs (fsspec-backed).

>>> import tempfile
>>> store = artifact_store(tempfile.mkdtemp())
>>> store.get(store.put([1, 2, 3]).digest)
[1, 2, 3]
"""

from jupyter_flow.artifacts.serializers import (
    Serializer,
    get_serializer,
    register_serializer,
    serializer_names,
    unregister_serializer,
)
from jupyter_flow.artifacts.store import ArtifactInfo, ArtifactStore, artifact_store, validate_digest

__all__ = [
    "ArtifactInfo",
    "ArtifactStore",
    "Serializer",
    "artifact_store",
    "get_serializer",
    "register_serializer",
    "serializer_names",
    "unregister_serializer",
    "validate_digest",
]
