"""``sakaibot generate`` follows its job through the same conversation as the chat platforms."""

from __future__ import annotations

import sqlite3

from core.chat.conversation import Conversation
from core.cli import main
from tests.envsafe import fresh

__all__ = ["fresh"]


def _row(folder):
    with sqlite3.connect(folder / "sakaibot.db") as db:
        return db.execute("select delivery_attempts, delivering_at, delivered_at,"
                          " (select count(*) from pending_results) from jobs").fetchall()


def test_generate_delivers_once_through_the_shared_conversation(fresh, capsys, monkeypatch):
    followed: list[str] = []
    original = Conversation.run

    async def run(self, handle, target):
        followed.append(handle.id)
        await original(self, handle, target)

    monkeypatch.setattr(Conversation, "run", run)
    assert main(["generate", "a red fox", "--n", "2", "--out", "fox.png"]) == 0
    assert len(followed) == 1
    assert capsys.readouterr().out.startswith("fox-1.png\nfox-2.png\n")
    assert (fresh / "fox-1.png").is_file() and (fresh / "fox-2.png").is_file()
    [(attempts, delivering, delivered, kept)] = _row(fresh)
    assert attempts == 1 and delivering is not None and delivered is not None and kept == 0


def test_a_file_that_cannot_be_written_fails_at_once_and_keeps_the_image(fresh, capsys):
    (fresh / "blocker").write_text("a file where a folder should be")
    assert main(["generate", "a red fox", "--out", "blocker/fox.png"]) == 1
    err = capsys.readouterr().err
    assert "✗ blocker/fox.png: cannot be written" in err and "Traceback" not in err
    [(attempts, delivering, delivered, kept)] = _row(fresh)
    assert attempts == 1 and delivering is not None and delivered is None and kept == 1  # tried once, kept
