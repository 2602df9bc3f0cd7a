import os
import pickle
import uuid

import pytest

from jupyter_flow.artifacts import ArtifactInfo, ArtifactStore, artifact_store
from jupyter_flow.core.errors import ArtifactCorrupt, ArtifactError, ArtifactMissing, FlowError

MISSING = "0" * 64


def test_put_writes_one_file_named_by_its_hash(store, tmp_path):
    import hashlib

    info = store.put({"rows": 3})
    path = tmp_path / "artifacts" / info.digest[:2] / info.digest
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info.digest
    assert info.size == path.stat().st_size == store.size(info.digest)
    assert info.uri == path.as_uri() == store.uri(info.digest)
    assert list(store.digests()) == [info.digest]


def test_identical_values_are_stored_once(store):
    first = store.put([1, 2, 3])
    mtime = os.stat(store.path(first.digest)).st_mtime_ns
    second = store.put([1, 2, 3])
    assert second == first
    assert os.stat(store.path(first.digest)).st_mtime_ns == mtime
    assert list(store.digests()) == [first.digest]
    assert store.put([1, 2, 4]).digest != first.digest


def test_header_and_info_describe_the_artifact(store):
    info = store.put(b"abc")
    header = {"serializer": "bytes", "serializer_version": "1", "type": "builtins.bytes"}
    assert store.read_header(info.digest) == header
    assert store.info(info.digest) == info
    assert isinstance(info, ArtifactInfo)


def test_encode_is_pure_and_put_encoded_stores_it(store):
    data, info = store.encode({"k": "v"})
    assert not store.exists(info.digest) and list(store.digests()) == []
    store.put_encoded(data, info.digest)
    assert store.exists(info.digest)
    assert store.get_bytes(info.digest) == data
    assert store.get(info.digest) == {"k": "v"}
    with pytest.raises(ArtifactCorrupt):
        store.put_encoded(data + b"x", info.digest)


def test_corrupt_artifact_is_detected_and_recomputable(store):
    info = store.put(list(range(100)))
    path = store.path(info.digest)
    raw = bytearray(open(path, "rb").read())
    raw[-5] ^= 0x01
    open(path, "wb").write(bytes(raw))

    with pytest.raises(ArtifactCorrupt) as err:
        store.get(info.digest)
    assert isinstance(err.value, ArtifactError) and isinstance(err.value, FlowError)
    assert err.value.digest == info.digest
    assert info.digest in str(err.value) and "recomputed" in str(err.value)
    # The bad copy is moved aside, so storing the recomputed value repairs the artifact.
    assert not store.exists(info.digest)
    store.put(list(range(100)))
    assert store.get(info.digest) == list(range(100))
    assert list(store.digests()) == [info.digest]


def test_truncated_artifact_is_corrupt_and_rewritten_by_put(store):
    info = store.put("x" * 1000)
    with open(store.path(info.digest), "r+b") as file:
        file.truncate(100)
    with pytest.raises(ArtifactCorrupt):
        store.get_bytes(info.digest)
    store.put("x" * 1000)
    assert store.get(info.digest) == "x" * 1000


def test_missing_artifact_raises_catchable_error(store):
    for call in (store.get, store.get_bytes, store.info, store.read_header, store.size, store.preview):
        with pytest.raises(ArtifactMissing) as err:
            call(MISSING)
        assert isinstance(err.value, ArtifactError) and isinstance(err.value, FlowError)
        assert err.value.digest == MISSING and MISSING in str(err.value)
    assert "recomputed" in _message(store.get, MISSING)
    assert not store.exists(MISSING)
    assert store.delete(MISSING) is False


def _message(call, *args):
    with pytest.raises(FlowError) as err:
        call(*args)
    return str(err.value)


@pytest.mark.parametrize(
    "digest",
    ["../etc/passwd", "A" * 64, "abc", "0" * 63, "0" * 65, "../" + "0" * 61, "0" * 63 + "\n", "g" * 64, None, 12],
)
def test_invalid_digests_are_rejected_before_touching_files(store, digest):
    calls = [store.get, store.get_bytes, store.info, store.read_header, store.exists, store.delete,
             store.uri, store.size, store.preview, lambda d: store.put_encoded(b"", d)]
    for call in calls:
        with pytest.raises(ValueError):
            call(digest)


def test_garbage_under_a_valid_name_is_not_loaded(store, tmp_path):
    import hashlib

    data = b"not an artifact"
    digest = hashlib.sha256(data).hexdigest()
    store.put_encoded(data, digest)
    with pytest.raises(ArtifactCorrupt, match="header"):
        store.get(digest)


def test_delete_and_listing(store):
    digests = {store.put(i).digest for i in range(5)}
    assert set(store.digests()) == digests
    victim = digests.pop()
    assert store.delete(victim) is True
    assert set(store.digests()) == digests
    assert list(ArtifactStore(store.url + "-never-created").digests()) == []


def test_store_is_picklable_and_cached_per_url(store):
    info = store.put({"a": 1})
    clone = pickle.loads(pickle.dumps(store))
    assert clone.url == store.url and clone.get(info.digest) == {"a": 1}
    assert artifact_store(store.url) is artifact_store(store.url)
    assert artifact_store(store.url).get(info.digest) == {"a": 1}


def test_url_forms_resolve_to_the_same_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digest = ArtifactStore("rel").put(5).digest
    assert ArtifactStore("rel").url == str(tmp_path / "rel")  # absolute: workers have other cwds
    assert ArtifactStore(f"file://{tmp_path}/rel").get(digest) == 5
    monkeypatch.setenv("JUPYTER_FLOW_ARTIFACTS", str(tmp_path / "rel"))
    assert ArtifactStore().get(digest) == 5


def test_memory_filesystem_works_end_to_end():
    store = ArtifactStore(f"memory://jf-test-{uuid.uuid4().hex}")
    info = store.put({"x": [1, 2]})
    assert info.uri.startswith("memory://") and info.uri.endswith(info.digest)
    assert store.put({"x": [1, 2]}) == info
    assert store.get(info.digest) == {"x": [1, 2]}
    assert store.info(info.digest) == info
    assert list(store.digests()) == [info.digest]
    assert store.preview(info.digest)["data"] == {"x": [1, 2]}

    store._fs.pipe_file(store.path(info.digest), store.get_bytes(info.digest)[:-1] + b"]")
    with pytest.raises(ArtifactCorrupt):
        store.get(info.digest)
    with pytest.raises(ArtifactMissing):
        store.get(info.digest)  # moved aside
    store.put({"x": [1, 2]})
    assert store.get(info.digest) == {"x": [1, 2]}

    store._fs.pipe_file(f"{store.url}/{info.digest[:2]}/.tmp-{uuid.uuid4().hex}", b"partial")
    assert list(store.digests()) == [info.digest]
    assert store.cleanup_temp(older_than_s=0) == 2  # the temp file and the corrupt copy
    assert store.delete(info.digest) and list(store.digests()) == []


def test_generic_fsspec_filesystem_writes_through_temp_and_rename(tmp_path):
    # Storage options send even a local URL through fsspec: the path other filesystems
    # (sftp, hdfs, NFS mounts via fsspec) take.
    store = ArtifactStore(f"file://{tmp_path}/fs", auto_mkdir=True)
    assert store._fs is not None
    info = store.put({"via": "fsspec"})
    assert store.get(info.digest) == {"via": "fsspec"} and store.put({"via": "fsspec"}) == info
    assert list(store.digests()) == [info.digest]
    assert [p.name for p in (tmp_path / "fs" / info.digest[:2]).iterdir()] == [info.digest]
    assert ArtifactStore(str(tmp_path / "fs")).get(info.digest) == {"via": "fsspec"}
    assert pickle.loads(pickle.dumps(store)).get(info.digest) == {"via": "fsspec"}
