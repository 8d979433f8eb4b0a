"""The Runs page's queries (filter, search, sort, page), facets, user edits, and curves with
min/max downsampling; against hand-computed expectations, on SQLite and PostgreSQL."""
import math
from datetime import datetime, timedelta

import pytest

from engine.store import RunQuery
from engine.store.api import RunNotFound
from engine.store.downsample import minmax, minmax_indices
from engine.store.models import MetricRow, RunRow

T0 = datetime(2026, 11, 1, 12, 0, 0)


@pytest.fixture
def five(db_store):
    """a..e, created one day apart (a oldest). (store, {letter: run id})."""
    s = db_store
    for v in ("v1", "v2"):
        s.add_dataset_version(id=v, name=v, source="s", class_counts={"train": {"x": 1}})
    spec = {  # name, model, loss, status, kind, dataset, test/bal_acc, labels, duration s
        "a": ("Alpha ResNet", "resnet18", "ce", "finished", "train", "v1", 0.80, ["baseline", "seed-1"], 100),
        "b": ("beta", "resnet18", "ldam", "finished", "train", "v1", 0.85, ["seed-1"], 50),
        "c": ("gamma", "small_cnn", "ce", "failed", "train", "v2", None, [], 10),
        "d": ("delta_50%", "small_cnn", "ldam", "finished", "posthoc", "v2", math.nan, [], None),
        "e": ("epsilon", "resnet18", "ce", "running", "train", None, 0.70, ["baseline"], None),
    }
    ids = {}
    for i, (k, (name, model, loss, status, kind, dv, bal, labels, dur)) in enumerate(spec.items()):
        run = s.create_run({"model": model, "loss": loss, "lr": 0.1}, name=name, kind=kind,
                           dataset_version_id=dv)
        ids[k] = run.id
        if bal is not None:
            s.log_metrics(run.id, {"test/bal_acc": bal, "val/acc": 0.5}, step=10)
        s.set_labels(run.id, labels)
        with s.session() as ss:
            row = ss.get(RunRow, run.id)
            row.status, row.created_at = status, T0 + timedelta(days=i)
            if dur is not None:
                row.started_at = T0 + timedelta(days=i, hours=1)
                row.ended_at = row.started_at + timedelta(seconds=dur)
    s.set_starred(ids["a"], True)
    s.set_notes(ids["a"], "Tried LDAM later")
    return s, ids


def _names(page, ids):
    back = {v: k for k, v in ids.items()}
    return [back[r.id] for r in page.runs]


def test_sort_on_a_metric_puts_runs_without_it_last_both_ways(five):
    s, ids = five
    desc = s.query_runs(RunQuery(sort="metric:test/bal_acc"))
    assert _names(desc, ids) == ["b", "a", "e", "d", "c"] and desc.total == 5  # d: NaN, c: none
    asc = s.query_runs(RunQuery(sort="metric:test/bal_acc", descending=False))
    assert _names(asc, ids) == ["e", "a", "b", "c", "d"]
    assert [r.latest.get("test/bal_acc") for r in desc.runs] == [0.85, 0.80, 0.70, None, None]


def test_filters_and_pagination_totals(five):
    s, ids = five
    q = RunQuery(models=("resnet18",), sort="created_at")
    assert _names(s.query_runs(q), ids) == ["e", "b", "a"]
    first = s.query_runs(RunQuery(models=("resnet18",), limit=2))
    second = s.query_runs(RunQuery(models=("resnet18",), limit=2, offset=2))
    assert (_names(first, ids), first.total) == (["e", "b"], 3)
    assert (_names(second, ids), second.total) == (["a"], 3)
    assert _names(s.query_runs(RunQuery(statuses=("finished",), kinds=("train",))), ids) == ["b", "a"]
    assert _names(s.query_runs(RunQuery(dataset_version_ids=("v2",))), ids) == ["d", "c"]
    assert _names(s.query_runs(RunQuery(losses=("ldam",), models=("small_cnn",))), ids) == ["d"]
    assert _names(s.query_runs(RunQuery(starred_only=True)), ids) == ["a"]
    window = RunQuery(created_after=T0 + timedelta(days=1), created_before=T0 + timedelta(days=3))
    assert _names(s.query_runs(window), ids) == ["d", "c", "b"]  # both ends included
    none = s.query_runs(RunQuery(models=("vit",)))
    assert (none.runs, none.total) == ([], 0)


def test_labels_must_all_match(five):
    s, ids = five
    assert _names(s.query_runs(RunQuery(labels=("seed-1",))), ids) == ["b", "a"]
    assert _names(s.query_runs(RunQuery(labels=("baseline", "seed-1"))), ids) == ["a"]
    assert _names(s.query_runs(RunQuery(labels=("baseline", "nope"))), ids) == []
    # one text instead of a tuple means that one value, not its characters
    assert _names(s.query_runs(RunQuery(labels="baseline", models="resnet18")), ids) == ["e", "a"]


def test_text_search_in_name_id_notes_and_labels(five):
    s, ids = five
    assert _names(s.query_runs(RunQuery(text="ldam")), ids) == ["a"]  # notes, case-insensitive
    assert _names(s.query_runs(RunQuery(text="SEED")), ids) == ["b", "a"]  # labels
    assert _names(s.query_runs(RunQuery(text="alpha res")), ids) == ["a"]  # name
    assert _names(s.query_runs(RunQuery(text=ids["c"][:8].upper())), ids) == ["c"]  # id
    # LIKE wildcards are literal: "_" and "%" match only themselves
    assert _names(s.query_runs(RunQuery(text="_")), ids) == ["d"]
    assert _names(s.query_runs(RunQuery(text="50%")), ids) == ["d"]
    assert _names(s.query_runs(RunQuery(text="  ")), ids) == ["e", "d", "c", "b", "a"]


def test_sort_by_name_status_duration_and_best(five):
    s, ids = five
    assert _names(s.query_runs(RunQuery(sort="name", descending=False)), ids) == ["a", "b", "d", "e", "c"]
    assert _names(s.query_runs(RunQuery(sort="duration")), ids) == ["a", "b", "c", "e", "d"]
    assert _names(s.query_runs(RunQuery(sort="duration", descending=False)), ids) == ["c", "b", "a", "d", "e"]
    assert _names(s.query_runs(RunQuery(sort="status", descending=False)), ids)[:1] == ["c"]  # failed
    s.set_best(ids["a"], 0.9, 3)
    s.set_best(ids["b"], 0.7, 2)
    s.set_best(ids["c"], math.nan, 1)  # not finite: no best
    page = s.query_runs(RunQuery(sort="best_val"))
    assert _names(page, ids) == ["a", "b", "e", "d", "c"]
    assert [(r.best_val, r.best_epoch) for r in page.runs[:2]] == [(0.9, 3), (0.7, 2)]
    assert s.get_run(ids["c"]).best_val is None
    with pytest.raises(ValueError, match="Invalid sort 'size'. Valid: created_at, name"):
        s.query_runs(RunQuery(sort="size"))


def test_facets_list_the_values_present(five):
    s, _ = five
    assert s.facets() == {
        "status": ["failed", "finished", "running"], "kind": ["posthoc", "train"],
        "dataset_version_id": ["v1", "v2"], "model": ["resnet18", "small_cnn"],
        "loss": ["ce", "ldam"], "label": ["baseline", "seed-1"]}


def test_rename_notes_star_labels(db_store):
    s = db_store
    run = s.create_run({}, name="r")
    s.rename_run(run.id, "  better name ")
    s.set_notes(run.id, "lr too high?\nretry")
    s.set_starred(run.id, True)
    s.set_labels(run.id, [" tail ", "ldam", "tail", "ablation"])
    got = s.get_run(run.id)
    assert (got.name, got.notes, got.starred, got.labels) == (
        "better name", "lr too high?\nretry", True, ("ablation", "ldam", "tail"))
    with pytest.raises(ValueError, match="A tag cannot be empty"):
        s.set_labels(run.id, ["ok", "   "])
    with pytest.raises(ValueError, match="at most 64"):
        s.set_labels(run.id, ["x" * 65])
    with pytest.raises(ValueError, match=r"a list of texts, e.g. \['tail'\]"):
        s.set_labels(run.id, "tail")
    assert s.get_run(run.id).labels == ("ablation", "ldam", "tail")  # nothing changed
    s.set_labels(run.id, ["only"])  # replaces
    assert s.get_run(run.id).labels == ("only",)
    with pytest.raises(ValueError, match="cannot be empty"):
        s.rename_run(run.id, " ")
    assert s.get_run(run.id).name == "better name"
    s.set_starred(run.id, False)
    assert s.get_run(run.id).starred is False
    with pytest.raises(RunNotFound):
        s.set_labels("nope", ["a"])


def _series(s, run_id, key, values, *, t0=1000.0, every=1.0, epoch_per_step=0.01):
    with s.session() as ss:
        ss.add_all(MetricRow(run_id=run_id, key=key, step=i + 1, epoch=(i + 1) * epoch_per_step,
                             value=None if v is None or not math.isfinite(v) else v,
                             is_nan=v is None or not math.isfinite(v), timestamp=t0 + i * every)
                   for i, v in enumerate(values))


def test_curves_downsample_keep_extremes_gaps_and_cap(db_store):
    s = db_store
    a, b, c = (s.create_run({}, name=n).id for n in "abc")
    ys = [math.sin(i / 50) for i in range(5000)]
    ys[1234], ys[4321] = 7.0, -7.0  # a spike and a dip between buckets' usual values
    ys[2500] = math.nan
    _series(s, a, "loss", ys, t0=1000.0)
    _series(s, a, "other", [1.0], t0=990.0)  # the run's first metric: time counts from here
    _series(s, b, "loss", [3.0, math.inf, 1.0], t0=50.0, every=2.0)
    _series(s, c, "other", [1.0])
    out = s.curves([a, b, c, "unknown"], "loss", max_points=200)
    assert set(out) == {a, b}  # c has no "loss"; unknown ids are ignored
    ca = out[a]
    assert len(ca.x) <= 200 and len(ca.x) == len(ca.y) == len(ca.step)
    assert ca.step[0] == 1 and ca.step[-1] == 5000 and ca.x[0] == 1.0 and ca.x[-1] == 5000.0
    kept = dict(zip(ca.step, ca.y))
    assert kept[1235] == 7.0 and kept[4322] == -7.0  # max and min survive
    assert 2501 in kept and kept[2501] is None  # the NaN is a gap
    assert ca.step == sorted(ca.step)
    assert out[b].y == [3.0, None, 1.0] and out[b].x == [1.0, 2.0, 3.0]
    full = s.curves([a], "loss", max_points=10_000)[a]
    assert len(full.x) == 5000 and full.y[1234] == 7.0
    ep = s.curves([a, b], "loss", x="epoch", max_points=200)
    assert ep[a].x[0] == pytest.approx(0.01) and ep[a].x[-1] == pytest.approx(50.0)
    tm = s.curves([a, b], "loss", x="time", max_points=200)
    assert tm[a].x[0] == 10.0 and tm[a].x[-1] == 10.0 + 4999  # since "other" at 990
    assert tm[b].x == [0.0, 2.0, 4.0]
    assert s.curves([], "loss") == {}
    with pytest.raises(ValueError, match="Invalid x 'wall'"):
        s.curves([a], "loss", x="wall")


def test_minmax_by_hand():
    y = [0, 5, 1, 9, 2, 8, 3, 7, 4, 6]
    # two buckets of the inner points 1..4 and 5..8: (min 1 @2, max 9 @3), (min 3 @6, max 8 @5)
    assert minmax_indices(y, 6) == [0, 2, 3, 5, 6, 9]
    # a gap: one bucket of three (min, max, first gap) plus the ends
    assert minmax_indices([1, None, 3, 4, 5, 6, 0, 8, 9, 2], 5) == [0, 1, 6, 8, 9]
    assert minmax_indices(y, 10) == list(range(10)) and minmax_indices([], 5) == []
    assert minmax_indices(y, 2) == [0, 9]
    assert minmax(list(range(10)), y, 6) == ([0, 2, 3, 5, 6, 9], [0, 1, 9, 8, 3, 6])
    with pytest.raises(ValueError, match="differ in length"):
        minmax([1, 2], [1], 5)
    for n, cap in ((1000, 7), (1001, 100), (5, 3)):  # never over the cap
        ys = [((i * 7919) % 101) / 3 for i in range(n)]
        assert len(minmax_indices(ys, cap)) <= cap


def test_query_runs_shows_a_dead_worker_as_failed(db_store):
    s = db_store
    run = s.create_run({}, name="r")
    s.mark_running(run.id)
    with s.session() as ss:
        row = ss.get(RunRow, run.id)
        row.host, row.heartbeat_at = "elsewhere", datetime.utcnow() - timedelta(seconds=60)
    page = s.query_runs(RunQuery(statuses=("failed",)))
    assert [r.id for r in page.runs] == [run.id] and "No heartbeat" in page.runs[0].error


def test_curves_by_epoch_give_none_where_no_epoch_was_logged(db_store):
    s = db_store
    run = s.create_run({}, name="posthoc-like")
    s.log_metrics(run.id, {"val/bal_acc": 0.5}, step=0)  # no epoch
    s.log_metrics(run.id, {"val/bal_acc": 0.6}, step=1, epoch=1.0)
    c = s.curves([run.id], "val/bal_acc", x="epoch")[run.id]
    assert (c.x, c.y, c.step) == ([None, 1.0], [0.5, 0.6], [0, 1])
