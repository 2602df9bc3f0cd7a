"""Pickled artifacts are signed with their producer's own key and unpickled only by users who
hold or trust that key; nothing else (a planted file, a teammate's value) ever runs."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from jupyter_flow.artifacts import ArtifactStore, register_serializer, unregister_serializer
from jupyter_flow.artifacts.keyring import KeyringError, load_keyring, trust, untrust
from jupyter_flow.artifacts.store import MAGIC
from jupyter_flow.core.errors import ArtifactError, ArtifactForeign, ArtifactUntrusted


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


@pytest.fixture
def teammate(tmp_path):
    """Another user's keys (their own directory), writing to the same artifact directory."""
    return load_keyring(tmp_path / "teammate-keys")


@pytest.mark.parametrize("serializer, extra", [
    ("cloudpickle", {}),
    ("pandas", {}),
    ("cloudpickle", {"mac": "hmac-sha256:" + "0" * 64}),  # the format of the store-wide key before
    ("no-such-serializer", {}),
])
def test_planted_pickle_never_runs(store, tmp_path, serializer, extra):
    marker = tmp_path / "pwned"
    digest = plant(store, pickle.dumps(Planted(marker)), serializer, **extra)
    with pytest.raises(ArtifactError) as err:
        store.get(digest)
    assert err.value.digest == digest and digest in str(err.value)
    if serializer != "no-such-serializer":
        assert isinstance(err.value, ArtifactUntrusted) and not isinstance(err.value, ArtifactForeign)
        assert "has no signature" in str(err.value)
        with pytest.raises(ArtifactUntrusted):
            store.verify(digest)
        with pytest.raises(ArtifactUntrusted):
            store.payload(digest)
        preview = store.preview(digest)
        assert preview["kind"] == "untrusted" and "has no signature" in preview["data"]
    assert not marker.exists()


def test_a_signature_claiming_my_key_over_other_bytes_is_refused(store, keyring, tmp_path):
    marker = tmp_path / "pwned"
    header = {"serializer": "cloudpickle", "serializer_version": "3.1.1", "type": "builtins.set",
              "signer": keyring.key_id, "signed_by": keyring.user}
    # A valid signature of mine, copied from another artifact onto a planted payload.
    stolen = store.read_header(store.put({1, 2}).digest)["sig"]
    digest = plant(store, pickle.dumps(Planted(marker)), **{k: v for k, v in header.items() if k != "serializer"},
                   sig=stolen)
    with pytest.raises(ArtifactUntrusted, match="signature does not match"):
        store.get(digest)
    assert not marker.exists()


def test_a_teammates_pickle_is_refused_until_trusted(store, keyring, teammate, tmp_path):
    marker = tmp_path / "pwned"
    theirs = ArtifactStore(store.url, keyring=teammate)
    digest = theirs.put(Planted(marker)).digest  # validly signed: by them
    assert not marker.exists()
    with pytest.raises(ArtifactForeign) as err:
        store.get(digest)
    message = str(err.value)
    assert err.value.signer == teammate.key_id and teammate.key_id in message
    assert f"jupyter flow trust add {teammate.user}" in message and "do not trust" in message
    assert store.preview(digest)["kind"] == "untrusted"
    assert not marker.exists()

    # Trusting them (their public key, pinned in my own trusted.json) lets their values load.
    assert trust(keyring, "mate", {teammate.key_id: teammate.public_b64}) == [teammate.key_id]
    value = theirs.put(Fraction(1, 3)).digest  # a pickle (JSON-able values need no trust)
    assert theirs.read_header(value)["serializer"] == "cloudpickle"
    assert ArtifactStore(store.url, keyring=load_keyring(keyring.path)).get(value) == Fraction(1, 3)
    assert untrust(keyring, "mate") == [teammate.key_id]
    with pytest.raises(ArtifactForeign):
        store.get(value)


def test_trusting_a_key_that_does_not_match_its_id_is_refused(keyring, teammate):
    with pytest.raises(KeyringError, match="does not match"):
        trust(keyring, "mate", {"0" * 16: teammate.public_b64})


def test_store_without_keyring_refuses_pickles_but_reads_plain_data(store):
    keyless = ArtifactStore(store.url)
    assert not keyless.signed and store.signed
    signed = store.put({1, 2}).digest
    with pytest.raises(ArtifactUntrusted, match="without a keyring"):
        keyless.get(signed)
    assert keyless.preview(signed)["kind"] == "untrusted"
    with pytest.raises(ArtifactError, match="without a keyring"):
        keyless.put({3, 4})
    for value in ({"a": [1, 2]}, b"raw", np.arange(5)):
        digest = store.put(value).digest
        np.testing.assert_equal(keyless.get(digest), value)


def test_a_store_that_never_unpickles_checks_and_previews_in_a_child_process(store, keyring, teammate, tmp_path):
    marker = tmp_path / "pwned"
    server = ArtifactStore(store.url, keyring=keyring, unpickle=False)
    mine = store.put({1, 2, 3}).digest
    frame = store.put(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})).digest
    assert server.verify(mine)["signer"] == keyring.key_id  # the signature is checked here
    with pytest.raises(ArtifactUntrusted, match="never unpickles"):
        server.get(mine)
    assert server.preview(mine) == {**store.preview(mine)}  # the same preview, made elsewhere
    assert server.preview(frame)["kind"] == "table"
    theirs = ArtifactStore(store.url, keyring=teammate).put(Planted(marker)).digest
    assert server.preview(theirs)["kind"] == "untrusted"
    assert not marker.exists()


def test_every_serializer_round_trips_and_only_pickles_are_signed(store, keyring):
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
        pickled = name in ("pandas", "cloudpickle")
        assert ("sig" in header) == pickled, header
        assert info.signer == (keyring.key_id if pickled else None)
        loaded = store.get(info.digest)
        if name == "pandas":
            pd.testing.assert_frame_equal(loaded, value)
        else:
            np.testing.assert_equal(loaded, value)


def test_signed_artifacts_stay_content_addressed(store, keyring, teammate):
    same_key = ArtifactStore(store.url + "-twin", keyring=keyring)
    other_key = ArtifactStore(store.url + "-other", keyring=teammate)
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
        assert "sig" in store.read_header(info.digest)
        assert store.get(info.digest).v == 7
        with pytest.raises(ArtifactUntrusted):
            ArtifactStore(store.url).get(info.digest)
    finally:
        unregister_serializer("box")


def test_sealed_artifacts_open_only_for_their_owner(store, teammate):
    value = {"API_TOKEN": "s3cr3t-sealed", "n": 3}
    info = store.put(value, seal=True)
    raw = store.get_bytes(info.digest)
    assert b"s3cr3t" not in raw and store.read_header(info.digest)["sealed"] == "fernet"
    assert store.get(info.digest) == value
    preview = store.preview(info.digest)
    assert preview["kind"] == "repr" and "sealed" in preview["data"] and "s3cr3t" not in json.dumps(preview)
    # Not even a user who trusts the owner can open it: the seal key never leaves its owner.
    with pytest.raises(ArtifactForeign, match="only .* can open it"):
        ArtifactStore(store.url, keyring=teammate).get(info.digest)
    with pytest.raises(ArtifactError, match="without a keyring"):
        ArtifactStore(store.url).put(value, seal=True)


def test_a_workers_copy_of_the_keyring_signs_and_checks_but_cannot_seal(store, keyring):
    copy = pickle.loads(pickle.dumps(store))
    assert copy.signed and copy.get(store.put({5}).digest) == {5}
    assert copy.keyring.key_id == keyring.key_id and copy.keyring.seal_key is None
    with pytest.raises(ArtifactError, match="holds no seal key"):
        copy.put({"x": 1}, seal=True)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_and_artifacts_are_private_to_their_owner(tmp_path, keyring):
    old = os.umask(0o022)  # what made everything world-readable before
    try:
        store = ArtifactStore(str(tmp_path / "private-art"), keyring=keyring)
        digest = store.put({"secret": "values"}).digest
    finally:
        os.umask(old)
    assert _mode(keyring.path) == 0o700
    assert _mode(keyring.path / "signing.key") == _mode(keyring.path / "seal.key") == 0o600
    assert _mode(tmp_path / "private-art") == _mode(os.path.dirname(store.path(digest))) == 0o700
    assert _mode(store.path(digest)) == 0o600


def test_a_team_store_directory_keeps_its_group(tmp_path, keyring):
    team = tmp_path / "team-art"
    team.mkdir()
    os.chmod(team, 0o2770)  # as an administrator sets up a shared store
    store = ArtifactStore(str(team), keyring=keyring)
    digest = store.put([1, 2, 3]).digest
    assert _mode(os.path.dirname(store.path(digest))) == 0o2770
    assert _mode(store.path(digest)) == 0o640


def test_keys_others_can_read_are_refused(tmp_path):
    directory = tmp_path / "leaky"
    load_keyring(directory)
    os.chmod(directory / "signing.key", 0o644)
    from jupyter_flow.artifacts import keyring as keyring_module

    keyring_module._RINGS.clear()  # as a new process would open it
    with pytest.raises(KeyringError, match=r"can be read by other users.*chmod 600 .*signing.key"):
        load_keyring(directory)
