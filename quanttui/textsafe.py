"""One sanitiser for text that comes from outside (exchange bodies and error messages,
websocket close reasons, frame fields, file names and contents) on its way to a
terminal, a notification, a log line, stdout JSON or a CSV.

Why at output and not at creation: the same exception text reaches several sinks, and a
sink is the place that knows whether a newline is acceptable and how long a line may be.
Why escape rather than strip: the user should still see what the server said, including
that it tried something odd.

What is escaped, and why:

* C0 controls except tab (and newline, unless ``one_line``), DEL and C1 (U+0080-U+009F):
  ESC starts CSI and OSC sequences (ECMA-48 §5.3-5.4; OSC 0 sets the window title,
  OSC 52 writes the clipboard, also across SSH), U+009B and U+009D are 8-bit CSI and OSC
  in terminals that honour C1, CR rewrites the line, BEL rings.
* Format characters (category Cf), which include the bidi embeddings, overrides and
  isolates (U+202A-U+202E, U+2066-U+2069; the "Trojan Source" attack, CVE-2021-42574),
  zero-width characters (U+200B-U+200D, U+2060) and the BOM: text that displays
  differently from what it is.
* Line and paragraph separators (U+2028, U+2029; Python's ``splitlines`` breaks on them)
  and lone surrogates (category Cs, e.g. from ``errors="surrogateescape"``), which cannot
  be encoded to UTF-8 and would crash a strict stdout.

Escapes follow Python's ``repr`` (``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0041``). Backslashes are
left alone, so Windows paths stay readable; an escape is therefore for the eye only, not
for round-tripping. Rich markup such as ``[reverse]`` passes through as text: it is inert
only if the caller renders the result as plain text (``print``, ``rich.text.Text``,
``markup=False``), never as markup.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata

ELLIPSIS = "…"
DEFAULT_LIMIT = 300
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r"}
_ASCII_SAFE = re.compile(r"[\t\n\x20-\x7e]*")


def _escape(ch: str, one_line: bool) -> str:
    if ch == "\t" or (ch == "\n" and not one_line):
        return ch
    o = ord(ch)
    if 0x20 <= o < 0x7F:
        return ch
    if ch in _NAMED:
        return _NAMED[ch]
    if o < 0x80 or unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        if o <= 0xFF:
            return f"\\x{o:02x}"
        if o <= 0xFFFF:
            return f"\\u{o:04x}"
        return f"\\U{o:08x}"
    return ch


def printable(value: object, limit: int = DEFAULT_LIMIT, *, one_line: bool = False) -> str:
    """`value` as plain text that is safe to show, at most `limit` characters long.

    ``str(value)`` (bytes are decoded as UTF-8 with replacement), with every control,
    format, separator and surrogate character except tab (and newline, unless
    `one_line`) replaced by a visible escape such as ``\\x1b``. When the escaped text is
    longer than `limit`, it is cut at a character or escape boundary and ends with "…",
    so the result is never longer than `limit`. Only the first ``limit + 1`` characters
    of the input are examined, so a 1 MB message costs no more than a short one.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and _ASCII_SAFE.fullmatch(text) and not (one_line and "\n" in text):
        return text
    pieces = []
    size = 0
    for ch in text[: limit + 1]:
        p = _escape(ch, one_line)
        pieces.append(p)
        size += len(p)
    if size <= limit:
        return "".join(pieces)
    out = []
    size = 0
    for p in pieces:
        if size + len(p) > limit - len(ELLIPSIS):
            break
        out.append(p)
        size += len(p)
    out.append(ELLIPSIS)
    return "".join(out)


class SafeFormatter(logging.Formatter):
    """Log records as one sanitised line each: a record that quotes the exchange cannot
    write control sequences or forge further log lines. Tracebacks keep their newlines."""

    def __init__(self, fmt: str = "%(message)s", limit: int = 1000) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record), self.limit, one_line=True)

    def formatException(self, ei) -> str:
        return printable(super().formatException(ei), 20 * self.limit)

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), 20 * self.limit)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record, as Python's
    last-resort handler does, so that a Textual app's capture of stderr still applies."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def guard_logging(logger_name: str = "quanttui") -> None:
    """Route warnings of `logger_name` through `SafeFormatter` to stderr. Without a
    handler, Python's last-resort handler would print them raw (``%(message)s``).
    Idempotent."""
    logger = logging.getLogger(logger_name)
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(SafeFormatter())
    logger.addHandler(handler)
