"""The durable job store: SQLite on one thread, its schema migrations."""

from core.store.jobstore import JobRecord, JobStore, ModelStats, start_of_day

__all__ = ["JobRecord", "JobStore", "ModelStats", "start_of_day"]
