"""Plain dataclasses the store returns. ORM rows never leave engine.store."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


class RunStatus:
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)
    ENDED = (FINISHED, FAILED, CANCELLED)


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    kind: str
    status: str
    config: dict
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    error: str | None = None
    pid: int | None = None
    host: str | None = None
    parent_run_id: str | None = None
    dataset_version_id: str | None = None
    cancel_requested: bool = False
    total_steps: int | None = None
    tags: dict = field(default_factory=dict)  # system key/values (class names, device, ...)
    latest: dict = field(default_factory=dict)  # metric key -> latest value, None if not finite
    starred: bool = False
    notes: str = ""
    labels: tuple[str, ...] = ()  # user tags ("tags" in the UI), sorted
    best_val: float | None = None  # best validation balanced accuracy over the epochs
    best_epoch: int | None = None
    queue_position: int | None = None  # waiting in the job queue at this place (engine.jobs)

    @property
    def waiting(self) -> bool:
        """Queued by engine.jobs and no worker started or claimed yet."""
        return (self.status == RunStatus.QUEUED and self.queue_position is not None and self.pid is None
                and self.heartbeat_at is None)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or datetime.utcnow()
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float | None  # None: NaN or +-Inf was logged (a gap in the curve)
    step: int
    epoch: float | None
    timestamp: float


@dataclass(frozen=True)
class ClassResult:
    split: str
    class_index: int
    class_name: str
    train_count: int
    support: int
    correct: int
    accuracy: float | None
    group: str  # "many" | "medium" | "few"


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    path: str
    kind: str
    created_at: datetime


@dataclass(frozen=True)
class DatasetVersion:
    id: str  # content hash (hex)
    name: str
    source: str
    num_classes: int
    num_images: int
    class_counts: dict  # split -> {class name: count}
    manifest_path: str | None
    config: dict
    created_at: datetime


RUN_SORTS = ("created_at", "name", "status", "duration", "best_val")  # or "metric:<key>"


@dataclass(frozen=True)
class RunQuery:
    """One page of the Runs table. Empty tuples mean no filter; labels: a run needs all of them."""
    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    dataset_version_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    starred_only: bool = False
    created_after: datetime | None = None
    created_before: datetime | None = None
    text: str = ""  # case-insensitive, in name, id, notes and labels
    sort: str = "created_at"  # one of RUN_SORTS or "metric:<key>", e.g. "metric:test/bal_acc"
    descending: bool = True  # runs without a value come last either way
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    total: int  # runs matching the filters, before offset / limit


@dataclass(frozen=True)
class Curve:
    """One run's series of one metric key, downsampled; y None = a gap (a non-finite value)."""
    x: list[float | None]  # step, epoch (None where none was logged), or seconds since the run's first metric
    y: list[float | None]
    step: list[int]
