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
    tags: dict = field(default_factory=dict)
    latest: dict = field(default_factory=dict)  # metric key -> latest value

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or datetime.utcnow()
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
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
