import functools
import hashlib
import io
import json
import subprocess
import sys
import threading

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from jupyter_flow.artifacts import (
    ArtifactStore,
    get_serializer,
    register_serializer,
    serializer_names,
    unregister_serializer,
)
from jupyter_flow.core.errors import ArtifactCorrupt, ArtifactError, FlowError, SerializationError


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_registry_order_is_specific_before_catch_all():
    assert serializer_names() == ("json", "bytes", "numpy", "pandas", "figure", "cloudpickle")


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**80), 1.5, -0.0, 1e308, "héllo \ud800", [], {}, [1, [2.5, "x"], {"a": None}],
     {"b": {"c": [True, False]}, "a": 1}],
)
def test_plain_data_round_trips_as_json(store, value):
    info = store.put(value)
    assert info.serializer == "json"
    assert info.serializer_version == json.__version__
    back = store.get(info.digest)
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, {1: "a"}, float("nan"), float("inf"), [1, (2,)], 10**5000,
     functools.reduce(lambda a, _: [a], range(250), [])],
    ids=["tuple", "set", "int-keys", "nan", "inf", "nested-tuple", "huge-int", "deep"],
)
def test_values_json_would_change_go_to_cloudpickle(store, value):
    info = store.put(value)
    assert info.serializer == "cloudpickle"
    back = store.get(info.digest)
    if value == value:  # nan != nan
        assert back == value and type(back) is type(value)


def test_json_encoding_is_canonical(store):
    a = store.put({"b": 1, "a": [1, 2]})
    b = store.put({"a": [1, 2], "b": 1})
    assert a.digest == b.digest
    assert store.get_bytes(a.digest).endswith(b'\n{"a":[1,2],"b":1}')


@pytest.mark.parametrize("value", [b"\x00\xffraw", bytearray(b"mutable")])
def test_bytes_round_trip_raw(store, value):
    info = store.put(value)
    assert (info.serializer, info.serializer_version) == ("bytes", "1")
    assert info.type == f"builtins.{type(value).__name__}"
    back = store.get(info.digest)
    assert back == value and type(back) is type(value)
    assert store.get_bytes(info.digest).endswith(bytes(value))


@pytest.mark.parametrize(
    "array",
    [np.arange(12, dtype=np.float32).reshape(3, 4), np.asfortranarray(np.ones((2, 3))), np.array(["a", "bc"]),
     np.zeros(0, dtype=[("x", "i4"), ("y", "f8")]), np.array(3.5), np.arange(30)[::3],
     np.array(["2024-01-01", "NaT"], dtype="datetime64[s]"), np.array([1 + 2j, True]), np.zeros((3, 0, 2))],
)
def test_numpy_arrays_round_trip_without_pickle(store, array):
    info = store.put(array)
    assert (info.serializer, info.serializer_version, info.type) == ("numpy", np.__version__, "numpy.ndarray")
    back = store.get(info.digest)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        assert back.flags.f_contiguous  # memory layout survives
    # The payload is a plain .npy file that numpy itself reads without pickle.
    raw = store.get_bytes(info.digest)
    npy = raw[raw.index(b"\x93NUMPY") :]
    np.testing.assert_array_equal(np.load(io.BytesIO(npy), allow_pickle=False), array)


def test_object_arrays_and_numpy_scalars_fall_back_to_cloudpickle(store):
    assert store.put(np.array([{"a": 1}, None], dtype=object)).serializer == "cloudpickle"
    info = store.put(np.float64(2.5))
    assert info.serializer == "cloudpickle" and store.get(info.digest) == 2.5


def test_pandas_frame_and_series_round_trip(store):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "t": pd.date_range("2024-01-01", periods=3)})
    series = pd.Series([1.5, 2.5], index=["p", "q"], name="s")
    for value in (frame, series):
        info = store.put(value)
        assert (info.serializer, info.serializer_version) == ("pandas", pd.__version__)
        back = store.get(info.digest)
        assert type(back) is type(value)
        assert back.equals(value)


def test_closures_lambdas_and_custom_classes_use_cloudpickle(store):
    offset = 10
    add = lambda x: x + offset  # noqa: E731 - a closure over a local, the hard case
    for value, check in ((add, lambda f: f(1) == 11), (Point(1, 2), lambda p: p == Point(1, 2))):
        info = store.put(value)
        assert (info.serializer, info.serializer_version) == ("cloudpickle", cloudpickle.__version__)
        assert check(store.get(info.digest))
    assert store.put(Point(0, 0)).type.endswith("Point")


@pytest.mark.parametrize("value", [threading.Lock(), (i for i in range(3))], ids=["lock", "generator"])
def test_unserializable_value_names_its_type_and_what_to_do(store, value):
    with pytest.raises(SerializationError) as err:
        store.put(value)
    message = str(err.value)
    assert type(value).__name__ in message
    assert "plain data" in message and "picklable" in message
    assert isinstance(err.value, FlowError)
    assert list(store.digests()) == []


def test_registered_serializer_is_tried_before_cloudpickle(store):
    register_serializer(
        "point",
        accepts=lambda v: type(v) is Point,
        dumps=lambda p: f"{p.x},{p.y}".encode(),
        loads=lambda b, t: Point(*map(int, bytes(b).decode().split(","))),
        version=lambda: "7",
    )
    try:
        assert serializer_names()[-2:] == ("point", "cloudpickle")
        info = store.put(Point(3, 4))
        assert (info.serializer, info.serializer_version) == ("point", "7")
        assert store.get(info.digest) == Point(3, 4)
    finally:
        unregister_serializer("point")
    with pytest.raises(KeyError):
        get_serializer("point")


def _digests_in_subprocess(tmp_path, cwd) -> list[str]:
    code = """
import sys
import numpy as np
from jupyter_flow.artifacts import ArtifactStore
store = ArtifactStore(sys.argv[1])
values = [{"z": [1, 2.5, None], "a": "text"}, b"raw", np.arange(10), [True, {"k": -3}]]
print(",".join(store.encode(v)[1].digest for v in values))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, cwd=cwd
    )
    return out.stdout.strip().split(",")


def test_same_value_same_digest_across_processes(tmp_path, import_root):
    first = _digests_in_subprocess(tmp_path / "one", import_root)
    second = _digests_in_subprocess(tmp_path / "two", import_root)
    assert first == second and len(set(first)) == 4
    here = ArtifactStore(str(tmp_path)).encode({"a": "text", "z": [1, 2.5, None]})[1].digest
    assert here == first[0]


def test_importing_and_storing_plain_data_does_not_import_pandas_or_numpy(tmp_path, import_root):
    code = """
import sys
import jupyter_flow.artifacts as a
store = a.ArtifactStore(sys.argv[1])
store.get(store.put({"x": [1, 2]}).digest)
store.get(store.put(b"raw").digest)
print(sorted(m for m in ("pandas", "numpy", "fsspec") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, cwd=import_root
    )
    assert out.stdout.strip() == "[]"


def test_artifact_from_an_unknown_serializer_is_an_artifact_error(store):
    register_serializer(
        "temporary",
        accepts=lambda v: type(v) is Point,
        dumps=lambda p: b"p",
        loads=lambda b, t: Point(0, 0),
        version=lambda: "1",
    )
    try:
        digest = store.put(Point(9, 9)).digest
    finally:
        unregister_serializer("temporary")
    with pytest.raises(ArtifactError, match="register_serializer") as err:
        store.get(digest)
    assert err.value.digest == digest


def test_unloadable_pickle_is_an_artifact_error_naming_the_type(store, keyring):
    # As if the class had been renamed since the (signed) artifact was written.
    data, _ = store.encode(Point(1, 1))
    broken = resign(data.replace(Point.__module__.encode(), b"module_removed_since"), keyring)
    digest = hashlib.sha256(broken).hexdigest()
    store.put_encoded(broken, digest)
    with pytest.raises(ArtifactError, match="recomputed") as err:
        store.get(digest)
    assert "Point" in str(err.value) and not isinstance(err.value, ArtifactCorrupt)


def resign(data: bytes, keyring) -> bytes:
    """An artifact file's bytes with its signature made again over its (edited) content."""
    from jupyter_flow.artifacts.store import MAGIC, _header_line, _signed_message

    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):end])
    header.pop("sig")
    payload = data[end + 1:]
    header["sig"] = keyring.sign(_signed_message(header, [payload]))
    return _header_line(header) + payload
