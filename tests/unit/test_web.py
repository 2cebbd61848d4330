"""The browser view's pure parts: `--web` addresses, the token rules, the front's host
and origin checks, and how an export is packed for download."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from quanttui.app.web import exported_paths, pack, zip_name
from quanttui.errors import UsageError
from quanttui.web import WebAddress, check_token, parse_address, web_spec


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("8000", "127.0.0.1", 8000),
        ("0", "127.0.0.1", 0),
        ("0.0.0.0:8000", "0.0.0.0", 8000),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:8000", "::1", 8000),
        ("box.example.org:80", "box.example.org", 80),
    ],
)
def test_addresses(text: str, host: str, port: int) -> None:
    assert parse_address(text) == WebAddress(host, port)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "65536", "-1", "1:2:3", "::1:80", "[::1]8000", "[nope]:80", "host:", ":80",
     "bad_host:80", "a b:80", "123456"],
)  # fmt: skip
def test_bad_addresses_are_one_usage_line(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_address(text)
    assert "\n" not in str(exc.value) and "--web" in str(exc.value)


def test_loopback_is_the_host_as_written() -> None:
    assert parse_address("8000").loopback and parse_address("[::1]:1").loopback
    assert parse_address("localhost:1").loopback
    assert not parse_address("127.0.0.2:1").loopback  # documented: needs a token
    assert not parse_address("0.0.0.0:1").loopback


def test_a_token_is_needed_off_loopback_and_honoured_on_it() -> None:
    assert web_spec("8000", None).token is None
    given = "a" * 16
    assert web_spec("8000", given).token == given  # honoured, not required
    made = web_spec("0.0.0.0:8000", None)
    assert made.generated and made.token is not None and len(made.token) >= 40
    assert web_spec("0.0.0.0:8000", None).token != made.token
    assert web_spec("0.0.0.0:8000", given).token == given
    assert not web_spec("0.0.0.0:8000", given).generated
    env = "e" * 20
    assert web_spec("0.0.0.0:1", None, env).token == env
    assert web_spec("0.0.0.0:1", given, env).token == given  # the flag wins
    for bad in ("short", "x" * 15, "has space in it..", "é" * 20, "a" * 257, "tok;en=1234567890"):
        with pytest.raises(UsageError):
            check_token(bad)


def test_the_front_checks_host_and_origin() -> None:
    front = pytest.importorskip("quanttui.web.front")
    for ok in ("127.0.0.1:8000", "localhost:1", "LOCALHOST", "[::1]:8000", "127.9.9.9"):
        assert front.loopback_host(ok), ok
    for bad in ("evil.example:8000", "10.0.0.1", "[::2]:1", "localhost.evil.example", ""):
        assert not front.loopback_host(bad), bad
    assert front.same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not front.same_origin("http://evil.example", "127.0.0.1:8000")
    assert not front.same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not front.same_origin("null", "127.0.0.1:8000")
    import textual_serve

    page = front.index_template(Path(textual_serve.__file__).parent / "templates")
    assert "fonts.googleapis.com" not in page


def test_an_export_is_packed_into_one_zip(tmp_path: Path) -> None:
    names = [f"BTCUSDT_ETHUSDT_1m_20250101T000000Z_{k}.csv" for k in ("ticks", "bars")]
    for n in names:
        (tmp_path / n).write_text(f"{n}\n")
    lines = (f"{tmp_path / names[0]} (1,234 rows)", f"{tmp_path / names[1]} (5 rows)")
    paths = exported_paths(lines)
    assert paths == [tmp_path / n for n in names]
    assert zip_name(paths) == "BTCUSDT_ETHUSDT_1m_20250101T000000Z.zip"
    out = tmp_path / "a.zip"
    assert pack(paths, out) == 2
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == sorted(names)
        assert zf.read(names[0]) == f"{names[0]}\n".encode()

    folder = tmp_path / "watchlist_20250101T000000Z"
    folder.mkdir()
    (folder / "watchlist.csv").write_text("pair\n")
    (folder / "A_B_1m_x_ticks.csv").write_text("t\n")
    (wl,) = exported_paths((f"{folder} (2 pairs, 9 CSV files)",))
    assert wl == folder and zip_name([wl]) == "watchlist_20250101T000000Z.zip"
    assert pack([wl], tmp_path / "w.zip") == 2
    with zipfile.ZipFile(tmp_path / "w.zip") as zf:
        assert sorted(zf.namelist()) == [
            "watchlist_20250101T000000Z/A_B_1m_x_ticks.csv",
            "watchlist_20250101T000000Z/watchlist.csv",
        ]


def test_an_attached_views_export_passes_the_servers_check() -> None:
    """`e` in a tab (an attached view) sends `export` over the server's socket: its
    check took the argument's three types for three arguments and raised TypeError."""
    from quanttui.server import protocol as P

    assert P.check_call(["call", 1, "export", [["BTCUSDT/ETHUSDT"]], {}])[2] == [
        ["BTCUSDT/ETHUSDT"]
    ]
    assert P.check_call(["call", 2, "export", [], {"watchlist": True}])[1] == "export"
    assert P.check_call(["call", 3, "export", [None], {"out_dir": None}])[1] == "export"
    for bad in (["x"], [[1]], [[], []]):
        with pytest.raises(P.ProtocolError):
            P.check_call(["call", 4, "export", bad, {}])
