"""Turning an LLM's answer into a bare prompt, or refusing it so the original is used."""

from __future__ import annotations

import re

from core.chat.messages import truncate_words

PREAMBLE_RE = re.compile(
    r"^\s*(?:sure|okay|ok|certainly|of course|here(?:'s| is| are)|enhanced prompt|improved prompt|rewritten prompt|"
    r"prompt)\b[^\n:]*:\s*", re.IGNORECASE)
REFUSAL_RE = re.compile(
    r"^\s*(?:i'?m sorry|sorry|i can(?:no|')t|i cannot|i am unable|i'm unable|i won'?t|as an ai|unfortunately)",
    re.IGNORECASE)
FENCE_RE = re.compile(r"^```[\w-]*\s*|\s*```$")
TAG_RE = re.compile(r"</?prompt>", re.IGNORECASE)
MARKDOWN_RE = re.compile(r"(\*\*|__|\*|`|^#+\s*|^[-•]\s+)", re.MULTILINE)
QUOTES = "\"'“”‘’«»"


class UnusableAnswer(ValueError):
    """The answer cannot stand in for the prompt."""


def clean_answer(answer: str | None, *, max_chars: int, limit: int) -> str:
    """The prompt inside ``answer``: no preamble, markdown, quotes or extra lines, cut to ``limit``."""
    text = (answer or "").strip()
    text = TAG_RE.sub("", FENCE_RE.sub("", text)).strip()
    if REFUSAL_RE.match(text):
        raise UnusableAnswer(f"refusal: {text[:80]!r}")
    text = PREAMBLE_RE.sub("", text, count=1)
    text = _first_paragraph(MARKDOWN_RE.sub("", text)).strip().strip(QUOTES).strip()
    if not text:
        raise UnusableAnswer("empty answer")
    if len(text) > max_chars:
        raise UnusableAnswer(f"answer too long ({len(text)} > {max_chars} characters)")
    if len(text) > limit:  # cut on a word, without a dangling comma
        text = truncate_words(text, limit, ellipsis="").rstrip(" ,;")
    return text


def _first_paragraph(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    first: list[str] = []
    for line in lines:
        if not line and first:
            break
        if line:
            first.append(line)
    return " ".join(first)
