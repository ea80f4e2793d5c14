"""The engine and its narrow parts; only the composer (``core.engine.engine``) knows them all."""

from core.engine.engine import Engine

__all__ = ["Engine"]
