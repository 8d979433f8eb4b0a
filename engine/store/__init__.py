"""The tracking store: runs, params, metrics, per-class results, artifacts, dataset versions."""
from engine.store.db import StoreError
from engine.store.entities import (
    ArtifactInfo, ClassResult, Curve, DatasetVersion, MetricPoint, Run, RunPage, RunQuery,
    RunStatus,
)
from engine.store.api import Store, open_store

__all__ = [
    "ArtifactInfo", "ClassResult", "Curve", "DatasetVersion", "MetricPoint", "Run", "RunPage",
    "RunQuery", "RunStatus", "Store", "StoreError", "open_store",
]
