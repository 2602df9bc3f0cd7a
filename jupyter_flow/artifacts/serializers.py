"""The serializer registry: how a Python value becomes artifact bytes and back.

Serializers are tried in registration order; the first whose ``accepts`` says yes writes
the value. The built-in order is ``json`` (plain data that round-trips exactly),
``bytes``, ``numpy``, ``pandas``, ``figure`` (an op's matplotlib figure, kept as its PNG
image) and, for everything else, ``cloudpickle``. Each artifact
records the serializer's name and version, so a reader knows how it was written.

``accepts`` runs for every stored value, so it must be cheap and must not import a library
for a value that cannot belong to it: the numpy and pandas checks look at
``type(value).__module__`` first, so storing plain data never imports pandas.

Pickle-based serializers (``pandas``, ``cloudpickle``) execute code when loading, so they
are registered with ``executes_code=True`` (the default for serializers users add): the
artifact store signs what they write with its key and checks the signature before their
``loads`` sees a byte. ``json``, ``bytes`` and ``numpy`` (which never loads object
arrays) need no signature.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass

from jupyter_flow.core.errors import SerializationError

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Serializer:
    """One way of turning values into bytes.

    ``dumps(value)`` returns a bytes-like object or a list of them (written one after the
    other, which spares a copy of large buffers); ``loads(payload, type_name)`` gets the
    payload as a ``memoryview`` (``bytes(payload)`` if a library needs bytes) and the
    recorded ``module.QualName`` of the original type;
    ``version()`` names the format's version (usually the library's version);
    ``executes_code`` says whether ``loads`` can run code found in the payload (pickle),
    so that the payload must be authenticated first.
    """

    name: str
    accepts: Callable[[object], bool]
    dumps: Callable[[object], Buffer | list[Buffer]]
    loads: Callable[[memoryview, str], object]
    version: Callable[[], str]
    executes_code: bool = True


_REGISTRY: list[Serializer] = []


def register_serializer(
    name: str,
    *,
    accepts: Callable[[object], bool],
    dumps: Callable[[object], Buffer | list[Buffer]],
    loads: Callable[[memoryview, str], object],
    version: Callable[[], str],
    before: str | None = None,
    executes_code: bool = True,
) -> Serializer:
    """Add (or replace) a serializer; it is tried before ``before`` or else before the
    ``cloudpickle`` catch-all.

    Pass ``executes_code=False`` only if ``loads`` cannot run code whatever the payload
    holds (no pickle inside): such artifacts are loaded without a signature check.

    >>> register_serializer(
    ...     "upper",
    ...     accepts=lambda v: False,
    ...     dumps=lambda v: v.encode(),
    ...     loads=lambda b, t: bytes(b).decode(),
    ...     version=lambda: "1",
    ... ).name
    'upper'
    >>> unregister_serializer("upper")
    """
    serializer = Serializer(name, accepts, dumps, loads, version, executes_code)
    names = [s.name for s in _REGISTRY]
    if name in names:
        _REGISTRY[names.index(name)] = serializer
        return serializer
    if before is None and "cloudpickle" in names:
        before = "cloudpickle"
    if before is None:
        _REGISTRY.append(serializer)
    elif before in names:
        _REGISTRY.insert(names.index(before), serializer)
    else:
        raise ValueError(f"cannot register serializer {name!r} before unknown serializer {before!r}")
    return serializer


def unregister_serializer(name: str) -> None:
    """Remove a serializer added with :func:`register_serializer` (no error if absent)."""
    _REGISTRY[:] = [s for s in _REGISTRY if s.name != name]


def serializer_names() -> tuple[str, ...]:
    """Names of the registered serializers, in the order they are tried.

    >>> serializer_names()[0], serializer_names()[-1]
    ('json', 'cloudpickle')
    """
    return tuple(s.name for s in _REGISTRY)


def get_serializer(name: str) -> Serializer:
    """The serializer registered under ``name``; ``KeyError`` if none is."""
    for serializer in _REGISTRY:
        if serializer.name == name:
            return serializer
    raise KeyError(name)


def type_name(value: object) -> str:
    """``module.QualName`` of a value's type, as recorded in artifact headers.

    >>> type_name(1.5)
    'builtins.float'
    """
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def serialize(value: object) -> tuple[Serializer, list[Buffer]]:
    """Pick the first serializer that accepts ``value`` and run it; the payload comes back
    as a list of buffers to write in order.

    >>> serializer, payload = serialize({"b": 1, "a": [1.5, None]})
    >>> serializer.name, b"".join(payload)
    ('json', b'{"a":[1.5,null],"b":1}')
    """
    for serializer in _REGISTRY:
        if serializer.accepts(value):
            try:
                payload = serializer.dumps(value)
                return serializer, payload if type(payload) is list else [payload]
            except Exception as exc:  # any failure to serialize is the user's to see
                raise SerializationError(
                    f"cannot store a value of type {type_name(value)}: the {serializer.name!r} "
                    f"serializer failed ({type(exc).__name__}: {exc}). Return plain data "
                    "(numbers, strings, lists, dicts, numpy arrays, DataFrames) from the op, "
                    "or make the object picklable (e.g. define __getstate__/__reduce__ or "
                    "drop open files, locks, sockets and generators from it)."
                ) from exc
    raise SerializationError(
        f"cannot store a value of type {type_name(value)}: no registered serializer accepts it "
        f"(tried {', '.join(serializer_names()) or 'none'}). Return plain data from the op or "
        "register a serializer with jupyter_flow.artifacts.register_serializer."
    )


# --- json: only values that come back exactly as they went in -----------------------

# Python refuses to print ints above 4300 digits (int_max_str_digits); stay well below.
_MAX_JSON_INT_BITS = 14_000
# Deeper nesting would hit the recursion limit in json (and cycles must end somewhere).
_MAX_JSON_DEPTH = 200


def _is_plain_json(value: object) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        cls = type(item)
        if item is None or cls is str or cls is bool:
            continue
        if cls is int:
            if item.bit_length() > _MAX_JSON_INT_BITS:
                return False
            continue
        if cls is float:
            if not math.isfinite(item):
                return False
            continue
        if depth >= _MAX_JSON_DEPTH:
            return False
        if cls is list:
            stack.extend((child, depth + 1) for child in item)
            continue
        if cls is dict:
            for key, child in item.items():
                if type(key) is not str:
                    return False
                stack.append((child, depth + 1))
            continue
        return False  # tuples, sets, subclasses, ...: they would not round-trip
    return True


def _json_dumps(value: object) -> bytes:
    # sort_keys + compact separators: equal values give equal bytes, hence equal digests.
    # ensure_ascii keeps lone surrogates in strings encodable.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _json_loads(payload: memoryview, type_name: str) -> object:
    return json.loads(bytes(payload))


# --- bytes ---------------------------------------------------------------------------


def _bytes_loads(payload: memoryview, type_name: str) -> object:
    return bytearray(payload) if type_name == "builtins.bytearray" else bytes(payload)


# --- numpy ---------------------------------------------------------------------------


def _numpy_accepts(value: object) -> bool:
    if type(value).__module__.partition(".")[0] != "numpy":
        return False
    import numpy as np

    return type(value) is np.ndarray and not value.dtype.hasobject


_NPY_HEADER_LIMIT = 2**17  # numpy itself refuses headers above 10,000 bytes by default


def _numpy_dumps(value: object) -> list[bytes | memoryview]:
    """An ``.npy`` file whose body is the array's own memory (no copy when contiguous)."""
    import numpy as np

    if value.flags.c_contiguous or value.flags.f_contiguous:
        header = io.BytesIO()
        try:
            np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(value))
        except (ValueError, UnicodeError):
            pass  # header needs format 2 or 3: let np.save choose
        else:
            order = "C" if value.flags.c_contiguous else "F"
            body = value.reshape(-1, order=order).view(np.uint8)
            return [header.getvalue(), memoryview(body)]
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return [buffer.getbuffer()]


def _numpy_loads(payload: memoryview, type_name: str) -> object:
    import numpy as np

    stream = io.BytesIO(payload[:_NPY_HEADER_LIMIT])
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        return np.load(io.BytesIO(payload), allow_pickle=False)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        raise ValueError("object arrays are not stored by the numpy serializer")
    count = 1
    for extent in shape:
        count *= extent
    # np.load copies the body through many small reads; viewing the buffer the store read
    # (a private bytearray) costs nothing.
    flat = np.frombuffer(payload, dtype=dtype, count=count, offset=stream.tell())
    array = flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)
    return array if array.flags.writeable else array.copy(order="K")


def _numpy_version() -> str:
    import numpy as np

    return np.__version__


# --- pandas --------------------------------------------------------------------------


def _pandas_accepts(value: object) -> bool:
    if type(value).__module__.partition(".")[0] != "pandas":
        return False
    import pandas as pd

    return type(value) in (pd.DataFrame, pd.Series)


def _pickle_dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_loads(payload: memoryview, type_name: str) -> object:
    return pickle.loads(payload)


def _pandas_version() -> str:
    import pandas as pd

    return pd.__version__


# --- figure: the PNG of a figure an op made (see artifacts/figures.py) ---------------


def _figure_loads(payload: memoryview, type_name: str) -> object:
    from jupyter_flow.artifacts.figures import StoredFigure

    return StoredFigure(bytes(payload))


def _is_stored_figure(value: object) -> bool:
    return type(value).__name__ == "StoredFigure" and type(value).__module__ == "jupyter_flow.artifacts.figures"


# --- cloudpickle: everything else ----------------------------------------------------


def _cloudpickle_dumps(value: object) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _cloudpickle_version() -> str:
    import cloudpickle

    return cloudpickle.__version__


register_serializer(
    "json", accepts=_is_plain_json, dumps=_json_dumps, loads=_json_loads, version=lambda: json.__version__,
    executes_code=False,
)
register_serializer(
    "bytes",
    accepts=lambda value: type(value) is bytes or type(value) is bytearray,
    dumps=lambda value: value,
    loads=_bytes_loads,
    version=lambda: "1",
    executes_code=False,
)
register_serializer(
    "numpy", accepts=_numpy_accepts, dumps=_numpy_dumps, loads=_numpy_loads, version=_numpy_version,
    executes_code=False,  # _numpy_loads refuses object arrays and never allows pickles
)
register_serializer(
    "pandas", accepts=_pandas_accepts, dumps=_pickle_dumps, loads=_pickle_loads, version=_pandas_version
)
register_serializer(
    "figure", accepts=_is_stored_figure, dumps=lambda value: value.png, loads=_figure_loads, version=lambda: "1",
    executes_code=False,  # the payload is a PNG image, loaded as bytes
)
register_serializer(
    "cloudpickle",
    accepts=lambda value: True,
    dumps=_cloudpickle_dumps,
    loads=_pickle_loads,
    version=_cloudpickle_version,
)
