"""What an operator sees: options anywhere, listings, logs, exit codes of failures and interruptions."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from PIL import Image as PILImage

from core.cli import build_parser, main
from core.errors import BackendUnavailable
from tests.envsafe import fresh, subprocess_env
from tests.fakes.original_workers import WorkerServer

__all__ = ["fresh"]


def test_global_options_are_accepted_after_the_command(fresh, capsys):
    (fresh / "other.toml").write_text('[models.zebra]\nbackend = "preview"\n[engine]\ndefault_model = "zebra"\n',
                                      encoding="utf-8")
    assert main(["models", "--config", "other.toml"]) == 0
    assert "zebra (default)" in capsys.readouterr().out
    assert main(["--config", "other.toml", "models", "-v"]) == 0


def test_every_argument_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for each in (parser, *commands.choices.values()):
        for action in each._actions:
            assert action.help, f"{each.prog} {action.dest} has no help"


def test_plugins_show_package_and_version_and_hide_the_core(fresh, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "sakaibot.defaults" not in out and "sakaibot.default-model" not in out and "sakaibot.store" not in out
    row = next(line for line in out.splitlines() if "│ preview" in line)
    assert "sakaibot" in row and "0.1.0" in row and "backend preview" in row


def test_models_show_brackets_as_written(fresh, capsys):
    (fresh / "config.toml").write_text('[models.preview]\nbackend = "preview"\n'
                                       'description = "FLUX.1 [schnell] on [bold]Workers[/bold]"\n',
                                       encoding="utf-8")
    os.environ["COLUMNS"] = "200"
    assert main(["models"]) == 0
    assert "FLUX.1 [schnell] on [bold]Workers[/bold]" in capsys.readouterr().out


def test_generate_writes_a_gif_when_asked(fresh, capsys):
    assert main(["generate", "a red fox", "--out", "fox.gif", "--seed", "1"]) == 0
    with PILImage.open(fresh / "fox.gif") as picture:
        assert picture.format == "GIF"
    assert capsys.readouterr().out.startswith("fox.gif\n")


def test_generate_marks_its_own_delivery(fresh):
    assert main(["generate", "a red fox", "--out", "fox.png"]) == 0
    with sqlite3.connect(fresh / "sakaibot.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
        if "pending_results" in tables:
            assert db.execute("select count(*) from pending_results").fetchone() == (0,)


def test_json_logs_are_one_object_per_line(fresh, capsys):
    os.environ["SAKAIBOT_LOGGING__FORMAT"] = "json"
    os.environ["LLM_PROVIDER"] = "gemini"  # logs a warning: the key is missing
    assert main(["models"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("GEMINI_API_KEY is not set" in r["message"] for r in records)


def test_routine_backend_failures_print_no_traceback_and_promise_no_retry(fresh, capsys):
    os.environ["SAKAIBOT_ENGINE__RETRY_INITIAL_DELAY"] = "0"
    with WorkerServer() as server:
        os.environ["FLUX_WORKER_URL"] = f"{server.url}/flux"
        server.workers.capacity_next = 3
        capacity = main(["generate", "a red fox"])
        capacity_err = capsys.readouterr().err
        server.workers.drop_next = 3
        dropped = main(["generate", "a red fox"])
        dropped_err = capsys.readouterr().err
    assert capacity == 1 and capacity_err.strip().splitlines()[-1] == "✗ Cloudflare is out of capacity right now."
    assert dropped == 1 and "cannot be reached right now" in dropped_err
    for err in (capacity_err, dropped_err):
        assert "Traceback" not in err and "again shortly" not in err and len(err.splitlines()) <= 6


def test_run_exits_non_zero_when_serving_fails(fresh, capsys, monkeypatch):
    from core.engine import Engine

    async def broken(self: Engine, platforms: object = None) -> None:
        raise BackendUnavailable("Telegram cannot be reached.")

    monkeypatch.setattr(Engine, "serve", broken)
    assert main(["run"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "sakaibot run stopped: Telegram cannot be reached."


def test_ctrl_c_during_generate_cancels_the_job_and_says_so(fresh):
    (fresh / "config.toml").write_text('[store]\npath = "sakaibot.db"\n[models.preview]\nbackend = "preview"\n'
                                       'latency = 60.0\n', encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "core.cli", "generate", "a slow fox"], cwd=fresh,
                             env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = _wait_for_a_running_job(fresh / "sakaibot.db")
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert err.strip().splitlines()[-1] == f"Interrupted: job {job} was cancelled; no image was made."
    with sqlite3.connect(fresh / "sakaibot.db") as db:
        assert db.execute("select state from jobs where id = ?", (job,)).fetchone() == ("cancelled",)


def _wait_for_a_running_job(db_path, attempts: int = 300) -> str:
    for _ in range(attempts):
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as db:
                    row = db.execute("select id from jobs where state = 'generating'").fetchone()
            except sqlite3.OperationalError:
                row = None
            if row:
                return str(row[0])
        time.sleep(0.05)
    raise AssertionError("the job never started")


def test_commands_that_start_no_platform_import_no_chat_sdk():
    from tests.benchmarks import startup_bench

    assert startup_bench.imported_by_models() == "imported: []"
    table = startup_bench.render({"python -c pass": 20.0, "sakaibot models": 120.0, "import discord, telethon": 300.0})
    assert "sakaibot models - baseline" in table and "100 ms" in table
