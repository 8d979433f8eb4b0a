"""The Compare page: 2 to 20 runs side by side, everything in the URL.

    /compare?runs=ID1,ID2,ID3&baseline=ID1&metric=val/bal_acc&x=epoch&smooth=0

``runs``: full ids or unique prefixes of at least 8 characters. Each widget starts from its
query parameter and writes its value back when the user changes it, so a copied link reopens the
same view. A run deleted since the link was made is named in a note; the others still compare.
"""
from __future__ import annotations

import streamlit as st

from dashboard import compare_charts as cc
from engine import compare as cmp
from engine.store import Run, Store

URL_PREFIX = 8  # shortest id prefix accepted in a link
X_AXES = {"epoch": "epoch", "step": "step", "time": "wall time"}
DEFAULT_METRIC = "val/bal_acc"
MAX_AXES = 8  # numeric settings on the parallel coordinates


def url_ids(raw: str | None) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in (raw or "").split(",") if i.strip()))


def _sync_from_url(name: str, value) -> None:
    """Put ``value`` (parsed from the query string) into the widget's state when the URL changed
    since we last read it (first visit, a pasted link) or the widget has no state; a user's
    change is written back by _to_url, so it is not undone here."""
    raw = st.query_params.get(name)
    # Streamlit drops a widget's state on a page it left: back from Runs with the same link,
    # the URL is unchanged but the widget must be filled again
    if (f"compare.{name}" not in st.session_state
            or st.session_state.get(f"compare.{name}.url", "<unset>") != raw):
        st.session_state[f"compare.{name}.url"] = raw
        st.session_state[f"compare.{name}"] = value


def _to_url(name: str, fmt=str) -> None:
    value = st.session_state.get(f"compare.{name}")
    raw = fmt(value)
    if raw in (None, ""):
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = raw
    st.session_state[f"compare.{name}.url"] = raw if raw not in ("",) else None


def _run_label(r: Run) -> str:
    return f"{r.name} · {r.id[:6]}" + ("" if r.status == "finished" else f" · {r.status}")


def selection(store: Store) -> tuple[list[str], list[str]]:
    """The multiselect of runs, from and back to ?runs=. Returns (selected ids, missing ids)."""
    requested = url_ids(st.query_params.get("runs"))
    if len(requested) > cmp.MAX_RUNS:
        st.warning(f"The link names {len(requested)} runs; Compare shows at most {cmp.MAX_RUNS}: "
                   f"the first {cmp.MAX_RUNS} are selected.")
        requested = requested[:cmp.MAX_RUNS]
    try:
        found, missing = cmp.resolve_ids(store, requested, min_prefix=URL_PREFIX)
    except cmp.CompareError as e:  # an ambiguous prefix in a hand-made link
        st.error(f"{e} The link's other runs are selected below.")
        found, missing = [], []
    _sync_from_url("runs", found)
    runs = store.list_runs(limit=500)
    by_id = {r.id: r for r in runs}
    for rid in st.session_state.get("compare.runs", []):  # selected but older than the newest 500
        if rid not in by_id:
            try:
                by_id[rid] = store.get_run(rid)
            except KeyError:
                pass
    st.session_state["compare.runs"] = [i for i in st.session_state.get("compare.runs", []) if i in by_id]
    chosen = st.multiselect(
        "Runs to compare (2 to 20; newest first)", options=list(by_id),
        format_func=lambda i: _run_label(by_id[i]), key="compare.runs",
        max_selections=cmp.MAX_RUNS, on_change=_to_url, args=("runs", ",".join),
        placeholder="Pick runs by name or id …")
    return chosen, missing


def _missing_note(missing: list[str], left: int) -> None:
    if missing:
        st.warning(f"**{len(missing)} run{'s' if len(missing) > 1 else ''} in this link no longer "
                   f"exist{'s' if len(missing) == 1 else ''}** (deleted since the link was made, "
                   "or a mistyped id): "
                   + ", ".join(f"`{m}`" for m in missing)
                   + (f". The other {left} are compared." if left >= 2 else "."))


def _baseline(chosen: list[str]) -> str:
    """The baseline run: ?baseline= (an id or a prefix of at least 8 characters) when it is one
    of the selected runs, else the first selected run."""
    raw = st.query_params.get("baseline") or ""
    from_url = next((i for i in chosen if i == raw or (len(raw) >= URL_PREFIX and i.startswith(raw))),
                    None)
    _sync_from_url("baseline", from_url)
    if st.session_state.get("compare.baseline") not in chosen:
        st.session_state["compare.baseline"] = chosen[0]
    return st.session_state["compare.baseline"]


def controls(c: cmp.Comparison) -> tuple[str, str, float, str]:
    """Metric, x axis, smoothing and baseline: each from and back to the query string."""
    # curves first; the final test/ values (one point each) last
    keys = sorted(c.metric_keys, key=lambda k: (k.startswith("test/"), k))
    metric_url = st.query_params.get("metric")
    metric = metric_url if metric_url in keys else (DEFAULT_METRIC if DEFAULT_METRIC in keys
                                                    else (keys[0] if keys else None))
    if metric_url and metric_url not in keys:
        st.info(f"The link's metric `{metric_url}` is not logged by these runs; showing `{metric}`.")
    _sync_from_url("metric", metric)
    x_url = st.query_params.get("x")
    _sync_from_url("x", x_url if x_url in X_AXES else "epoch")
    try:
        smooth = float(st.query_params.get("smooth") or 0)
        smooth = smooth if 0 <= smooth <= 0.95 else 0.0
    except ValueError:
        smooth = 0.0
    _sync_from_url("smooth", round(smooth, 2))
    if st.session_state.get("compare.metric") not in keys:
        st.session_state["compare.metric"] = metric
    c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
    c1.selectbox("Metric to plot", keys, key="compare.metric", on_change=_to_url, args=("metric",),
                 help="Any metric the selected runs logged.")
    c2.radio("x axis", list(X_AXES), format_func=X_AXES.get, key="compare.x", horizontal=True,
             on_change=_to_url, args=("x",))
    c3.slider("Smoothing (EMA)", 0.0, 0.95, step=0.05, key="compare.smooth", on_change=_to_url,
              args=("smooth", lambda v: f"{v:g}"), help="0 = off. Gaps stay gaps.")
    c4.selectbox("Baseline (per-class changes are measured against it)", c.ids,
                 format_func=lambda i: c.run(i).label, key="compare.baseline", on_change=_to_url,
                 args=("baseline",))
    return (st.session_state["compare.metric"], st.session_state["compare.x"],
            float(st.session_state["compare.smooth"]), st.session_state["compare.baseline"])


def curves_section(store: Store, c: cmp.Comparison, metric: str, x: str, smooth: float) -> None:
    if not metric:
        st.info("These runs logged no metrics yet.")
        return
    curves = cmp.curves(store, c.ids, metric, x=x)
    if smooth:
        curves = {rid: (xs, cmp.ema(ys, smooth)) for rid, (xs, ys) in curves.items()}
    bands = {gi: cmp.band({rid: curves[rid] for rid in g.run_ids if rid in curves})
             for gi, g in enumerate(c.groups) if g.size > 1 and any(rid in curves for rid in g.run_ids)}
    without = [c.run(rid).label for rid in c.ids if rid not in curves]
    st.plotly_chart(cc.curves_overlay(c, curves, bands, key=metric, x=x, smoothed=bool(smooth)),
                    width="stretch", key="compare.curves")
    if without:
        st.caption(f"No `{metric}` logged by: " + ", ".join(without) + ".")


def _pct(v: float | None, label: str) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if label == "ECE" else f"{v * 100:.1f}%"


def _stat(s: cmp.Stat, label: str) -> str:
    if s.mean is None:
        return "—"
    if label == "ECE":
        return f"{s.mean:.3f}" + ("" if s.std is None else f" ± {s.std:.3f}")
    return f"{s.mean * 100:.1f}" + ("" if s.std is None else f" ± {s.std * 100:.1f}") + "%"


def metrics_table(c: cmp.Comparison):
    """Runs as rows, final metrics as columns, the best of each column highlighted. The dataset
    column only when the runs' datasets differ."""
    import pandas as pd
    labels = list(cmp.FINAL_METRICS)
    mixed = c.mixed_datasets
    rows, best = [], []
    for r in c.runs:
        rows.append({"run": r.label + (" (baseline)" if r.id == c.baseline else ""),
                     **({"dataset": r.dataset} if mixed else {}), "seed": r.seed or "—",
                     **{lab: _pct(c.metrics[r.id][lab], lab) for lab in labels}})
        best.append([r.id in c.best[lab] for lab in labels])
    df = pd.DataFrame(rows)

    def mark(col):
        if col.name not in labels:
            return [""] * len(col)
        j = labels.index(col.name)
        return ["background-color: #d4edda; font-weight: 700" if best[i][j] else ""
                for i in range(len(col))]
    return df.style.apply(mark, axis=0)


def group_table(c: cmp.Comparison):
    """One row per seed group: "mean ± std" over its runs (sample std)."""
    import pandas as pd
    return pd.DataFrame([{"seed group": c.groups[gi].label, "seeds": ", ".join(c.groups[gi].seeds),
                          **{lab: _stat(stats[lab], lab) for lab in cmp.FINAL_METRICS}}
                         for gi, stats in c.group_metrics.items()])


def _height(rows: int) -> int:
    """A dataframe tall enough to show every row (no inner scrolling up to 20 runs)."""
    return 38 + 35 * rows


def class_table(c: cmp.Comparison):
    """Each class's test recall per run (its change vs the baseline in points), classes in
    training-count order; a seed group adds a "mean ± std" column."""
    import pandas as pd
    from dashboard.charts import GROUP_LABELS
    rows = []
    for cl in c.classes:
        row = {"class": cl.name, "group": GROUP_LABELS.get(cl.group, cl.group),
               "training images": cl.train_count}
        for r in c.runs:
            v = cl.recall.get(r.id)
            d = cl.delta.get(r.id)
            cell = "gap" if v is None else f"{v * 100:.1f}%"
            if r.id != c.baseline and d is not None:
                cell += f" ({d:+.1f})"
            row[r.label] = cell
        for g in c.groups:
            if g.size > 1:
                row[f"{g.label}: mean ± std"] = _stat(cmp.mean_std(cl.recall.get(i) for i in g.run_ids), "")
        rows.append(row)
    return pd.DataFrame(rows)


def settings_table(c: cmp.Comparison):
    """Runs as rows (the order of the metrics table), one column per setting that differs."""
    import pandas as pd
    return pd.DataFrame([{"run": r.label, **{k: ("—" if vals[i] is None else vals[i])
                                             for k, vals in c.settings}}
                         for i, r in enumerate(c.runs)])


def page() -> None:
    st.title("⚖️ Compare")
    store = _store()
    chosen, missing = selection(store)
    _missing_note(missing, len(chosen))
    if len(chosen) < cmp.MIN_RUNS:
        st.info("Pick **two to twenty runs** above, or select them in the table on **Runs** and "
                "press **Compare**. The page's link (address bar) keeps the selection and the "
                "chart choices, to share or reopen later.")
        st.stop()
    baseline = _baseline(chosen)
    try:
        c = cmp.compare(store, chosen, baseline=baseline, allow_missing=True)
    except cmp.CompareError as e:
        st.error(str(e))
        st.stop()
    for w in c.warnings:
        st.warning(w)
    metric, x, smooth, _ = controls(c)
    seeds = [g for g in c.groups if g.size > 1]
    st.caption(f"{len(c.runs)} runs" + (
        f" · {len(seeds)} seed group{'s' if len(seeds) > 1 else ''} (runs that differ only in seed): "
        "a mean line with a ±1 std band in the curves, one bar with an error bar, and a "
        "“mean ± std” table under the final metrics" if seeds else ""))

    st.subheader("Curves")
    curves_section(store, c, metric, x, smooth)

    st.subheader("Final test metrics")
    st.caption("Best of each column highlighted (highest; for ECE, the calibration error, lowest).")
    st.dataframe(metrics_table(c), hide_index=True, width="stretch", height=_height(len(c.runs)))
    if c.group_metrics:
        st.caption("Runs that differ only in seed, as mean ± std over their seeds (sample std):")
        st.dataframe(group_table(c), hide_index=True, width="stretch",
                     height=_height(len(c.group_metrics)))

    st.subheader("Per class")
    for n in c.class_notes:
        st.caption(n)
    if c.classes:
        st.plotly_chart(cc.class_heatmap(c), width="stretch", key="compare.heatmap")
        with st.expander("Per-class test recall of every run (change vs the baseline in points)"):
            st.dataframe(class_table(c), hide_index=True, width="stretch",
                         height=min(_height(len(c.classes)), 600))
    else:
        st.info("None of these runs has per-class test results yet (they appear when a run finishes).")
    st.plotly_chart(cc.group_bars(c), width="stretch", key="compare.groups")

    st.subheader("Settings")
    numeric = cmp.numeric_settings(c)
    if len(numeric) > MAX_AXES:  # the ones that vary most (relative spread) stay readable
        spread = {k: (max(v) - min(v)) / (abs(max(v)) + abs(min(v)) or 1) for k, v in numeric.items()}
        numeric = {k: numeric[k] for k in sorted(numeric, key=lambda k: -spread[k])[:MAX_AXES]}
        st.caption(f"Parallel coordinates: the {MAX_AXES} numeric settings that vary most.")
    if numeric:
        target = st.selectbox("Metric for the parallel coordinates", list(cmp.FINAL_METRICS), index=1,
                              key="compare.parcoords")
        fig = cc.parallel_settings(c, numeric, target)
        if fig is None:
            st.caption(f"Fewer than two runs have a final {target}: no parallel coordinates.")
        else:
            st.plotly_chart(fig, width="stretch", key="compare.parallel")
    if c.settings:
        st.caption("Only the settings that differ (names and machine settings left out).")
        st.dataframe(settings_table(c), hide_index=True, width="stretch", height=_height(len(c.runs)))
    else:
        st.caption("All settings are the same (apart from names and machine settings).")


def _store() -> Store:
    from dashboard import state
    return state.store()
