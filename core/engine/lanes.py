"""Per-model limits: how many jobs run at once, how long one attempt may take, how failures retry.

Each lane also keeps a moving average of how long its recent jobs took, for the ETA a queued
status shows: position × recent duration ÷ concurrency (nothing until a job has finished).
"""

from __future__ import annotations

from core.config import EngineSettings
from core.engine.retry import RetryPolicy
from core.interfaces import ImageModel, ModelSettings


class Lanes:
    """One lane per model; reads config first, the model's own defaults second."""

    def __init__(self, models: dict[str, ImageModel], settings: dict[str, ModelSettings],
                 engine: EngineSettings) -> None:
        self.models = models
        self.settings = settings
        self.capacity = engine.max_queue_per_lane
        self._mean: dict[str, float] = {}
        self._policies = {name: RetryPolicy(settings[name].max_attempts or engine.max_attempts,
                                            engine.retry_initial_delay, engine.retry_max_delay)
                          for name in models}

    @property
    def names(self) -> list[str]:
        """Every lane, in config order."""
        return list(self.models)

    def concurrency(self, model: str) -> int:
        """How many jobs of ``model`` may run at once: config, else the model's default."""
        return self.settings[model].concurrency or self.models[model].capabilities.default_concurrency

    def total_concurrency(self) -> int:
        """Every lane's slots together (the HTTP pool is sized by it)."""
        return sum(self.concurrency(name) for name in self.models)

    def timeout(self, model: str) -> float:
        """Seconds one attempt of ``model`` may take."""
        return self.settings[model].timeout

    def retry_policy(self, model: str) -> RetryPolicy:
        """The retry rules for ``model``."""
        return self._policies[model]

    def record(self, model: str, seconds: float) -> None:
        """A job of ``model`` took ``seconds`` from start to image (an exponential moving average, α = 0.2)."""
        mean = self._mean.get(model)
        self._mean[model] = seconds if mean is None else mean + SMOOTHING * (seconds - mean)

    def eta(self, model: str, position: int) -> float | None:
        """Seconds until the job at ``position`` is likely done; ``None`` before any job has finished."""
        mean = self._mean.get(model)
        if mean is None or position < 1:
            return None
        return position * mean / self.concurrency(model)


SMOOTHING = 0.2  # weight of the newest duration in the moving average
