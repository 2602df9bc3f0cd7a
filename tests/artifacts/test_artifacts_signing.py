"""Pickled artifacts are signed with the store's key and checked before anything unpickles them."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from jupyter_flow.artifacts import ArtifactStore, register_serializer, unregister_serializer
from jupyter_flow.artifacts.store import MAGIC
from jupyter_flow.core.errors import ArtifactError, ArtifactUntrusted


class Planted:
    """What an attacker would pickle: loading it runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(store: ArtifactStore, payload: bytes, serializer: str = "cloudpickle", **extra) -> str:
    """Write a file in the store's format under its correct content digest; return the digest."""
    header = {"serializer": serializer, "serializer_version": "3.1.1", "type": "builtins.set", **extra}
    data = MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + payload
    digest = hashlib.sha256(data).hexdigest()
    store.put_encoded(data, digest)  # the digest is right: only the signature can tell
    return digest


@pytest.mark.parametrize("serializer, extra", [
    ("cloudpickle", {}),
    ("pandas", {}),
    ("cloudpickle", {"mac": "hmac-sha256:" + "0" * 64}),
    ("no-such-serializer", {}),
])
def test_planted_pickle_never_runs(store, tmp_path, serializer, extra):
    marker = tmp_path / "pwned"
    digest = plant(store, pickle.dumps(Planted(marker)), serializer, **extra)
    with pytest.raises(ArtifactError) as err:
        store.get(digest)
    assert err.value.digest == digest and digest in str(err.value)
    if serializer != "no-such-serializer":
        assert isinstance(err.value, ArtifactUntrusted)
        assert "not written with this store's key" in str(err.value)
        with pytest.raises(ArtifactUntrusted):
            store.verify(digest)
        with pytest.raises(ArtifactUntrusted):
            store.payload(digest)
        preview = store.preview(digest)
        assert preview["kind"] == "untrusted" and "not written with this store's key" in preview["data"]
    assert not marker.exists()


def test_pickle_signed_by_another_store_is_untrusted(store, tmp_path):
    marker = tmp_path / "pwned"
    other = ArtifactStore(store.url, signing_key=os.urandom(32))
    digest = other.put(Planted(marker)).digest  # a valid signature, but with another key
    assert not marker.exists()
    with pytest.raises(ArtifactUntrusted, match="its signature does not match"):
        store.get(digest)
    assert not marker.exists()


def test_store_without_key_refuses_pickles_but_reads_plain_data(store, tmp_path):
    keyless = ArtifactStore(store.url)
    assert not keyless.signed and store.signed
    signed = store.put({1, 2}).digest
    with pytest.raises(ArtifactUntrusted, match="without a signing key"):
        keyless.get(signed)
    assert keyless.preview(signed)["kind"] == "untrusted"
    with pytest.raises(ArtifactError, match="without a signing key"):
        keyless.put({3, 4})
    for value in ({"a": [1, 2]}, b"raw", np.arange(5)):
        digest = store.put(value).digest
        np.testing.assert_equal(keyless.get(digest), value)


def test_every_serializer_round_trips_and_only_pickles_are_signed(store):
    values = {
        "json": {"a": [1, 2.5, None]},
        "bytes": b"\x00raw",
        "numpy": np.arange(12.0).reshape(3, 4),
        "pandas": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        "cloudpickle": {1, 2, 3},
    }
    for name, value in values.items():
        info = store.put(value)
        assert info.serializer == name
        header = store.read_header(info.digest)
        assert ("mac" in header) == (name in ("pandas", "cloudpickle")), header
        loaded = store.get(info.digest)
        if name == "pandas":
            pd.testing.assert_frame_equal(loaded, value)
        else:
            np.testing.assert_equal(loaded, value)


def test_signed_artifacts_stay_content_addressed(store, signing_key):
    same_key = ArtifactStore(store.url + "-twin", signing_key=signing_key)
    other_key = ArtifactStore(store.url + "-other", signing_key=os.urandom(32))
    value = {"set": {1, 2}, "frame": pd.DataFrame({"a": [1]})}
    assert store.put(value).digest == store.put(value).digest == same_key.put(value).digest
    assert other_key.put(value).digest != store.put(value).digest


def test_object_array_smuggled_as_numpy_is_not_unpickled(store, tmp_path):
    marker = tmp_path / "pwned"
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([Planted(marker)], dtype=object), allow_pickle=True)
    digest = plant(store, buffer.getvalue(), "numpy")  # numpy needs no signature: it must refuse
    with pytest.raises(ArtifactError, match="object arrays"):
        store.get(digest)
    assert not marker.exists()


def test_serializers_users_add_are_signed_unless_declared_safe(store):
    class Box:
        def __init__(self, v):
            self.v = v

    register_serializer("box", accepts=lambda v: isinstance(v, Box), dumps=lambda b: pickle.dumps(b.v),
                        loads=lambda b, t: Box(pickle.loads(b)), version=lambda: "1")
    try:
        info = store.put(Box(7))
        assert "mac" in store.read_header(info.digest)
        assert store.get(info.digest).v == 7
        with pytest.raises(ArtifactUntrusted):
            ArtifactStore(store.url).get(info.digest)
    finally:
        unregister_serializer("box")


def test_sealed_artifacts_are_encrypted_and_open_only_with_the_key(store, tmp_path):
    value = {"API_TOKEN": "s3cr3t-sealed", "n": 3}
    info = store.put(value, seal=True)
    raw = store.get_bytes(info.digest)
    assert b"s3cr3t" not in raw and store.read_header(info.digest)["sealed"] == "fernet"
    assert store.get(info.digest) == value
    preview = store.preview(info.digest)
    assert preview["kind"] == "repr" and "sealed" in preview["data"] and "s3cr3t" not in json.dumps(preview)
    with pytest.raises(ArtifactUntrusted):
        ArtifactStore(store.url, signing_key=os.urandom(32)).get(info.digest)
    with pytest.raises(ArtifactError, match="without a signing key"):
        ArtifactStore(store.url).put(value, seal=True)


def test_store_pickles_with_its_key(store, signing_key):
    copy = pickle.loads(pickle.dumps(store))
    assert copy.signed and copy.get(store.put({5}).digest) == {5}
