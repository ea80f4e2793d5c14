"""The durable job store: SQLite on one thread, group commit, start-up checks, its schema migrations."""

from core.store.jobstore import JobStore
from core.store.rows import JobRecord, ModelStats, quota_refusal, start_of_day

__all__ = ["JobRecord", "JobStore", "ModelStats", "quota_refusal", "start_of_day"]
