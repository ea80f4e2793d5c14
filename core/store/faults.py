"""What SQLite's "disk I/O error" hides: a full disk, or a file-size limit on this process.

SQLite reports a write refused with ``EFBIG`` as ``SQLITE_IOERR_WRITE`` and drops the errno, so the
store looks at the disk and the limits itself when a write fails, and says which one it was.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

NEARLY_FULL = 1 << 20  # bytes free under which a failed write is blamed on the disk
CHECKED_CODES = frozenset({10, 13})  # SQLITE_IOERR, SQLITE_FULL (primary codes)


def diagnose(path: Path, exc: BaseException) -> str:
    """A short note on why a write to ``path`` failed, or ``""`` when neither cause applies."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in CHECKED_CODES:
        return ""
    notes = [note for note in (_disk(path), _size_limit(path)) if note]
    return f" ({'; '.join(notes)})" if notes else ""


def _disk(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f"disk is full: {free} bytes free" if free < NEARLY_FULL else ""


def _size_limit(path: Path) -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return ""
    sizes = [f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists()]
    if max(sizes, default=0) + NEARLY_FULL < soft:
        return ""
    return f"file too large: this process may not write files past {soft} bytes (RLIMIT_FSIZE)"
