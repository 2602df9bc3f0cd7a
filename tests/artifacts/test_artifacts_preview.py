import base64
import json

import numpy as np
import pandas as pd

from jupyter_flow.artifacts import ArtifactStore


def _size(preview):
    return len(json.dumps(preview, default=str))


def test_small_plain_data_previews_as_json(store):
    info = store.put({"accuracy": 0.93, "labels": ["a", "b"]})
    preview = store.preview(info.digest)
    assert preview == {
        "type": "builtins.dict", "serializer": "json", "size": info.size, "kind": "json",
        "data": {"accuracy": 0.93, "labels": ["a", "b"]}, "truncated": False,
    }


def test_big_string_preview_is_a_bounded_prefix(store):
    info = store.put("lorem ipsum " * 500_000)
    preview = store.preview(info.digest, max_bytes=4096)
    assert preview["kind"] == "text" and preview["truncated"] is True
    assert preview["data"].startswith('"lorem ipsum lorem')
    assert len(preview["data"]) <= 4096 and _size(preview) < 5000
    assert preview["size"] == info.size > 6_000_000


def test_big_dataframe_previews_as_first_rows(store):
    frame = pd.DataFrame({"i": np.arange(500_000), "x": np.linspace(0, 1, 500_000), "s": ["row"] * 500_000})
    frame["when"] = pd.Timestamp("2024-01-01")
    preview = store.preview(store.put(frame).digest)
    assert preview["kind"] == "table" and preview["truncated"] is True
    table = preview["data"]
    assert table["columns"] == ["i", "x", "s", "when"]
    assert table["rows"] == 20 and table["total_rows"] == 500_000 and table["total_columns"] == 4
    assert table["records"][1]["i"] == 1 and table["records"][0]["when"].startswith("2024-01-01")
    assert _size(preview) < 65536


def test_wide_dataframe_preview_respects_max_bytes(store):
    frame = pd.DataFrame(np.ones((50, 2000)), columns=[f"column_{i}" for i in range(2000)])
    preview = store.preview(store.put(frame).digest, max_bytes=8192)
    assert preview["kind"] == "table"
    assert 0 < preview["data"]["rows"] < 20 and len(preview["data"]["columns"]) == 100
    assert _size(preview) < 8192 + 300


def test_series_previews_as_table(store):
    preview = store.preview(store.put(pd.Series([1, 2, 3], name="n")).digest)
    assert preview["kind"] == "table" and preview["data"]["records"] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_arrays_and_objects_preview_as_truncated_repr(store):
    preview = store.preview(store.put(np.arange(1_000_000)).digest, max_bytes=1000)
    assert preview["kind"] == "repr" and "..." in preview["data"] and len(preview["data"]) <= 1000

    class Chatty:
        def __repr__(self):
            return "chatter " * 100_000

    preview = store.preview(store.put(Chatty()).digest, max_bytes=2048)
    assert preview["kind"] == "repr" and len(preview["data"]) <= 2048
    assert preview["serializer"] == "cloudpickle" and preview["type"].endswith("Chatty")


def test_bytes_preview_as_image_text_or_repr(store):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    preview = store.preview(store.put(png).digest)
    assert preview["kind"] == "image" and base64.b64decode(preview["data"]["base64"]) == png
    assert store.preview(store.put(b"plain text").digest)["data"] == "plain text"
    preview = store.preview(store.put(bytes(range(256)) * 10_000).digest, max_bytes=1024)
    assert preview["kind"] == "repr" and len(preview["data"]) <= 1024 and preview["truncated"]


def test_preview_never_decodes_huge_pickles(tmp_path, monkeypatch, keyring):
    import jupyter_flow.artifacts.store as store_module

    store = ArtifactStore(str(tmp_path / "art"), keyring=keyring)
    info = store.put(pd.DataFrame({"a": range(1000)}))
    monkeypatch.setattr(store_module, "PREVIEW_DECODE_LIMIT", 100)
    monkeypatch.setattr(store, "get", lambda digest: (_ for _ in ()).throw(AssertionError("decoded")))
    preview = store.preview(info.digest)
    assert preview["kind"] == "repr" and "too large" in preview["data"]


def test_an_ops_figure_previews_as_its_image(store):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jupyter_flow.artifacts.figures import StoredFigure

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    info = store.put(StoredFigure.from_figure(figure))
    plt.close(figure)
    assert info.serializer == "figure"
    preview = store.preview(info.digest)
    assert preview["kind"] == "image" and preview["data"]["mime"] == "image/png"
    assert base64.b64decode(preview["data"]["base64"]) == store.get(info.digest).png
    small = store.preview(info.digest, max_bytes=100)
    assert small["kind"] == "repr" and "too large to preview" in small["data"]
