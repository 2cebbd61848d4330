"""Placeholder until the sanitiser lands (replaced by the real module)."""


def printable(value: object, limit: int = 300, *, one_line: bool = True) -> str:
    text = str(value)
    out = []
    for ch in text:
        o = ord(ch)
        if o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + "…"
