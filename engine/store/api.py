"""The store API. Callers get dataclasses from engine.store.entities, never ORM rows."""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Iterable, Iterator, Mapping

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.store import db
from engine.store.entities import (
    ArtifactInfo, ClassResult, DatasetVersion, MetricPoint, Run, RunStatus,
)
from engine.store.models import (
    ArtifactRow, ClassResultRow, DatasetVersionRow, LatestMetricRow, MetricRow, ParamRow,
    RecipeRow, RunRow, TagRow,
)

# A worker beats every HEARTBEAT_S; a run silent for STALE_AFTER_S is declared dead.
HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0
STARTUP_S = 300.0  # a queued run on another host may take this long to start


class RunNotFound(KeyError):
    def __str__(self) -> str:
        return f"No run with id {self.args[0]!r}."


def _now() -> datetime:
    return datetime.utcnow()


def _clean(value: float) -> tuple[float | None, bool]:
    """NaN -> (None, True); +-Inf -> +-float max (as MLflow does); else (value, False)."""
    v = float(value)
    if math.isnan(v):
        return None, True
    if math.isinf(v):
        return (sys.float_info.max if v > 0 else -sys.float_info.max), False
    return v, False


def _group(count: int, many: int, few: int) -> str:
    return "many" if count > many else ("few" if count < few else "medium")


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if not isinstance(v, str) else v
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # --- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def _get(self, s: Session, run_id: str) -> RunRow:
        row = s.get(RunRow, run_id)
        if row is None:
            raise RunNotFound(run_id)
        return row

    @staticmethod
    def _to_run(row: RunRow, tags: dict | None = None, latest: dict | None = None) -> Run:
        return Run(
            id=row.id, name=row.name, kind=row.kind, status=row.status,
            config=json.loads(row.config_json), created_at=row.created_at,
            started_at=row.started_at, ended_at=row.ended_at, heartbeat_at=row.heartbeat_at,
            error=row.error, pid=row.pid, host=row.host, parent_run_id=row.parent_run_id,
            dataset_version_id=row.dataset_version_id, cancel_requested=bool(row.cancel_requested),
            total_steps=row.total_steps, tags=tags or {}, latest=latest or {},
        )

    # --- runs --------------------------------------------------------------------------------
    def create_run(self, config: Mapping, *, name: str, kind: str = "train",
                   parent_run_id: str | None = None,
                   dataset_version_id: str | None = None) -> Run:
        run_id = uuid.uuid4().hex
        with self.session() as s:
            row = RunRow(id=run_id, name=name, kind=kind, status=RunStatus.QUEUED,
                         config_json=json.dumps(dict(config), sort_keys=True),
                         parent_run_id=parent_run_id, dataset_version_id=dataset_version_id,
                         created_at=_now(), cancel_requested=False)
            s.add(row)
            s.flush()
            s.add_all(ParamRow(run_id=run_id, key=k, value=v) for k, v in flatten(config).items())
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        with self.session() as s:
            row = self._get(s, run_id)
            tags = {t.key: t.value for t in s.scalars(select(TagRow).where(TagRow.run_id == run_id))}
            latest = {m.key: (math.nan if m.value is None else m.value) for m in
                      s.scalars(select(LatestMetricRow).where(LatestMetricRow.run_id == run_id))}
            return self._to_run(row, tags, latest)

    def list_runs(self, *, kind: str | None = None, limit: int | None = None) -> list[Run]:
        """Newest first, with latest metrics and tags."""
        self.reap_stale()
        with self.session() as s:
            q = select(RunRow).order_by(RunRow.created_at.desc())
            if kind:
                q = q.where(RunRow.kind == kind)
            if limit:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            ids = [r.id for r in rows]
            latest: dict[str, dict] = {i: {} for i in ids}
            tags: dict[str, dict] = {i: {} for i in ids}
            if ids:
                for m in s.scalars(select(LatestMetricRow).where(LatestMetricRow.run_id.in_(ids))):
                    latest[m.run_id][m.key] = math.nan if m.value is None else m.value
                for t in s.scalars(select(TagRow).where(TagRow.run_id.in_(ids))):
                    tags[t.run_id][t.key] = t.value
            return [self._to_run(r, tags[r.id], latest[r.id]) for r in rows]

    def get_params(self, run_id: str) -> dict[str, str]:
        with self.session() as s:
            return {p.key: p.value for p in s.scalars(select(ParamRow).where(ParamRow.run_id == run_id))}

    def mark_running(self, run_id: str, *, total_steps: int | None = None) -> None:
        with self.session() as s:
            row = self._get(s, run_id)
            row.status = RunStatus.RUNNING
            row.started_at = row.started_at or _now()
            row.heartbeat_at = _now()
            row.pid = os.getpid()
            row.host = socket.gethostname()
            if total_steps is not None:
                row.total_steps = total_steps

    def set_pid(self, run_id: str, pid: int) -> None:
        with self.session() as s:
            row = self._get(s, run_id)
            row.pid, row.host, row.heartbeat_at = pid, socket.gethostname(), _now()

    def set_dataset_version(self, run_id: str, version_id: str) -> None:
        with self.session() as s:
            self._get(s, run_id).dataset_version_id = version_id

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in RunStatus.ENDED:
            raise ValueError(f"Invalid end status {status!r}. Valid: {', '.join(RunStatus.ENDED)}.")
        with self.session() as s:
            row = self._get(s, run_id)
            if row.status in RunStatus.ENDED:  # first word wins (e.g. reaper vs. late worker)
                return
            row.status, row.error, row.ended_at = status, error, _now()

    def heartbeat(self, run_id: str) -> None:
        with self.session() as s:
            self._get(s, run_id).heartbeat_at = _now()

    def request_cancel(self, run_id: str) -> None:
        with self.session() as s:
            row = self._get(s, run_id)
            row.cancel_requested = True
            if row.status == RunStatus.QUEUED and row.pid is None:
                row.status, row.ended_at = RunStatus.CANCELLED, _now()

    def cancel_requested(self, run_id: str) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(RunRow.cancel_requested).where(RunRow.id == run_id)))

    def delete_run(self, run_id: str) -> None:
        with self.session() as s:
            s.delete(self._get(s, run_id))

    def reap_stale(self, stale_after_s: float = STALE_AFTER_S) -> list[str]:
        """Mark active runs whose worker is gone as failed. Returns their ids.

        - a worker on this host whose pid is dead: failed at once;
        - a running worker (any host) whose heartbeat is older than ``stale_after_s``: failed;
        - a queued run still starting (imports, data loading) gets STARTUP_S before that."""
        now, here, dead = _now(), socket.gethostname(), []
        with self.session() as s:
            for row in s.scalars(select(RunRow).where(RunRow.status.in_(RunStatus.ACTIVE))):
                local = row.pid is not None and row.host == here
                gone = local and not pid_alive(row.pid)
                age = (now - (row.heartbeat_at or row.created_at)).total_seconds()
                if row.status == RunStatus.QUEUED:
                    stale = age > STARTUP_S and not (local and not gone)
                else:
                    stale = age > stale_after_s
                if gone or stale:
                    why = (f"The worker process (pid {row.pid}) stopped without reporting "
                           "(killed or crashed)." if gone else
                           f"No heartbeat from the worker for {age:.0f} s: it was killed or "
                           "its machine went away.")
                    row.status, row.ended_at, row.error = RunStatus.FAILED, now, why
                    dead.append(row.id)
        return dead

    # --- metrics -----------------------------------------------------------------------------
    def log_metrics(self, run_id: str, values: Mapping[str, float], *, step: int,
                    epoch: float | None = None) -> None:
        ts = time.time()
        with self.session() as s:
            for key, value in values.items():
                v, nan = _clean(value)
                s.add(MetricRow(run_id=run_id, key=key, step=int(step), epoch=epoch, value=v,
                                is_nan=nan, timestamp=ts))
                s.merge(LatestMetricRow(run_id=run_id, key=key, value=v, step=int(step), timestamp=ts))

    def metric_history(self, run_id: str, keys: Iterable[str] | None = None) -> list[MetricPoint]:
        with self.session() as s:
            q = select(MetricRow).where(MetricRow.run_id == run_id)
            if keys is not None:
                q = q.where(MetricRow.key.in_(list(keys)))
            q = q.order_by(MetricRow.key, MetricRow.step, MetricRow.id)
            return [MetricPoint(m.key, math.nan if m.is_nan else m.value, m.step, m.epoch,
                                m.timestamp) for m in s.scalars(q)]

    # --- tags, per-class results, artifacts ----------------------------------------------------
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        with self.session() as s:
            for k, v in tags.items():
                s.merge(TagRow(run_id=run_id, key=k, value=str(v)))

    def log_class_results(self, run_id: str, split: str, *, class_names: list[str],
                          train_counts: list[int], support: list[int], correct: list[int],
                          many_threshold: int, few_threshold: int) -> None:
        with self.session() as s:
            s.execute(delete(ClassResultRow).where(ClassResultRow.run_id == run_id,
                                                   ClassResultRow.split == split))
            s.add_all(ClassResultRow(
                run_id=run_id, split=split, class_index=i, class_name=name,
                train_count=int(train_counts[i]), support=int(support[i]),
                correct=int(correct[i]), group=_group(int(train_counts[i]), many_threshold,
                                                      few_threshold))
                for i, name in enumerate(class_names))

    def class_results(self, run_id: str, split: str = "test") -> list[ClassResult]:
        with self.session() as s:
            q = (select(ClassResultRow)
                 .where(ClassResultRow.run_id == run_id, ClassResultRow.split == split)
                 .order_by(ClassResultRow.class_index))
            return [ClassResult(r.split, r.class_index, r.class_name, r.train_count, r.support,
                                r.correct, (r.correct / r.support) if r.support else None, r.group)
                    for r in s.scalars(q)]

    def log_artifact(self, run_id: str, name: str, path: str, kind: str) -> None:
        with self.session() as s:
            s.merge(ArtifactRow(run_id=run_id, name=name, path=str(path), kind=kind,
                                created_at=_now()))

    def artifacts(self, run_id: str) -> list[ArtifactInfo]:
        with self.session() as s:
            q = select(ArtifactRow).where(ArtifactRow.run_id == run_id).order_by(ArtifactRow.name)
            return [ArtifactInfo(a.name, a.path, a.kind, a.created_at) for a in s.scalars(q)]

    # --- dataset versions --------------------------------------------------------------------
    def add_dataset_version(self, *, id: str, name: str, source: str, class_counts: Mapping,
                            manifest_path: str | None = None,
                            config: Mapping | None = None) -> DatasetVersion:
        """Idempotent: the id is the manifest's content hash, so the same data is one version."""
        with self.session() as s:
            if s.get(DatasetVersionRow, id) is None:
                splits = dict(class_counts)
                first = next(iter(splits.values()), {})
                s.add(DatasetVersionRow(
                    id=id, name=name, source=source, num_classes=len(first),
                    num_images=sum(sum(c.values()) for c in splits.values()),
                    class_counts_json=json.dumps(splits), manifest_path=manifest_path,
                    config_json=json.dumps(dict(config or {})), created_at=_now()))
        return self.get_dataset_version(id)

    @staticmethod
    def _to_version(r: DatasetVersionRow) -> DatasetVersion:
        return DatasetVersion(r.id, r.name, r.source, r.num_classes, r.num_images,
                              json.loads(r.class_counts_json), r.manifest_path,
                              json.loads(r.config_json), r.created_at)

    def get_dataset_version(self, version_id: str) -> DatasetVersion:
        with self.session() as s:
            r = s.get(DatasetVersionRow, version_id)
            if r is None:
                raise KeyError(f"No dataset version {version_id!r}.")
            return self._to_version(r)

    def list_dataset_versions(self) -> list[DatasetVersion]:
        with self.session() as s:
            q = select(DatasetVersionRow).order_by(DatasetVersionRow.created_at.desc())
            return [self._to_version(r) for r in s.scalars(q)]

    # --- augmentation recipes ----------------------------------------------------------------
    def save_recipe(self, name: str, config: Mapping) -> None:
        if not name.strip():
            raise ValueError("A recipe needs a name.")
        with self.session() as s:
            s.merge(RecipeRow(name=name.strip(), config_json=json.dumps(dict(config), sort_keys=True),
                              updated_at=_now()))

    def recipes(self) -> dict[str, dict]:
        with self.session() as s:
            return {r.name: json.loads(r.config_json)
                    for r in s.scalars(select(RecipeRow).order_by(RecipeRow.name))}


def open_store(url: str | None = None) -> Store:
    """Open (and migrate) the store at ``url`` or the workspace default."""
    from engine import workspace

    engine = db.make_engine(url or workspace.db_url())
    db.upgrade(engine)
    return Store(engine)
