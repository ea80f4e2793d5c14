"""Every configuration error an operator can make: one message naming the setting, no traceback, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.cli import main
from core.errors import StoreOpenError
from tests.envsafe import fresh, subprocess_env

__all__ = ["fresh"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


def _config(folder, text: str) -> None:
    (folder / "config.toml").write_text(text, encoding="utf-8")


def test_non_utf8_config_in_a_subprocess(fresh):
    (fresh / "config.toml").write_bytes(b'[engine]\ndefault_model = "caf\xe9"\n')
    done = subprocess.run([sys.executable, "-m", "core.cli", "models"], cwd=fresh, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("config.toml: not UTF-8 text (byte 29); save the file as UTF-8")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 2


def test_malformed_json_in_a_table_variable(fresh, capsys):
    os.environ["SAKAIBOT_MODELS"] = '{"flux": {"backend": "cloudflare"'
    code, err = _run(capsys, "models")
    assert code == 2
    assert "environment: SAKAIBOT_MODELS: not valid JSON (Expecting ',' delimiter at character 33)" in err


def test_unknown_backend(fresh, capsys):
    _config(fresh, '[models.preview]\nbackend = "preview"\n[models.x]\nbackend = "dalle"\n')
    code, err = _run(capsys, "models")
    assert code == 2 and "config.toml: models.x.backend: unknown backend 'dalle' (available: " in err


def test_missing_secret_for_an_enabled_platform(fresh, capsys):
    _config(fresh, '[platforms.discord]\nenabled = true\n')
    code, err = _run(capsys, "models")
    assert code == 2 and "config.toml: platforms.discord: set DISCORD_TOKEN in the environment" in err
    assert "Value error" not in err


def test_every_table_is_reported_in_one_round(fresh, capsys):
    _config(fresh, '[engine]\nqueue_order = "random"\nmax_attempts = 0\n[models.preview]\nbackend = "preview"\n'
                   '[models.cf]\nbackend = "cloudflare"\nmodel = "@cf/x/y"\n'
                   '[platforms.telegram]\nenabled = true\n[plugins.nothing]\nx = 1\n')
    code, err = _run(capsys, "models")
    lines = [line.strip() for line in err.splitlines()]
    assert code == 2 and lines[0] == "Invalid configuration:"
    assert "- config.toml: engine.queue_order: Input should be 'fair' or 'fifo'" in lines
    assert "- config.toml: engine.max_attempts: Input should be greater than or equal to 1" in lines
    assert any(line.startswith("- config.toml: models.cf: set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN")
               for line in lines)
    assert any(line.startswith("- config.toml: platforms.telegram: set TELEGRAM_API_ID") for line in lines)
    assert "- config.toml: plugins.nothing: no loaded plugin declares this table" in lines
    assert "Value error" not in err and "default_model" not in err


def test_an_unknown_table_hides_no_other_problem(fresh, capsys):
    _config(fresh, '[foo]\nx = 1\n[models.a]\nbackend = "nope"\n')
    code, err = _run(capsys, "models")
    assert code == 2 and "config.toml: foo: Extra inputs are not permitted" in err
    assert "config.toml: models.a.backend: unknown backend 'nope'" in err


def test_long_messages_are_not_wrapped(fresh, capsys):
    _config(fresh, '[platforms.telegram]\nenabled = true\nmode = "userbot"\n')
    _code, err = _run(capsys, "models")
    line = next(line for line in err.splitlines() if "platforms.telegram" in line)
    assert line.endswith("(make one with: python -m platforms.telegram.login) in the environment")


@pytest.mark.parametrize(("table", "variable"), [
    ('[models.cf]\nbackend = "cloudflare"\nmodel = "@cf/a/b"\napi_token = "abcd1234"', "CLOUDFLARE_API_TOKEN"),
    ('[models.w]\nbackend = "cloudflare-worker"\nurl = "https://w.example"\napi_key = "k1234"\n'
     'api_key_env = "MY_WORKER_KEY"', "MY_WORKER_KEY"),
    ('[platforms.discord]\ntoken = "abcd.efgh"', "DISCORD_TOKEN"),
    ('[platforms.telegram]\nbot_token = "1:abc"\napi_hash = "abcdef"', "TELEGRAM_BOT_TOKEN"),
    ('[plugins.enhancer]\nmodel = "gemini/gemini-2.5-flash"\nkey = "AIza1234"', "OPENROUTER_API_KEY"),
])
def test_secrets_written_in_the_file_are_refused(fresh, capsys, table, variable):
    _config(fresh, table + "\n")
    code, err = _run(capsys, "models")
    assert code == 2 and "secrets are not read from the config file; remove it and set" in err
    assert variable in err


def test_run_with_nothing_enabled(fresh, capsys):
    _config(fresh, '[platforms.console]\nenabled = false\n')
    code, err = _run(capsys, "run")
    assert code == 2 and "\nNothing to run: no platform is enabled." in err


def test_a_store_that_cannot_open_stops_start_up_with_one_message(fresh, capsys, monkeypatch):
    from core.engine import Engine

    async def refuse(self: Engine) -> None:
        raise StoreOpenError(str(fresh / "sakaibot.db"), "the file is not a database",
                             "Move it aside and start again.")

    monkeypatch.setattr(Engine, "start", refuse)
    for command in ("run", "generate"):
        argv = [command] if command == "run" else [command, "a fox"]
        code, err = _run(capsys, *argv)
        assert code == 2
        assert err.splitlines()[-1].endswith("sakaibot.db: the file is not a database. Move it aside and start again.")


def test_bad_option_values_give_the_chat_sentence(fresh, capsys):
    assert _run(capsys, "generate", "fox", "--steps", "0") == (1, "--steps takes a whole number from 1 to 150, "
                                                                   "not '0'.\n")
    assert _run(capsys, "generate", "fox", "--ar", "wide") == (1, "--ar takes a ratio like 16:9, not 'wide'.\n")
    assert _run(capsys, "generate", "fox", "--seed", "-3")[0] == 1


def test_an_unknown_output_format_is_refused_before_any_work(fresh, capsys):
    code, err = _run(capsys, "generate", "fox", "--out", "fox.bmp")
    assert code == 1 and "SakaiBot writes .png, .jpg, .jpeg, .webp, .gif files, not '.bmp'" in err
    assert not (fresh / "fox.bmp").exists()


def test_a_corrupt_store_file_in_a_subprocess(fresh):
    (fresh / "sakaibot.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 4096)
    done = subprocess.run([sys.executable, "-m", "core.cli", "generate", "a fox"], cwd=fresh, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Invalid configuration:\n  - store: ") and "sakaibot.db" in done.stderr
