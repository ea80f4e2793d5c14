"""Chat platform adapters: each translates between one chat service and the engine."""
