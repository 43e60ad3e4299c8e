"""An asyncio SDK for HappyRobot's model-training API.

Submit many clone-and-train requests concurrently, follow every model to its
end with one watcher, and never lose a model or train one twice.
"""

from ._config import DEFAULT_BASE_URL
from ._handles import ChangeStream, WatchHandle
from ._outcomes import BatchPlan, BatchProgress, BatchReport, BatchResult, JobProgress, JobStage
from ._resource import RawResponse
from ._retry import RetryPolicy
from ._version import __version__
from .batch import run_batch
from .client import HappyRobotClient
from .errors import (
    AmbiguousCreateError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchFailedError,
    ConflictError,
    HappyRobotError,
    InvalidJobsError,
    InvalidRequestError,
    JobProblem,
    JournalError,
    NotFoundError,
    PermissionDeniedError,
    PreflightError,
    PreflightProblem,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    TrainingFailedError,
    WatcherClosedError,
    WatchTimeoutError,
)
from .types import CreateModel, Model, ModelStatus, StatusChange, TrainingJob
from .watcher import TrainingWatcher

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousCreateError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFailedError",
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "BatchResult",
    "ChangeStream",
    "ConflictError",
    "CreateModel",
    "HappyRobotClient",
    "HappyRobotError",
    "InvalidJobsError",
    "InvalidRequestError",
    "JobProblem",
    "JobProgress",
    "JobStage",
    "JournalError",
    "Model",
    "ModelStatus",
    "NotFoundError",
    "PermissionDeniedError",
    "PreflightError",
    "PreflightProblem",
    "RateLimitError",
    "RawResponse",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerError",
    "StatusChange",
    "TrainingFailedError",
    "TrainingJob",
    "TrainingWatcher",
    "WatchHandle",
    "WatchTimeoutError",
    "WatcherClosedError",
    "__version__",
    "run_batch",
]
