"""The console platform and the CLI, driven the way a person uses them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

from PIL import Image as PILImage

from core.cli import main, write_image
from core.types import Image
from platforms.console.platform import ConsolePlatform, ConsoleSettings
from platforms.console.stdin import join_continued
from tests.utils import PNG

ROOT = Path(__file__).resolve().parent.parent


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line + "\n"


async def _run_console(engine, tmp_path: Path, *lines: str) -> str:
    out = io.StringIO()
    console = ConsolePlatform(ConsoleSettings(enabled=True, output_dir=tmp_path), lines=_lines(*lines), out=out)
    await engine.serve([console])
    return out.getvalue()


async def test_console_generates_and_saves_an_image(engine_factory, tmp_path):
    engine, _backend = await engine_factory()
    text = await _run_console(engine, tmp_path, "/image=a=a red fox --seed 5", "hello", "/image=zzz=cat")
    saved = list(tmp_path.glob("*.png"))
    assert len(saved) == 1
    with PILImage.open(saved[0]) as picture:
        picture.load()
        assert picture.text["prompt"] == "a red fox" and picture.text["seed"] == "5"
        assert picture.text["model"] == "a" and picture.tobytes() == PILImage.open(io.BytesIO(PNG)).tobytes()
    assert "⏳ Queued for a" in text and "✅ Done" in text and "seed 5" in text and "📝 a red fox" in text
    assert "Not a command. Type /help." in text
    assert "Unknown model 'zzz'. Available models: a." in text


async def test_console_queue_cancel_models_help(engine_factory, tmp_path):
    import asyncio

    engine, backend = await engine_factory(max_pending_per_user=5)
    backend.models["a"].gate = asyncio.Event()
    text = await _run_console(engine, tmp_path, "/image a", "/image b", "/queue", "/cancel", "/cancel", "/models",
                              "/help", "/cancel")
    assert "Queue:\n• a: 0/1 running, 0 waiting" in text or "Queue:" in text
    assert text.count("🚫 Cancelled job") == 2
    assert "You have no job waiting or running." in text
    assert "• a (default) - fake model a" in text and "/image=<model>=<prompt>" in text


async def test_backslash_continues_a_prompt_over_lines():
    joined = [line async for line in join_continued(_lines("/image=a=first \\", "second", "/queue"))]
    assert joined == ["/image=a=first \nsecond", "/queue"]


def test_cli_generate_writes_a_valid_png(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text())
    monkeypatch.setenv("SAKAIBOT_CONFIG", str(tmp_path / "config.toml"))
    code = main(["generate", "a lighthouse at dusk", "--out", "lighthouse.png", "--seed", "42", "--ar", "16:9"])
    assert code == 0
    with PILImage.open(tmp_path / "lighthouse.png") as picture:
        picture.verify()
    with PILImage.open(tmp_path / "lighthouse.png") as picture:
        assert picture.format == "PNG" and picture.width > picture.height
        assert picture.text["seed"] == "42"
    assert "seed 42" in capsys.readouterr().out


def test_cli_reports_user_errors_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text())
    monkeypatch.setenv("SAKAIBOT_CONFIG", str(tmp_path / "config.toml"))
    assert main(["generate", "cat", "--model", "nope"]) == 1
    assert main(["generate", "   "]) == 1
    err = capsys.readouterr().err
    assert "Unknown model 'nope'" in err and "empty" in err and "Traceback" not in err


def test_cli_config_errors_exit_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nmax_attempts = 99\n")
    assert main(["--config", str(bad), "models"]) == 2
    assert "engine.max_attempts" in capsys.readouterr().err


def test_write_image_converts_to_the_format_the_name_asks_for(tmp_path):
    image = Image(PNG, "image/png", 8, 8)
    write_image(tmp_path / "x.jpg", image)
    write_image(tmp_path / "y.png", image)
    with PILImage.open(tmp_path / "x.jpg") as picture:
        assert picture.format == "JPEG"
    assert (tmp_path / "y.png").read_bytes() == PNG


def test_cli_check_reports_each_backend(monkeypatch, capsys, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text())
    monkeypatch.setenv("SAKAIBOT_CONFIG", str(config))
    assert main(["check"]) == 0
    assert "✓ preview: ok" in capsys.readouterr().out


async def test_line_editor_recalls_history_and_ends_on_ctrl_d(tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from platforms.console.stdin import read_edited

    history = tmp_path / "history"
    with create_pipe_input() as keys:
        lines = read_edited(history, input=keys, output=DummyOutput())
        keys.send_text("/image=a=a red fox\r")
        first = await anext(lines)
        keys.send_text("\x1b[A")  # Up recalls the last line...
        keys.send_text("\x7f\x7f\x7fcat\r")  # ...and three backspaces edit it
        second = await anext(lines)
        keys.send_text("\x04")  # Ctrl-D
        rest = [line async for line in lines]
    assert (first, second, rest) == ("/image=a=a red fox\n", "/image=a=a red cat\n", [])
    assert "/image=a=a red cat" in history.read_text(encoding="utf-8")


async def test_one_queued_line_per_job(engine_factory, tmp_path):
    import asyncio

    engine, backend = await engine_factory(max_pending_per_user=10)
    gate = backend.models["a"].gate = asyncio.Event()

    async def lines() -> AsyncIterator[str]:
        for n in range(4):
            yield f"/image=a=fox {n}\n"
        for _ in range(20):
            await asyncio.sleep(0.01)  # positions move as the lane drains
        gate.set()

    out = io.StringIO()
    console = ConsolePlatform(ConsoleSettings(enabled=True, output_dir=tmp_path), lines=lines(), out=out)
    await engine.serve([console])
    text = out.getvalue()
    assert text.count("⏳ Queued") == 4 and text.count("✅ Done") == 4


async def test_history_shows_a_multi_line_prompt_on_one_line(tmp_path):
    from tests.utils import make_engine

    engine, _backend = make_engine(store={"path": str(tmp_path / "jobs.db")})
    await engine.start()
    text = await _run_console(engine, tmp_path, "/image=a=first line \\", "second line", "/history")
    await engine.stop()
    history = text.split("Your last jobs:\n", 1)[1].splitlines()
    assert history[0].endswith("first line ↵ second line")
