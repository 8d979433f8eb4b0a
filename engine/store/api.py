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

from sqlalchemy import and_, case, delete, distinct, exists, func, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased, sessionmaker

from engine.store import db
from engine.store.downsample import minmax_indices
from engine.store.entities import (
    RUN_SORTS, ArtifactInfo, ClassResult, Curve, DatasetVersion, MetricPoint, Run, RunPage,
    RunQuery, RunStatus,
)
from engine.store.models import (
    ArtifactRow, ClassResultRow, DatasetVersionRow, LatestMetricRow, MetricRow, ParamRow,
    RecipeRow, RunLabelRow, RunRow, TagRow,
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
    """(value, False) for a finite value; NaN and +-Inf -> (None, True): the row is kept (a gap
    in the curve) with the flag saying something non-finite was logged."""
    v = float(value)
    if not math.isfinite(v):
        return None, True
    return v, False


def _finite(v: float | None) -> float | None:
    """What readers get: None for a missing or non-finite value. Databases from before 0002
    may hold +-Inf as +-float max; those read as None too."""
    if v is None or not math.isfinite(v) or abs(v) >= sys.float_info.max:
        return None
    return float(v)


LABEL_MAX = 64
NAME_MAX = 256
NOTES_MAX = 20_000


def clean_labels(labels: Iterable[str]) -> list[str]:
    """Stripped, deduplicated (first spelling wins), in the given order; ValueError for an
    empty or over-long label."""
    if isinstance(labels, str):  # "tail" would otherwise become the tags t, a, i, l
        raise ValueError(f"Tags are a list of texts, e.g. [{labels!r}], not one text.")
    out: list[str] = []
    for raw in labels:
        if not isinstance(raw, str):
            raise ValueError(f"A tag must be text, not {type(raw).__name__} ({raw!r}).")
        label = raw.strip()
        if not label:
            raise ValueError("A tag cannot be empty.")
        if len(label) > LABEL_MAX:
            raise ValueError(f"The tag {label[:20]!r}... is {len(label)} characters long; "
                             f"at most {LABEL_MAX} are allowed.")
        if label not in out:
            out.append(label)
    return out


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with %, _ and the escape character escaped."""
    t = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{t}%"


def _group(count: int, many: int, few: int) -> str:
    return "many" if count > many else ("few" if count < few else "medium")


def flatten(d: Mapping, prefix: str = "", *, encode: bool = True) -> dict:
    """A nested config as {"data.source": ..., "lr": ...}. ``encode``: values as strings (JSON
    for non-strings), as the params table stores them; else the values as they are."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + ".", encode=encode))
        else:
            out[key] = json.dumps(v) if encode and not isinstance(v, str) else v
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
    def __init__(self, engine: Engine, upgrade_notice: str | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # set by open_store when it upgraded the schema: where the backup went (show it once)
        self.upgrade_notice = upgrade_notice

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
    def _to_run(row: RunRow, tags: dict | None = None, latest: dict | None = None,
                labels: Iterable[str] = ()) -> Run:
        return Run(
            id=row.id, name=row.name, kind=row.kind, status=row.status,
            config=json.loads(row.config_json), created_at=row.created_at,
            started_at=row.started_at, ended_at=row.ended_at, heartbeat_at=row.heartbeat_at,
            error=row.error, pid=row.pid, host=row.host, parent_run_id=row.parent_run_id,
            dataset_version_id=row.dataset_version_id, cancel_requested=bool(row.cancel_requested),
            total_steps=row.total_steps, tags=tags or {}, latest=latest or {},
            starred=bool(row.starred), notes=row.notes or "", labels=tuple(sorted(labels)),
            best_val=_finite(row.best_val), best_epoch=row.best_epoch, queue_position=row.queue_position,
        )

    def _load_runs(self, s: Session, rows: list[RunRow]) -> list[Run]:
        """Runs with their tags, latest metrics and labels: three queries for any number."""
        ids = [r.id for r in rows]
        latest: dict[str, dict] = {i: {} for i in ids}
        tags: dict[str, dict] = {i: {} for i in ids}
        labels: dict[str, list] = {i: [] for i in ids}
        for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
            for m in s.scalars(select(LatestMetricRow).where(LatestMetricRow.run_id.in_(chunk))):
                latest[m.run_id][m.key] = _finite(m.value)
            for t in s.scalars(select(TagRow).where(TagRow.run_id.in_(chunk))):
                tags[t.run_id][t.key] = t.value
            for lb in s.scalars(select(RunLabelRow).where(RunLabelRow.run_id.in_(chunk))):
                labels[lb.run_id].append(lb.label)
        return [self._to_run(r, tags[r.id], latest[r.id], labels[r.id]) for r in rows]

    # --- runs --------------------------------------------------------------------------------
    def create_run(self, config: Mapping, *, name: str, kind: str = "train",
                   parent_run_id: str | None = None,
                   dataset_version_id: str | None = None) -> Run:
        run_id = uuid.uuid4().hex

        def short(key: str) -> str | None:
            v = config.get(key)
            return v if isinstance(v, str) and v and len(v) <= 128 else None

        with self.session() as s:
            row = RunRow(id=run_id, name=name, kind=kind, status=RunStatus.QUEUED,
                         config_json=json.dumps(dict(config), sort_keys=True),
                         parent_run_id=parent_run_id, dataset_version_id=dataset_version_id,
                         created_at=_now(), cancel_requested=False, starred=False, notes="",
                         model=short("model"), loss=short("loss"))
            s.add(row)
            s.flush()
            s.add_all(ParamRow(run_id=run_id, key=k, value=v) for k, v in flatten(config).items())
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        """The run as it is: an active run whose worker is gone is failed here too (not only when
        runs are listed), so `taillab runs show` of a killed run says failed, not running."""
        with self.session() as s:
            row = self._get(s, run_id)
            if row.status in RunStatus.ACTIVE:
                why = self._dead_reason(row, _now(), socket.gethostname(), STALE_AFTER_S)
                if why:
                    row.status, row.ended_at, row.error = RunStatus.FAILED, _now(), why
            return self._load_runs(s, [row])[0]

    def list_runs(self, *, kind: str | None = None, limit: int | None = None) -> list[Run]:
        """Newest first, with latest metrics and tags."""
        self.reap_stale()
        with self.session() as s:
            q = select(RunRow).order_by(RunRow.created_at.desc())
            if kind:
                q = q.where(RunRow.kind == kind)
            if limit:
                q = q.limit(limit)
            return self._load_runs(s, list(s.scalars(q)))

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
                why = self._dead_reason(row, now, here, stale_after_s)
                if why:
                    row.status, row.ended_at, row.error = RunStatus.FAILED, now, why
                    dead.append(row.id)
        return dead

    @staticmethod
    def _dead_reason(row: RunRow, now: datetime, here: str, stale_after_s: float) -> str | None:
        """Why an active run's worker is gone, or None while it lives (or waits in the queue)."""
        if row.status == RunStatus.QUEUED and row.queue_position is not None and row.pid is None \
                and row.heartbeat_at is None:
            return None  # waiting for a slot in the job queue: no worker yet, nothing to lose
        local = row.pid is not None and row.host == here
        gone = local and not pid_alive(row.pid)
        age = (now - (row.heartbeat_at or row.created_at)).total_seconds()
        if row.status == RunStatus.QUEUED:
            stale = age > STARTUP_S and not (local and not gone)
        else:
            stale = age > stale_after_s
        if gone:
            return f"The worker process (pid {row.pid}) stopped without reporting (killed or crashed)."
        if stale:
            return (f"No heartbeat from the worker for {age:.0f} s: it was killed or its machine went away.")
        return None

    # --- the job queue (engine.jobs starts the workers) --------------------------------------
    def enqueue(self, run_id: str) -> int:
        """Put a queued run at the end of the job queue; returns its position."""
        with self.session() as s:
            last = s.scalar(select(func.max(RunRow.queue_position))) or 0
            row = self._get(s, run_id)
            row.queue_position = last + 1
            return row.queue_position

    def waiting_runs(self) -> list[Run]:
        """Runs waiting in the job queue, first to start first."""
        with self.session() as s:
            q = (select(RunRow).where(RunRow.status == RunStatus.QUEUED, RunRow.queue_position.is_not(None),
                                      RunRow.pid.is_(None), RunRow.heartbeat_at.is_(None))
                 .order_by(RunRow.queue_position, RunRow.created_at))
            return self._load_runs(s, list(s.scalars(q)))

    def move_in_queue(self, run_id: str, to_index: int) -> None:
        """Move a waiting run to ``to_index`` (0 = next to start) among the waiting runs."""
        order = [r.id for r in self.waiting_runs()]
        if run_id not in order:
            raise ValueError("Only a run still waiting in the queue can be moved (this one started or ended).")
        order.remove(run_id)
        order.insert(max(0, min(int(to_index), len(order))), run_id)
        with self.session() as s:
            base = min(r.queue_position for r in s.scalars(select(RunRow).where(RunRow.id.in_(order))))
            for i, rid in enumerate(order):
                s.get(RunRow, rid).queue_position = base + i

    def claim_next(self, max_active: int) -> Run | None:
        """Atomically take the first waiting run when fewer than ``max_active`` runs have a worker
        (running, or started and not yet running). One UPDATE statement, so two dispatchers on
        SQLite never take the same run; returns the claimed run (not yet started) or None."""
        busy = (select(func.count()).select_from(RunRow)
                .where(RunRow.status.in_(RunStatus.ACTIVE),
                       or_(RunRow.status == RunStatus.RUNNING, RunRow.pid.is_not(None),
                           RunRow.heartbeat_at.is_not(None), RunRow.queue_position.is_(None)))
                .scalar_subquery())
        first = (select(RunRow.id).where(RunRow.status == RunStatus.QUEUED, RunRow.queue_position.is_not(None),
                                         RunRow.pid.is_(None), RunRow.heartbeat_at.is_(None),
                                         RunRow.cancel_requested.is_(False))
                 .order_by(RunRow.queue_position, RunRow.created_at).limit(1).scalar_subquery())
        with self.session() as s:
            got = s.execute(update(RunRow).where(RunRow.id == first, busy < max_active)
                            .values(heartbeat_at=_now(), host=socket.gethostname())
                            .returning(RunRow.id)).scalar()
        return self.get_run(got) if got else None

    # --- resuming a run ----------------------------------------------------------------------
    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Delete the run's metric rows logged after ``after_step`` (a resumed run logs them again)
        and rebuild its latest values from what is left. Returns the rows deleted."""
        with self.session() as s:
            n = s.execute(delete(MetricRow).where(MetricRow.run_id == run_id, MetricRow.step > after_step)).rowcount
            s.execute(delete(LatestMetricRow).where(LatestMetricRow.run_id == run_id))
            last: dict[str, MetricRow] = {}
            for m in s.scalars(select(MetricRow).where(MetricRow.run_id == run_id)
                               .order_by(MetricRow.key, MetricRow.step, MetricRow.id)):
                last[m.key] = m
            s.add_all(LatestMetricRow(run_id=run_id, key=k, value=m.value, step=m.step, timestamp=m.timestamp)
                      for k, m in last.items())
            return n or 0

    def reopen_run(self, run_id: str) -> None:
        """A failed or cancelled run back to queued (to be resumed): error, end time, worker and
        cancel flag cleared; its start time, metrics and files stay."""
        with self.session() as s:
            row = self._get(s, run_id)
            if row.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
                raise ValueError(f"Only a failed or cancelled run can be resumed; this one is {row.status}.")
            row.status, row.error, row.ended_at = RunStatus.QUEUED, None, None
            row.pid, row.host, row.heartbeat_at, row.cancel_requested = None, None, None, False

    # --- what the user adds to a run, the typed best ---------------------------------------
    def rename_run(self, run_id: str, name: str) -> None:
        name = (name or "").strip()
        if not name:
            raise ValueError("A run name cannot be empty.")
        if len(name) > NAME_MAX:
            raise ValueError(f"A run name is at most {NAME_MAX} characters ({len(name)} given).")
        with self.session() as s:
            self._get(s, run_id).name = name

    def set_notes(self, run_id: str, text: str) -> None:
        text = text or ""
        if len(text) > NOTES_MAX:
            raise ValueError(f"Notes are at most {NOTES_MAX} characters ({len(text)} given).")
        with self.session() as s:
            self._get(s, run_id).notes = text

    def set_starred(self, run_id: str, starred: bool) -> None:
        with self.session() as s:
            self._get(s, run_id).starred = bool(starred)

    def set_labels(self, run_id: str, labels: Iterable[str]) -> None:
        """Replace the run's labels ("tags" in the UI): stripped, deduplicated; ValueError (and
        nothing changed) for an empty or over-long one."""
        clean = clean_labels(labels)
        with self.session() as s:
            self._get(s, run_id)
            s.execute(delete(RunLabelRow).where(RunLabelRow.run_id == run_id))
            s.add_all(RunLabelRow(run_id=run_id, label=lb) for lb in clean)

    def set_best(self, run_id: str, value: float | None, epoch: int | None = None) -> None:
        """The best validation balanced accuracy so far and its epoch (a non-finite value is
        stored as None)."""
        with self.session() as s:
            row = self._get(s, run_id)
            row.best_val = _finite(None if value is None else float(value))
            row.best_epoch = None if epoch is None else int(epoch)

    # --- the Runs page: filter, search, sort, page in SQL ------------------------------------
    def _duration(self):
        """Seconds from start to end (or now, for an active run) as a SQL expression."""
        end = func.coalesce(RunRow.ended_at, literal(_now()))
        if self.engine.dialect.name == "sqlite":
            return (func.julianday(end) - func.julianday(RunRow.started_at)) * 86400.0
        return func.extract("epoch", end - RunRow.started_at)

    def query_runs(self, q: RunQuery) -> RunPage:
        """One page of runs matching ``q`` and the number of matches (see RunQuery)."""
        if q.limit < 0 or q.offset < 0:
            raise ValueError("offset and limit cannot be negative.")
        self.reap_stale()  # as list_runs: a run whose worker is gone shows as failed
        conds = []
        for col, values in ((RunRow.status, q.statuses), (RunRow.kind, q.kinds),
                            (RunRow.dataset_version_id, q.dataset_version_ids),
                            (RunRow.model, q.models), (RunRow.loss, q.losses)):
            if values:
                conds.append(col.in_([values] if isinstance(values, str) else list(values)))
        labels = (q.labels,) if isinstance(q.labels, str) else q.labels
        for label in dict.fromkeys(lb.strip() for lb in labels if lb.strip()):
            conds.append(exists().where(RunLabelRow.run_id == RunRow.id, RunLabelRow.label == label))
        if q.starred_only:
            conds.append(RunRow.starred.is_(True))
        if q.created_after is not None:
            conds.append(RunRow.created_at >= q.created_after)
        if q.created_before is not None:
            conds.append(RunRow.created_at <= q.created_before)
        text = (q.text or "").strip().lower()
        if text:
            pat = _like(text)
            conds.append(or_(
                func.lower(RunRow.name).like(pat, escape="\\"),
                func.lower(RunRow.id).like(pat, escape="\\"),
                func.lower(RunRow.notes).like(pat, escape="\\"),
                exists().where(RunLabelRow.run_id == RunRow.id,
                               func.lower(RunLabelRow.label).like(pat, escape="\\"))))
        where = and_(*conds) if conds else literal(True)

        sel = select(RunRow).where(where)
        if q.sort.startswith("metric:") and q.sort[len("metric:"):]:
            lm = aliased(LatestMetricRow)
            sel = sel.outerjoin(lm, and_(lm.run_id == RunRow.id, lm.key == q.sort[len("metric:"):]))
            key = lm.value
        elif q.sort in RUN_SORTS:
            key = {"created_at": RunRow.created_at, "name": func.lower(RunRow.name),
                   "status": RunRow.status, "best_val": RunRow.best_val,
                   "duration": self._duration()}[q.sort]
        else:
            raise ValueError(f"Invalid sort {q.sort!r}. Valid: {', '.join(RUN_SORTS)} or "
                             "metric:<key> (e.g. metric:test/bal_acc).")
        order = key.desc() if q.descending else key.asc()
        tie = RunRow.created_at.desc() if q.descending else RunRow.created_at.asc()
        sel = sel.order_by(case((key.is_(None), 1), else_=0), order, tie, RunRow.id)
        sel = sel.offset(q.offset).limit(q.limit)
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(RunRow).where(where)) or 0
            return RunPage(self._load_runs(s, list(s.scalars(sel))), int(total))

    def facets(self) -> dict[str, list[str]]:
        """The distinct values present, sorted, for the Runs page's filter widgets."""
        cols = {"status": RunRow.status, "kind": RunRow.kind,
                "dataset_version_id": RunRow.dataset_version_id, "model": RunRow.model,
                "loss": RunRow.loss}
        with self.session() as s:
            out = {name: sorted(v for v in s.scalars(select(distinct(col))) if v is not None)
                   for name, col in cols.items()}
            out["label"] = sorted(s.scalars(select(distinct(RunLabelRow.label))))
        return out

    # --- curves for charts --------------------------------------------------------------------
    def curves(self, run_ids: Iterable[str], key: str, *, x: str = "step",
               max_points: int = 2000) -> dict[str, Curve]:
        """run id -> its ``key`` series, downsampled to at most ``max_points`` (min/max buckets
        keeping the first, last, min and max points). x: "step", "epoch" or "time" (seconds
        since the run's first metric). y is None where the value was not finite. Runs without
        the key, and unknown ids, are absent."""
        if x not in ("step", "epoch", "time"):
            raise ValueError(f"Invalid x {x!r}. Valid: step, epoch, time.")
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2 ({max_points} given).")
        ids = list(dict.fromkeys(run_ids))
        out: dict[str, Curve] = {}
        if not ids:
            return out
        with self.session() as s:
            series: dict[str, tuple[list, list, list, list]] = {}
            q = (select(MetricRow.run_id, MetricRow.step, MetricRow.epoch, MetricRow.value,
                        MetricRow.timestamp)
                 .where(MetricRow.run_id.in_(ids), MetricRow.key == key)
                 .order_by(MetricRow.run_id, MetricRow.step, MetricRow.id))
            for run_id, step, epoch, value, ts in s.execute(q):
                st_, ep, ys, tss = series.setdefault(run_id, ([], [], [], []))
                st_.append(step)
                ep.append(epoch)
                ys.append(_finite(value))
                tss.append(ts)
            start: dict[str, float] = {}
            if x == "time" and series:
                start = dict(s.execute(select(MetricRow.run_id, func.min(MetricRow.timestamp))
                                       .where(MetricRow.run_id.in_(list(series)))
                                       .group_by(MetricRow.run_id)).all())
        for run_id in ids:
            if run_id not in series:
                continue
            steps, epochs, ys, tss = series[run_id]
            if x == "step":
                xs = [float(v) for v in steps]
            elif x == "epoch":
                xs = [float(e) if e is not None else None for e in epochs]  # None: not logged
            else:
                xs = [t - start[run_id] for t in tss]
            keep = minmax_indices(ys, max_points)
            out[run_id] = Curve([xs[i] for i in keep], [ys[i] for i in keep],
                                [steps[i] for i in keep])
        return out

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
            return [MetricPoint(m.key, _finite(m.value), m.step, m.epoch, m.timestamp)
                    for m in s.scalars(q)]

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
    """Open (and migrate) the store at ``url`` or the workspace default.

    Raises StoreError (nothing written) for a file that is not a TailLab database, a database
    from a newer TailLab, or a read-only database / workspace. A SQLite database behind the newest
    schema is backed up first; ``Store.upgrade_notice`` then says where the copy went."""
    from engine import workspace

    engine, notice = db.prepare(url or workspace.db_url())
    return Store(engine, notice)
