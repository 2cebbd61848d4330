"""The server's socket protocol: versioned, length-prefixed msgpack that cannot run code.

Why msgpack and not pickle or JSON: the socket is a trust boundary (any process of the
user's can connect), and unpickling runs whatever the bytes name; msgpack decodes to
plain values only. Unlike JSON it keeps NaN and infinities exact (the metrics are full of
NaN while a window fills), carries binary without base64 (a snapshot's chart series are
arrays of doubles), and is several times faster to encode in its C extension.

Framing
-------
Every frame is a 4-byte big-endian unsigned length, then that many bytes of one msgpack
object. A client may send at most `MAX_CLIENT_FRAME` bytes in one frame (commands are
small); the server's frames are bounded by `MAX_SERVER_FRAME`. A longer length prefix is
a protocol error, and the connection is closed before reading the body.

Handshake
---------
The client's first frame is ``{"hello": "quanttui", "version": V, "history": B}``
(B: whether to send the alerts fired before it attached; default true). The server answers
``{"welcome": PROTOCOL_VERSION, "pid": ..., "db": ..., "pairs": [...], "started": ...,
"viewers": n, "label": "LIVE" | "DEMO" | ..., "web": URL | None}`` (`label`, what a view's
header says, and `web`, the browser view's address without its token, were added within
version 1: a view reads them with a default)
when ``V == PROTOCOL_VERSION``, and otherwise ``{"error": "<one line>"}`` and closes.
``{"hello": "quanttui", "version": V, "query": "info"}`` asks for the welcome alone (for
`quanttui sessions`), then the server closes.

After the handshake
-------------------
client -> server: ``["call", id, method, args, kwargs]``, `method` one of `COMMANDS`
(``add_basket`` takes the legs as one list: ``["call", id, "add_basket", [["A", "B",
"C"]], {}]``),
each argument checked against its type (`check_call`); ``["detach"]``.
server -> client: ``["ready", pair_infos, rules_by_pair]`` first, then
``["events", [event, ...]]`` (the ordered events, then the latest snapshot per pair and
the status; each event is encoded once for every view, `encode_events`), ``["reply", id, ok, value]`` after the events its command published,
``["error", text]`` before closing on a protocol error, and ``["done", Finished]`` when
the server stops.

Values
------
msgpack's own types, plus four extension types, each decoded only into what they name:
1 = a dataclass of `REGISTRY`, ``[name, {field: value}]``; 2 = a tuple (a list);
3 = an `array.array` of ``q`` or ``d``, ``[typecode, bytes]``; 4 = a numpy array of an
allowed dtype, ``[dtype, shape, bytes]``. An unknown name, field, typecode or dtype is a
`ProtocolError`.
"""

from __future__ import annotations

import array
import dataclasses
import struct
import threading
from collections import OrderedDict
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_CLIENT_FRAME = 64 * 1024
MAX_SERVER_FRAME = 64 * 1024 * 1024
HELLO = "quanttui"

_EXT_DATACLASS, _EXT_TUPLE, _EXT_ARRAY, _EXT_NDARRAY = 1, 2, 3, 4
_ARRAY_CODES = frozenset("qd")
_DTYPES = frozenset({"<f8", "<i8", "|b1", "<f4", "<i4"})


class ProtocolError(Exception):
    """A frame that breaks the protocol; the message says how in one line."""


def _registry() -> dict[str, type]:
    """Every dataclass an event can carry, by name: those of `quanttui.model`, the events,
    and the backtest reports of a pair (`quanttui.analytics.backtest`) and of a basket
    (`quanttui.analytics.basket`: `BasketBacktestReport` and what it holds)."""
    from quanttui import model
    from quanttui.analytics import backtest, basket
    from quanttui.engine import events

    out: dict[str, type] = {}
    for mod in (model, events, backtest, basket):
        for name in dir(mod):
            obj = getattr(mod, name)
            if (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and obj.__module__ == mod.__name__
            ):
                out[name] = obj
    return out


REGISTRY: dict[str, type] = {}


def _types() -> dict[str, type]:
    if not REGISTRY:
        REGISTRY.update(_registry())
    return REGISTRY


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if _types().get(name) is not type(obj):
            raise TypeError(f"not a protocol type: {name}")
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return msgpack.ExtType(_EXT_DATACLASS, _pack([name, fields]))
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))
    if isinstance(obj, array.array):
        return msgpack.ExtType(_EXT_ARRAY, _pack([obj.typecode, obj.tobytes()]))
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return msgpack.ExtType(_EXT_NDARRAY, _pack([a.dtype.str, list(a.shape), a.tobytes()]))
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)


def _ext_hook(code: int, data: bytes) -> Any:
    value = _unpack(data)
    if code == _EXT_TUPLE:
        if not isinstance(value, list):
            raise ProtocolError("a tuple that is not a list")
        return tuple(value)
    if code == _EXT_ARRAY:
        if not (isinstance(value, list) and len(value) == 2 and value[0] in _ARRAY_CODES):
            raise ProtocolError("an array of an unknown type")
        out = array.array(value[0])
        try:
            out.frombytes(value[1])
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"a bad array ({exc})") from None
        return out
    if code == _EXT_NDARRAY:
        if not (isinstance(value, list) and len(value) == 3 and value[0] in _DTYPES):
            raise ProtocolError("a numpy array of an unknown dtype")
        try:
            return np.frombuffer(value[2], dtype=value[0]).reshape(value[1]).copy()
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"a bad numpy array ({exc})") from None
    if code == _EXT_DATACLASS:
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict)):
            raise ProtocolError("a bad object")
        cls = _types().get(value[0]) if isinstance(value[0], str) else None
        if cls is None:
            raise ProtocolError(f"unknown type {str(value[0])[:40]!r}")
        try:
            return cls(**value[1])
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"a bad {value[0]} ({exc})") from None
    raise ProtocolError(f"unknown extension type {code}")


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many kinds for bad bytes
        raise ProtocolError(f"not a msgpack frame ({exc.__class__.__name__})") from None


def encode(obj: Any) -> bytes:
    """One frame: the length prefix and the msgpack body of `obj`."""
    body = _pack(obj)
    if len(body) > MAX_SERVER_FRAME:
        raise ProtocolError(f"a frame of {len(body)} bytes is over {MAX_SERVER_FRAME}")
    return HEADER.pack(len(body)) + body


SHARED_EVENTS = 64
"""How many recently sent events keep their encoded bytes (`encode_events`): enough for
the views to send the same events within a drain or two of each other (20 pairs publish
about 40 a second), few enough not to keep snapshots alive for long."""
_shared: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
_shared_lock = threading.Lock()


def _packed_event(event: object) -> bytes:
    """The msgpack body of one event, encoded once however many views send it. Events
    are frozen, and the cache holds each one it keys by ``id``, so an id cannot be
    reused while its entry lives."""
    key = id(event)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None and hit[0] is event:
            return hit[1]
    data = _pack(event)
    with _shared_lock:
        _shared[key] = (event, data)
        while len(_shared) > SHARED_EVENTS:
            _shared.popitem(last=False)
    return data


def _array_head(n: int) -> bytes:
    """msgpack's array header for `n` items (fixarray, array 16, array 32)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_events(events: list) -> bytes:
    """The frame ``["events", events]``, byte for byte what `encode` makes of it, with
    each event's bytes shared between the views that send it (`_packed_event`): the
    server encodes a snapshot once, not once per attached view."""
    parts = [_array_head(2), _pack("events"), _array_head(len(events))]
    parts += [_packed_event(e) for e in events]
    body = b"".join(parts)
    if len(body) > MAX_SERVER_FRAME:
        raise ProtocolError(f"a frame of {len(body)} bytes is over {MAX_SERVER_FRAME}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    """The object of one frame's body; raises `ProtocolError`."""
    return _unpack(body)


def frame_size(head: bytes, limit: int) -> int:
    """The body length a 4-byte prefix announces; raises `ProtocolError` above `limit`."""
    (size,) = HEADER.unpack(head)
    if size > limit:
        raise ProtocolError(f"a frame of {size} bytes is over the limit of {limit}")
    return size


def hello(query: str | None = None, *, history: bool = True) -> dict:
    out: dict[str, Any] = {"hello": HELLO, "version": PROTOCOL_VERSION, "history": history}
    if query:
        out["query"] = query
    return out


def check_hello(frame: Any) -> tuple[str, bool]:
    """The query a client's first frame asks (``""`` for a view) and whether it wants
    the alerts fired before it attached, or raise `ProtocolError` with the line to send
    back."""
    if not isinstance(frame, dict) or frame.get("hello") != HELLO:
        raise ProtocolError("not a quanttui client (expected a hello frame)")
    version = frame.get("version")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not this server's {PROTOCOL_VERSION}; "
            "use the same quanttui version for the server and its views"
        )
    query = frame.get("query", "")
    if query not in ("", "info"):
        raise ProtocolError(f"unknown query {str(query)[:40]!r}")
    history = frame.get("history", True)
    if not isinstance(history, bool):
        raise ProtocolError("history must be true or false")
    return query, history


_STR, _INT, _BOOL, _OPT_STR = (str,), (int,), (bool,), (str, type(None))
_PARAMS = {
    "timeframe": _STR,
    "window": _INT,
    "hedge": _STR,
    "swap": _BOOL,
    "symbol_x": _STR,
    "symbol_y": _STR,
}
COMMANDS: dict[str, tuple[tuple[tuple[type, ...], ...], dict[str, tuple[type, ...]]]] = {
    "add_pair": ((_STR, _STR), {}),
    "add_basket": (((list, tuple),), {}),
    "remove_pair": ((_STR,), {}),
    "set_params": ((_STR,), _PARAMS),
    "add_rule": ((_STR, _OPT_STR), {"key": _OPT_STR}),
    "remove_rule": ((_STR, _OPT_STR), {"key": _OPT_STR}),
    "set_meta": ((_STR, _STR), {}),
    "export": (
        ((tuple, list, type(None)),),
        {"out_dir": _OPT_STR, "watchlist": (bool, type(None))},
    ),
    "backtest": ((_STR, (dict, object)), {}),
}
"""Each command a view may send: the types of its positional arguments (a trailing one may
be left out) and of its keyword arguments. Nothing else reaches the engine."""


def check_call(frame: Any) -> tuple[int, str, list, dict]:
    """``(id, method, args, kwargs)`` of a valid call frame; raises `ProtocolError`."""
    if not (isinstance(frame, list) and len(frame) == 5 and frame[0] == "call"):
        raise ProtocolError("expected a call frame")
    _, cid, method, args, kwargs = frame
    if not isinstance(cid, int) or isinstance(cid, bool):
        raise ProtocolError("a call id must be an integer")
    if method not in COMMANDS:
        raise ProtocolError(f"unknown command {str(method)[:40]!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ProtocolError(f"{method}: arguments must be a list and a map")
    positional, named = COMMANDS[method]
    least = len(positional) - (type(None) in positional[-1])
    if not least <= len(args) <= len(positional):
        raise ProtocolError(f"{method}: takes {len(positional)} arguments, got {len(args)}")
    for i, (value, types) in enumerate(zip(args, positional, strict=False)):
        if isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"{method}: argument {i + 1} has the wrong type (bool)")
        if not isinstance(value, types):
            raise ProtocolError(
                f"{method}: argument {i + 1} has the wrong type ({type(value).__name__})"
            )
    for k, value in kwargs.items():
        types = named.get(k)
        if types is None:
            raise ProtocolError(f"{method}: unknown argument {str(k)[:40]!r}")
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ProtocolError(
                f"{method}: argument {k} has the wrong type ({type(value).__name__})"
            )
    if method == "export" and args and isinstance(args[0], list | tuple):
        if not all(isinstance(k, str) for k in args[0]):
            raise ProtocolError("export: pair keys must be strings")
    if method == "add_basket" and not (
        len(args[0]) <= 12 and all(isinstance(k, str) and len(k) <= 20 for k in args[0])
    ):
        raise ProtocolError("add_basket: the legs must be at most 12 symbols")
    if method == "backtest" and len(args) == 2:
        from quanttui.analytics.backtest import BacktestParams

        if not isinstance(args[1], BacktestParams):
            raise ProtocolError("backtest: the second argument must be BacktestParams")
    return cid, method, args, kwargs
