"""SakaiBot's platform-neutral engine: the curated public API for plugins and platforms."""

__version__ = "0.1.0"

from core.engine import Engine
from core.engine.handle import JobHandle
from core.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContentRejected,
    InvalidCommand,
    InvalidImage,
    InvalidInputImage,
    InvalidRequest,
    JobCancelled,
    JobNotFound,
    JobRejected,
    PermissionDenied,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    SakaiError,
    ServiceStopping,
    StoreError,
    StoreOpenError,
    StoreUnavailable,
    UnknownModel,
    UserError,
)
from core.hookspecs import hookimpl
from core.interfaces import (
    BackendType,
    Capabilities,
    CheckResult,
    CheckStatus,
    ConfigSection,
    EngineView,
    Enhancer,
    ImageModel,
    InputSupport,
    ModelSettings,
    Platform,
    PlatformSettings,
    PlatformType,
    Progress,
    sizes_for_area,
)
from core.types import (
    EventKind,
    GenerationOptions,
    GenerationRequest,
    Image,
    ImageRequest,
    InputImage,
    Job,
    JobEvent,
    JobState,
    Requester,
    Size,
)

__all__ = [
    "BackendAuthError", "BackendError", "BackendRateLimited", "BackendTimeout", "BackendType",
    "BackendUnavailable", "Capabilities", "CheckResult", "CheckStatus", "ConfigError", "ConfigSection",
    "ContentRejected", "Engine", "EngineView", "Enhancer", "EventKind", "GenerationOptions", "GenerationRequest",
    "Image",
    "ImageModel", "ImageRequest", "InputImage", "InputSupport", "InvalidCommand", "InvalidImage", "InvalidInputImage",
    "InvalidRequest",
    "Job",
    "JobCancelled", "JobEvent", "JobHandle", "JobNotFound", "JobRejected", "JobState", "ModelSettings",
    "PermissionDenied", "Platform", "PlatformSettings", "PlatformType", "Progress", "QueueFull",
    "QuotaExceeded", "RateLimited", "Requester", "SakaiError", "ServiceStopping", "Size",
    "StoreError", "StoreOpenError",
    "StoreUnavailable", "UnknownModel",
    "UserError", "__version__", "hookimpl", "sizes_for_area",
]
