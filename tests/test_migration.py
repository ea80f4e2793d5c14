"""Moving from the original bot: only its variables, in a ``.env`` file, and the shipped config."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from core.cli import main
from core.config import load_settings
from tests.envsafe import fresh, subprocess_env
from tests.fakes.original_workers import SDXL_KEY, WorkerServer

__all__ = ["fresh"]


def _env_file(folder: Path, url: str, **more: str) -> None:
    lines = {"FLUX_WORKER_URL": f"{url}/flux", "SDXL_WORKER_URL": f"{url}/sdxl", "SDXL_API_KEY": SDXL_KEY, **more}
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()), encoding="utf-8")


def _sakaibot(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=folder, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=False)


def test_done_when_flux_and_sdxl_work_from_a_dotenv_and_the_shipped_config(fresh):
    with WorkerServer() as server:
        _env_file(fresh, server.url)
        flux = _sakaibot(fresh, "generate", "a red fox", "--model", "flux", "--out", "flux.png")
        sdxl = _sakaibot(fresh, "generate", "a red fox", "--model", "sdxl", "--out", "sdxl.png")
    assert flux.returncode == 0, flux.stderr
    assert sdxl.returncode == 0, sdxl.stderr
    for name in ("flux.png", "sdxl.png"):  # the flux Worker's JPEG is re-encoded as the name asks
        with PILImage.open(fresh / name) as picture:
            assert picture.format == "PNG" and picture.size == (64, 64)
    flux_call, sdxl_call = server.workers.requests
    assert flux_call == {"worker": "flux", "method": "GET", "query": {"prompt": "a red fox"}}
    assert sdxl_call == {"worker": "sdxl", "method": "POST", "json": {"prompt": "a red fox"}}


def test_the_first_original_model_becomes_the_default_and_check_says_why(fresh, capsys):
    with WorkerServer() as server:
        _env_file(fresh, server.url, LLM_PROVIDER="openrouter", OPENROUTER_API_KEY="sk-or-v1-abcdef0123456789")
        code = main(["check"])
        out = capsys.readouterr().out
        assert main(["generate", "a red fox", "--out", "fox.png"]) == 0
    assert code == 0, out
    assert "FLUX_WORKER_URL -> model 'flux' (your Worker, GET)" in out
    assert "SDXL_WORKER_URL -> model 'sdxl' (your Worker, POST) with SDXL_API_KEY as its Bearer key" in out
    assert "default model: 'flux'" in out
    assert "LLM_PROVIDER=openrouter -> prompt enhancement with openrouter/google/gemini-2.5-flash (on)" in out
    assert server.workers.requests[-1]["worker"] == "flux"


def test_tables_in_the_config_win_over_the_original_variables(fresh):
    (fresh / "config.toml").write_text(
        '[engine]\ndefault_model = "preview"\n[models.preview]\nbackend = "preview"\n'
        '[models.flux]\nbackend = "preview"\n', encoding="utf-8")
    os.environ["FLUX_WORKER_URL"] = "https://flux.example.workers.dev"
    os.environ["SAKAIBOT_ENGINE__DEFAULT_MODEL"] = "preview"
    settings = load_settings()
    assert settings.models["flux"] == {"backend": "preview"} and settings.engine.default_model == "preview"


def test_enhancer_from_llm_provider_gemini(fresh):
    os.environ.update(LLM_PROVIDER="gemini", GEMINI_API_KEY="AIzaSyTestKey123")
    settings = load_settings()
    assert settings.plugins["enhancer"]["model"] == "gemini/gemini-2.5-flash"
    assert settings.legacy == ["LLM_PROVIDER=gemini -> prompt enhancement with gemini/gemini-2.5-flash (on)"]


def test_llm_provider_without_its_key_fails_check(fresh, capsys):
    os.environ["LLM_PROVIDER"] = "openrouter"
    assert main(["check"]) == 1
    assert "prompt enhancement: off, OPENROUTER_API_KEY is not set" in capsys.readouterr().out


def test_an_unknown_llm_provider_is_named(fresh, capsys):
    os.environ["LLM_PROVIDER"] = "nope"
    assert main(["models"]) == 2
    assert "LLM_PROVIDER: 'nope' is not one of openrouter, gemini" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "mode"), [({"TELEGRAM_BOT_TOKEN": "123:abc-token"}, "bot"),
                                             ({"TELEGRAM_SESSION": "1AbCdEfGhIjKlMnOpQrStUvWxYz"}, "userbot")])
def test_telegram_starts_from_the_original_variables(fresh, extra, mode):
    os.environ.update(TELEGRAM_API_ID="12345", TELEGRAM_API_HASH="0123456789abcdef0123456789abcdef", **extra)
    settings = load_settings()
    assert settings.platforms["telegram"] == {"enabled": True, "mode": mode}
    from core.engine import Engine

    engine = Engine.from_config(settings=settings)
    assert engine.platform_settings["telegram"].enabled and engine.platform_settings["telegram"].mode == mode


def test_telegram_from_an_existing_session_file(fresh):
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession, StringSession

    session = SQLiteSession(str(fresh / "sakai"))
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(bytes(range(256)))
    session.save()
    session.close()
    os.environ.update(TELEGRAM_API_ID="12345", TELEGRAM_API_HASH="0123456789abcdef0123456789abcdef",
                      TELEGRAM_SESSION=str(fresh / "sakai.session"))
    from core.engine import Engine

    engine = Engine.from_config(settings=load_settings())
    text = engine.platform_settings["telegram"].session.get_secret_value()
    restored = StringSession(text)
    assert restored.dc_id == 2 and restored.auth_key.key == bytes(range(256))


def test_telegram_without_a_login_is_an_error(fresh, capsys):
    os.environ.update(TELEGRAM_API_ID="12345", TELEGRAM_API_HASH="0123456789abcdef0123456789abcdef")
    assert main(["models"]) == 2
    assert "set TELEGRAM_BOT_TOKEN (a bot) or TELEGRAM_SESSION" in capsys.readouterr().err


def test_a_plain_http_worker_url_is_refused_with_the_reason(fresh, capsys):
    os.environ["FLUX_WORKER_URL"] = "http://flux.example.workers.dev/"
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert "FLUX_WORKER_URL (http://flux.example.workers.dev/) must start with https://" in err
    assert "unencrypted" in err and "Traceback" not in err


def test_sakaibot_env_file_names_another_file(fresh, tmp_path_factory, capsys):
    other = tmp_path_factory.mktemp("secrets") / "bot.env"
    other.write_text("FLUX_WORKER_URL=https://flux.example.workers.dev\n", encoding="utf-8")
    os.environ["SAKAIBOT_ENV_FILE"] = str(other)
    assert "flux" in load_settings().models
    os.environ["SAKAIBOT_ENV_FILE"] = str(other) + ".missing"
    assert main(["models"]) == 2
    assert "bot.env.missing: no such file (named by SAKAIBOT_ENV_FILE)" in capsys.readouterr().err


def test_a_worker_echoing_the_bearer_key_never_shows_or_stores_it(fresh, capsys):
    with WorkerServer() as server:
        server.workers.max_prompt = 10
        _env_file(fresh, server.url)
        code = main(["generate", "a very long prompt indeed", "--model", "sdxl"])
    err = capsys.readouterr().err
    assert code == 1 and "Prompt too long" in err and "Authorization: ***" in err
    assert SDXL_KEY not in err
    with sqlite3.connect(fresh / "sakaibot.db") as db:
        dumped = "\n".join(db.iterdump())
    assert "Prompt too long" in dumped and SDXL_KEY not in dumped
