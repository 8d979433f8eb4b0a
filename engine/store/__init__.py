"""The tracking store: runs, params, metrics, per-class results, artifacts, dataset versions."""
from engine.store.entities import (
    ArtifactInfo, ClassResult, DatasetVersion, MetricPoint, Run, RunStatus,
)
from engine.store.api import Store, open_store

__all__ = [
    "ArtifactInfo", "ClassResult", "DatasetVersion", "MetricPoint", "Run", "RunStatus",
    "Store", "open_store",
]
