"""The durable job store: writes in a writer process (group commit), reads on a thread, checks, migrations."""

from core.store.jobstore import JobStore
from core.store.rows import JobRecord, ModelStats, quota_refusal, start_of_day

__all__ = ["JobRecord", "JobStore", "ModelStats", "quota_refusal", "start_of_day"]
