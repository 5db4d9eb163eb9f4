"""The web pages' settings are ordinary configuration: certgate.toml accepts them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

from tests.gateway.conftest import ORIGIN


def test_agent_url_and_agreement_version_from_certgate_toml(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    config_file = tmp_path / "certgate.toml"
    config_file.write_text(
        'agent_url = "http://127.0.0.1:21791"\nagreement_version = "2026-02"\n', encoding="utf-8"
    )
    app = make_app(CONFIG_FILE=str(config_file))
    page = app.test_client().get("/login", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200
    assert "http://127.0.0.1:21791" in page.headers["Content-Security-Policy"]
    assert "2026-02" in page.get_data(as_text=True)
    assert app.config["PUBLIC_ORIGIN"] == ORIGIN
