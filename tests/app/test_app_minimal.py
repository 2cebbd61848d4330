from __future__ import annotations

from quanttui.app.app import QuantApp
from quanttui.config import load_config


async def test_header_names_pair_and_quits_on_q(tmp_path) -> None:
    cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(tmp_path / "t.db")})
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
    async with app.run_test() as pilot:
        title = str(app.query_one("#title").render())
        assert "BTCUSDT -> ETHUSDT" in title
        assert "ETHUSDT = a + b*BTCUSDT" in title
        await pilot.press("q")
    assert app.return_code == 0
