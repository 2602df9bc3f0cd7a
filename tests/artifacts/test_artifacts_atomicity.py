import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from jupyter_flow.artifacts import ArtifactStore

BIG = 200 * 2**20

WRITER = """
import sys
from jupyter_flow.artifacts import ArtifactStore
ArtifactStore(sys.argv[1]).put(b"\\x01" * int(sys.argv[2]))
print("finished", flush=True)
"""


def _temp_files(root):
    if not root.exists():
        return []
    return [p for shard in root.iterdir() for p in shard.iterdir() if p.name.startswith(".tmp-")]


def test_writer_killed_mid_write_leaves_no_artifact(tmp_path, import_root):
    root = tmp_path / "artifacts"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(BIG)], stdout=subprocess.PIPE, cwd=import_root
    )
    deadline = time.monotonic() + 60
    # The temp file appearing is the event to await: the writer is now inside its write.
    while not _temp_files(root):
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    assert writer.stdout.read() == b""

    store = ArtifactStore(str(root))
    [temp] = _temp_files(root)
    assert temp.stat().st_size < BIG + 200  # never completed under any final name
    assert list(store.digests()) == []
    digest = store.encode(b"\x01" * BIG)[1].digest
    assert not store.exists(digest)

    assert store.cleanup_temp() == 0  # too recent: could belong to a live writer
    assert store.cleanup_temp(older_than_s=0) == 1
    assert _temp_files(root) == []

    assert store.put(b"\x01" * 1024).serializer == "bytes"
    assert len(list(store.digests())) == 1


def test_failed_write_removes_its_temp_file(store, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"payload")
    monkeypatch.undo()
    assert list(store.digests()) == [] and store.cleanup_temp(older_than_s=0) == 0


def _put_same(url):
    return ArtifactStore(url).put(bytes(range(256)) * 40_000).digest


def test_concurrent_writers_of_one_digest_agree(store):
    with multiprocessing.get_context("fork").Pool(6) as pool:
        digests = pool.map(_put_same, [store.url] * 12)
    assert len(set(digests)) == 1
    assert store.get(digests[0]) == bytes(range(256)) * 40_000
    assert list(store.digests()) == digests[:1]
    assert store.cleanup_temp(older_than_s=0) == 0
