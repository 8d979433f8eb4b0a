"""Runs page blocks (issue 9, "Runs table"): filters, sort and pages over ``Store.query_runs`` (SQL,
one page of 50 at a time, never every run); one run's name, notes, tags and star; "Clone settings
into Train" (and the Train page's side of it); CSV / JSON export of a selection or of the filtered
runs; the link to the Compare page."""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, time
from typing import Any, Mapping

import streamlit as st

from dashboard import posthoc_ui, state
from dashboard.ui import duration, pct, status_badge, when
from engine.compare import finite
from engine.store.api import flatten
from engine.store import Run, RunPage, RunQuery, Store

PAGE_SIZE = 50
COMPARE_MIN, COMPARE_MAX = 2, 20
TAG_MAX = 64  # characters in one tag (the store refuses longer ones too)
TRAIN_PAGE, COMPARE_PAGE = "../pages/train.py", "../pages/compare.py"  # as dashboard/app.py registers them

# "Sort by" choices: the table's column -> RunQuery.sort. Runs without a value sort last either way.
SORTS = {
    "created": "created_at", "test bal. acc": "metric:test/bal_acc", "test acc": "metric:test/acc",
    "test tail acc": "metric:test/few_acc", "best val bal. acc": "best_val",
    "test head acc": "metric:test/many_acc", "test medium acc": "metric:test/medium_acc",
    "test macro-F1": "metric:test/macro_f1", "test ECE": "metric:test/ece",
    "name": "name", "status": "status", "duration": "duration",
}
# Final metrics, in the table's and the export's order (the table shows them as %).
METRICS = {"test acc": "test/acc", "test bal. acc": "test/bal_acc", "test tail acc": "test/few_acc",
           "test head acc": "test/many_acc", "test medium acc": "test/medium_acc",
           "test macro-F1": "test/macro_f1", "test ECE": "test/ece"}

# Filter widgets' keys and their empty values ("Clear filters" puts these back). Sort is no filter.
FILTERS = {"runs.text": "", "runs.starred": False, "runs.status": [], "runs.kind": [],
           "runs.dataset": [], "runs.model": [], "runs.loss": [], "runs.labels": [], "runs.dates": ()}
VIEW = {"runs.sort": "created", "runs.desc": True}
# Streamlit forgets a widget's value when a page without it runs: a plain copy brings the filters
# and the sort back when the user returns to Runs.
KEPT = "runs.kept"


# --- filters, sort, page ------------------------------------------------------------------------

def clear_filters() -> None:
    for k, v in FILTERS.items():
        st.session_state[k] = v


def active_filters() -> int:
    return sum(1 for k, v in FILTERS.items() if st.session_state.get(k, v) not in (v, [], (), None, ""))


def _dataset_labels(store: Store) -> dict[str, str]:
    try:
        return {v.id: f"{v.name or v.source} · {v.id[:8]}" for v in store.list_dataset_versions()}
    except Exception:  # noqa: BLE001 — labels only
        return {}


def _multi(col, label: str, key: str, options: list[str], fmt=str, help: str | None = None) -> list[str]:
    # a value chosen earlier stays an option (its runs may be gone, or renamed away): no widget error
    opts = sorted(set(options) | set(st.session_state.get(key) or []))
    return col.multiselect(label, opts, key=key, format_func=fmt, help=help, placeholder="any")


def filters(store: Store) -> tuple[RunQuery, Any]:
    """The search box, sort and filter widgets (session_state keys "runs.*") as one RunQuery
    (offset 0; the page is set by ``page_query``), and a slot in the filters for ``clear_button``."""
    kept = st.session_state.get(KEPT, {})
    for k, v in {**FILTERS, **VIEW}.items():
        if k not in st.session_state:  # first visit, or Streamlit dropped it on another page
            st.session_state[k] = kept.get(k, v)
    c1, c2, c3, c4 = st.columns([4, 2, 1.3, 1.3], vertical_alignment="bottom")
    text = c1.text_input("Search", key="runs.text", placeholder="name, id, notes or tag",
                         help="Case-insensitive; finds runs whose name, id, notes or tags contain it.")
    sort = c2.selectbox("Sort by", list(SORTS), key="runs.sort",
                        help="Sorts every matching run (not just this page); runs without the value come last. "
                             "Created, newest first, also keeps each derived run (↳) right under its parent.")
    desc = c3.toggle("Descending", key="runs.desc", help="On: highest / newest / Z first.")
    starred = c4.toggle("⭐ Starred only", key="runs.starred")
    facets = store.facets()
    n = active_filters()
    with st.expander(f"🔎 Filters{f' ({n} active)' if n else ''}", expanded=bool(n)):
        f = st.columns([1, 1, 1.3, 1, 1, 1.1, 2.2])
        statuses = _multi(f[0], "Status", "runs.status", facets.get("status", []))
        kinds = _multi(f[1], "Kind", "runs.kind", facets.get("kind", []),
                       help="train, post-hoc correction, cRT, pruned / distilled / int8 / exported variant …")
        names = _dataset_labels(store)
        datasets = _multi(f[2], "Dataset version", "runs.dataset", facets.get("dataset_version_id", []),
                          fmt=lambda i: names.get(i, i[:12]))
        models = _multi(f[3], "Model", "runs.model", facets.get("model", []))
        losses = _multi(f[4], "Loss", "runs.loss", facets.get("loss", []))
        labels = _multi(f[5], "Tags (all of)", "runs.labels", facets.get("label", []))
        dates = f[6].date_input("Created between", key="runs.dates", format="YYYY-MM-DD",
                                help="Both days included (UTC). Pick a first and a last day.")
        slot = st.empty()
    st.session_state[KEPT] = {k: st.session_state[k] for k in (*FILTERS, *VIEW)}
    after = before = None
    if isinstance(dates, (list, tuple)) and dates:
        after = datetime.combine(dates[0], time.min)
        if len(dates) > 1:
            before = datetime.combine(dates[1], time.max)  # the last day included
    return RunQuery(statuses=tuple(statuses), kinds=tuple(kinds), dataset_version_ids=tuple(datasets),
                    models=tuple(models), losses=tuple(losses), labels=tuple(labels), starred_only=starred,
                    created_after=after, created_before=before, text=text.strip(), sort=SORTS[sort],
                    descending=desc, offset=0, limit=PAGE_SIZE), slot


def clear_button(slot, total: int) -> None:
    """One "Clear filters" button: in the filters while some match, in the message when none does."""
    if total:
        if active_filters():
            slot.button("✖ Clear filters", key="runs.clear", on_click=clear_filters)
        return
    st.info("**No runs match these filters.**")
    st.button("✖ Clear filters", key="runs.clear_empty", on_click=clear_filters, type="primary")


def bump_table() -> None:
    """A new key for the runs table: it comes back with nothing selected."""
    st.session_state["runs.table_gen"] = st.session_state.get("runs.table_gen", 0) + 1


def page_query(store: Store, q: RunQuery) -> tuple[RunPage, int, int]:
    """(the page of runs, page index, number of pages). A new filter or sort goes back to the
    first page and clears the selection (its row numbers belonged to the old table)."""
    sig = repr(q)
    if st.session_state.get("runs.sig") != sig:
        if "runs.sig" in st.session_state:
            bump_table()
        st.session_state["runs.sig"] = sig
        st.session_state["runs.page"] = 0
    page = st.session_state.get("runs.page", 0)
    res = store.query_runs(_replace(q, offset=page * PAGE_SIZE))
    pages = max(1, math.ceil(res.total / PAGE_SIZE))
    if page >= pages:  # runs were deleted meanwhile: the last page that exists
        page = st.session_state["runs.page"] = pages - 1
        res = store.query_runs(_replace(q, offset=page * PAGE_SIZE))
    return res, page, pages


def _replace(q: RunQuery, **kw) -> RunQuery:
    from dataclasses import replace
    return replace(q, **kw)


def _go(page: int) -> None:
    st.session_state["runs.page"] = page
    bump_table()


def pager(prev, label, nxt, page: int, pages: int, total: int) -> None:
    prev.button("◀", key="runs.prev", disabled=page == 0, on_click=_go, args=(page - 1,), width="stretch",
                help="Previous page")
    label.markdown(f"<div style='text-align:center'>page {page + 1} of {pages} · {total:,} run"
                   f"{'' if total == 1 else 's'}</div>", unsafe_allow_html=True)
    nxt.button("▶", key="runs.next", disabled=page >= pages - 1, on_click=_go, args=(page + 1,),
               width="stretch", help="Next page")


def ordered(runs: list[Run], q: RunQuery) -> list[Run]:
    """Newest first (the default sort): each derived run right under its parent when both are on
    this page. Any other sort is the sort alone: a child sits where its value puts it (marked ↳)."""
    if q.sort == "created_at" and q.descending:
        return posthoc_ui.family_order(runs)
    return runs


# --- the table ------------------------------------------------------------------------------------

def table(runs: list[Run]):
    """What decides between runs first (name, status, test accuracies), then the rest."""
    import pandas as pd
    rows = []
    for r in runs:
        m = {label: pct(finite(r.latest.get(key))) for label, key in METRICS.items()}
        rows.append({
            "name": ("⭐ " if r.starred else "") + ("↳ " if r.parent_run_id else "") + r.name,
            "status": "🕒 waiting" if r.waiting else status_badge(r.status),
            "test acc": m["test acc"], "test bal. acc": m["test bal. acc"], "test tail acc": m["test tail acc"],
            "best val bal. acc": pct(finite(r.best_val)),
            "test head acc": m["test head acc"], "test medium acc": m["test medium acc"],
            "test macro-F1": m["test macro-F1"], "test ECE": m["test ECE"],
            "tags": ", ".join(r.labels), "kind": r.kind,
            "dataset": (r.config.get("data") or {}).get("source", ""),
            "model": r.config.get("model", ""), "loss": r.config.get("loss", "") or "",
            "created": when(r.created_at).removesuffix(" UTC"), "duration": duration(r.duration_s), "id": r.id,
        })
    return pd.DataFrame(rows)


COLUMNS = {
    "name": st.column_config.TextColumn("name", width="medium", pinned=True),
    "status": st.column_config.TextColumn("status", width="small"),
    "tags": st.column_config.TextColumn("tags", width="medium"),
    "created": st.column_config.TextColumn("created (UTC)"),
    "id": st.column_config.TextColumn("id", width="small"),
}


def selection(event, runs: list[Run], key: str) -> list[Run] | None:
    """The selected runs. None when the table changed under a kept selection (a new run arrived,
    an edit re-sorted it): the selection is cleared rather than pointing at other runs."""
    rows = list(event.selection.rows) if event and event.selection else []
    chosen = [runs[i] for i in rows if 0 <= i < len(runs)]
    ids = [r.id for r in chosen]
    last = st.session_state.get("runs.sel")
    st.session_state["runs.sel"] = (key, rows, ids)
    if last and last[0] == key and last[1] == rows and last[2] != ids and rows:
        bump_table()
        st.session_state["runs.flash"] = "The table changed under your selection (a new run, or an edit re-sorted it): select again."
        st.session_state.pop("runs.sel", None)
        return None
    return chosen


# --- one run: name, notes, tags, star ----------------------------------------------------------------

def _set_star(store: Store, run_id: str, key: str) -> None:
    store.set_starred(run_id, bool(st.session_state[key]))


def _set_tags(store: Store, run_id: str, key: str) -> None:
    tags = [str(t).strip() for t in st.session_state[key]]
    err = tag_problem(tags)
    if err is None:
        try:
            store.set_labels(run_id, tags)
        except ValueError as e:
            err = str(e)
    st.session_state["runs.tag_error"] = (run_id, err) if err else None


def tag_problem(tags: list[str]) -> str | None:
    """Why these tags cannot be saved, or None."""
    for t in tags:
        if not t:
            return "An empty tag cannot be saved. Nothing was changed."
        if len(t) > TAG_MAX:
            return (f"The tag “{t[:24]}…” is {len(t)} characters long; a tag is at most {TAG_MAX}. "
                    "Nothing was changed: shorten it.")
    return None


def star_toggle(store: Store, run: Run, slot) -> None:
    key = f"runs.star.{run.id}"
    st.session_state[key] = run.starred  # the store's value, also after a change elsewhere
    slot.toggle("⭐ Starred", key=key, on_change=_set_star, args=(store, run.id, key),
                help="Starred runs carry ⭐ in the table; “Starred only” above lists just them.")


def edit(store: Store, run: Run) -> None:
    """Rename, tags and notes of one run, each saved to the store."""
    with st.expander("✏️ Name, tags and notes", expanded=False):
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        name = c1.text_input("Name", value=run.name, key=f"runs.name.{run.id}", max_chars=200)
        if c2.button("💾 Save name", key=f"runs.rename.{run.id}", width="stretch"):
            if not name.strip():
                st.error("**A run needs a name:** the name was not changed.")
            elif name.strip() != run.name:
                try:
                    store.rename_run(run.id, name.strip())
                except ValueError as e:
                    st.error(f"**Cannot rename this run:** {e}")
                else:
                    st.session_state["runs.flash"] = f"Renamed to {name.strip()}."
                    st.rerun()
        key = f"runs.tags.{run.id}"
        options = sorted(set(store.facets().get("label", [])) | set(run.labels))
        st.multiselect("Tags", options, default=list(run.labels), key=key, accept_new_options=True,
                       on_change=_set_tags, args=(store, run.id, key), placeholder="add a tag: type it, press Enter",
                       help=f"Your own labels for this run (at most {TAG_MAX} characters each); "
                            "filter by them above. Saved at once.")
        err = st.session_state.get("runs.tag_error")
        if err and err[0] == run.id:
            st.error(f"**Tags not saved:** {err[1]}")
        notes = st.text_area("Notes", value=run.notes, key=f"runs.notes.{run.id}", height=90,
                             placeholder="What this run tried, what you saw …")
        if st.button("💾 Save notes", key=f"runs.savenotes.{run.id}"):
            store.set_notes(run.id, notes)
            st.session_state["runs.flash"] = "Notes saved."
            st.rerun()


# --- clone into Train ----------------------------------------------------------------------------

CLONE_KEY, CLONE_NAME_KEY, CLONE_APPLIED_KEY = "train.clone_config", "train.clone_name", "train.clone_applied"
# Settings a clone does not copy: it gets its own name, and loader workers / threads are chosen
# for the machine it runs on now (auto).
NOT_CLONED = ("name", "num_workers", "threads")


def clone_problem(run: Run) -> str | None:
    """Why a run's settings cannot be cloned into Train, or None."""
    from engine.config import ConfigError, train_config_from_dict
    try:
        train_config_from_dict(run.config)
    except (ConfigError, TypeError, ValueError) as e:
        if run.kind != "train" and run.parent_run_id:
            return (f"This is a {run.kind} run derived from another run, not a training run of its own: "
                    "clone its parent (listed above it) instead.")
        return f"This run's stored settings are not a training configuration this version accepts: {e}"
    return None


def clone_into_train(run: Run) -> None:
    """Put the run's settings where the Train page reads them, then open Train."""
    st.session_state[CLONE_KEY] = dict(run.config)
    st.session_state[CLONE_NAME_KEY] = run.name
    st.session_state.pop(CLONE_APPLIED_KEY, None)  # Train fills its widgets from it once
    st.switch_page(TRAIN_PAGE)


def clone_button(run: Run, slot) -> None:
    problem = clone_problem(run)
    if slot.button("📋 Clone settings into Train", key="runs.clone", disabled=problem is not None,
                   help=problem or "Opens Train with every setting of this run filled in; change what you "
                                   "want to try, then press Train.", width="stretch"):
        clone_into_train(run)


# The Train page's widgets (keys) and the TrainConfig value each shows, with the widget's range.
def train_widget_values(cfg, options: Mapping[str, list] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(widget key -> value for the Train page, settings left out because the widget cannot show
    them: out of a number's range, or not among a selectbox's ``options``). Loss parameters go to
    that loss's number / text inputs."""
    from engine.config import AUTO
    vals: dict[str, Any] = {
        "train.model": cfg.model, "train.epochs": int(cfg.epochs),
        "train.batch": None if cfg.batch_size is None else int(cfg.batch_size),
        "train.lr": None if cfg.lr is None else float(cfg.lr), "train.opt": cfg.optimizer,
        "train.seed": int(cfg.seed), "train.loss": cfg.loss, "train.sampler": cfg.sampler,
        "train.wd": None if cfg.weight_decay is None else float(cfg.weight_decay),
        "train.sched": cfg.scheduler, "train.warmup": float(cfg.warmup_epochs),
        "train.drw": int(cfg.drw_epoch or 0),
        "train.size": None if cfg.data.image_size is None else int(cfg.data.image_size),
        "train.channels": AUTO if cfg.data.channels is None else int(cfg.data.channels),
        "train.name": "",
        "train.momentum": float(cfg.momentum), "train.nesterov": bool(cfg.nesterov),
        "train.step_size": int(cfg.step_size), "train.milestones": ", ".join(str(m) for m in cfg.milestones),
        "train.gamma": float(cfg.gamma), "train.plateau_patience": int(cfg.plateau_patience),
        "train.plateau_factor": float(cfg.plateau_factor), "train.es": int(cfg.early_stop_patience or 0),
        "train.es_metric": cfg.early_stop_metric, "train.clip": float(cfg.grad_clip or 0.0),
        "train.smooth": float(cfg.label_smoothing), "train.pretrained": bool(cfg.pretrained),
        "train.freeze": int(cfg.freeze_backbone_epochs), "train.bb_mult": float(cfg.backbone_lr_mult),
        "train.weights": cfg.weights_file or "", "train.device": cfg.device, "train.precision": cfg.precision,
        "train.chlast": cfg.channels_last, "train.det": bool(cfg.deterministic),
    }
    ranges = {"train.epochs": (1, 1000), "train.batch": (1, 4096), "train.lr": (1e-6, 10.0),
              "train.wd": (0.0, 1.0), "train.warmup": (0.0, 100.0), "train.drw": (0, 1000),
              "train.size": (8, 1024), "train.seed": (0, 2**31 - 1), "train.momentum": (0.0, 0.999),
              "train.step_size": (1, 1000), "train.gamma": (0.001, 0.999), "train.plateau_patience": (0, 100),
              "train.plateau_factor": (0.001, 0.999), "train.es": (0, 1000), "train.clip": (0.0, 1000.0),
              "train.smooth": (0.0, 0.99), "train.freeze": (0, 1000), "train.bb_mult": (0.0, 1.0)}
    skipped = []
    for k, (lo, hi) in ranges.items():
        v = vals[k]
        if v is not None and not lo <= v <= hi:
            skipped.append(f"{k.removeprefix('train.')} {v} (outside this page's {lo}–{hi})")
            del vals[k]
    for k, allowed in (options or {}).items():
        if k in vals and vals[k] not in allowed:
            skipped.append(f"{k.removeprefix('train.')} {vals.pop(k)!r} (not offered on this page)")
    for p, v in (cfg.loss_params or {}).items():
        if isinstance(v, bool) or v is None:
            continue
        vals[f"train.lp.{cfg.loss}.{p}"] = float(v) if isinstance(v, (int, float)) else str(v)
    return vals, skipped


def cloned_config():
    """The TrainConfig cloned from a run (``train.clone_config``), or None."""
    from engine.config import ConfigError, train_config_from_dict
    d = st.session_state.get(CLONE_KEY)
    if not d:
        return None
    try:
        return train_config_from_dict(d)
    except (ConfigError, TypeError, ValueError):
        return None


def apply_clone(options: Mapping[str, list] | None = None) -> Any:
    """Train page, before its widgets: fill them from the cloned run once (after that the user's
    changes stand, until another page makes Streamlit forget them), and make the run's dataset the
    one Train uses. Returns the TrainConfig or None."""
    from dataclasses import replace
    cfg = cloned_config()
    if cfg is None:
        return None
    first = not st.session_state.get(CLONE_APPLIED_KEY)
    vals, skipped = train_widget_values(cfg, options)
    for k, v in vals.items():
        # a widget Streamlit forgot while another page ran shows the clone again, not the default
        if first or k not in st.session_state:
            st.session_state[k] = v
    if first:  # once: a dataset chosen on Data after the clone stands
        state.set_data_config(replace(cfg.data, image_size=None, channels=None))
        st.session_state[CLONE_APPLIED_KEY] = {"skipped": skipped}
    return cfg


def _clear_clone() -> None:
    cfg = cloned_config()
    for k in (CLONE_KEY, CLONE_NAME_KEY, CLONE_APPLIED_KEY):
        st.session_state.pop(k, None)
    if cfg is not None:  # the page's widgets back to their defaults
        for k in [*train_widget_values(cfg)[0], *[k for k in st.session_state if str(k).startswith("train.lp.")]]:
            st.session_state.pop(k, None)


def carried(cfg) -> list[str]:
    """Settings of the clone the Train page has no widget for, as 'name value' (non-default ones)."""
    from engine.config import TrainConfig
    shown = {"data", "name", "model", "epochs", "batch_size", "lr", "optimizer", "seed", "loss", "loss_params",
             "sampler", "weight_decay", "scheduler", "warmup_epochs", "drw_epoch", "augment", "momentum", "nesterov",
             "step_size", "milestones", "gamma", "plateau_patience", "plateau_factor", "early_stop_patience",
             "early_stop_metric", "grad_clip", "label_smoothing", "pretrained", "freeze_backbone_epochs",
             "backbone_lr_mult", "weights_file", "device", "precision", "channels_last", "deterministic", *NOT_CLONED}
    d = TrainConfig()
    out = [f"{f} {getattr(cfg, f)!r}" for f in TrainConfig.__dataclass_fields__
           if f not in shown and getattr(cfg, f) != getattr(d, f)]
    hidden = {p: v for p, v in (cfg.loss_params or {}).items() if isinstance(v, bool) or v is None}
    out += [f"loss parameter {p} {v!r}" for p, v in hidden.items()]
    return out


def clone_banner(cfg) -> None:
    """Train page: where the settings came from, what is carried without a widget, and a way out."""
    name = st.session_state.get(CLONE_NAME_KEY, "?")
    skipped = (st.session_state.get(CLONE_APPLIED_KEY) or {}).get("skipped", [])
    extra = carried(cfg)
    with st.container(border=True):
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.markdown(f"📋 **Settings cloned from run {name}.** Every setting below shows that run's value "
                    "(what auto resolved to when it ran); its dataset (in the sidebar) and its augmentation "
                    "recipe come with it. Change anything, then press **Train**.")
        c2.button("✖ Clear", key="train.clone_clear", on_click=_clear_clone, width="stretch",
                  help="Forget the cloned settings: the page's defaults, the workspace's recipe in use.")
        c1.caption(("Carried without a widget here: " + ", ".join(extra) + ". " if extra else "")
                   + "Loader workers and threads are chosen for this machine; the new run gets its own name.")
        if skipped:
            st.warning("Not copied (the widget cannot show it; the widget's value applies): "
                       + "; ".join(skipped) + ".")


# --- export ------------------------------------------------------------------------------------

def _metric_keys(runs: list[Run]) -> list[str]:
    first = list(METRICS.values())
    rest = sorted({k for r in runs for k in r.latest if k.startswith("test/") and k not in first})
    return first + rest


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats -> None, tuples -> lists, nested too."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def export_records(runs: list[Run]) -> list[dict]:
    keys = _metric_keys(runs)
    return [{
        "id": r.id, "name": r.name, "kind": r.kind, "status": r.status, "parent_run_id": r.parent_run_id,
        "dataset_version_id": r.dataset_version_id, "created_at": r.created_at.isoformat(),
        "duration_s": finite(r.duration_s) if r.ended_at else None, "starred": r.starred,
        "tags": list(r.labels), "notes": r.notes, "best_val_bal_acc": finite(r.best_val),
        "metrics": {k: finite(r.latest.get(k)) for k in keys},
        "settings": _clean(flatten(r.config, encode=False)),
    } for r in runs]


def export_json(runs: list[Run]) -> str:
    return json.dumps(export_records(runs), indent=2, allow_nan=False)


def export_csv(runs: list[Run]) -> str:
    """One row per run: the run's facts, its final metrics (empty = none), then every setting
    as config.<name> (lists and tables as JSON)."""
    recs = export_records(runs)
    metric_keys = _metric_keys(runs)
    setting_keys = sorted({k for rec in recs for k in rec["settings"]})
    head = ["id", "name", "kind", "status", "parent_run_id", "dataset_version_id", "created_at", "duration_s",
            "starred", "tags", "notes", "best_val_bal_acc"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head + metric_keys + [f"config.{k}" for k in setting_keys])

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, (list, dict)):
            return json.dumps(v)
        return repr(v) if isinstance(v, float) else str(v)

    for rec in recs:
        row = [cell(rec[h]) if h != "tags" else "; ".join(rec["tags"]) for h in head]
        row += [cell(rec["metrics"].get(k)) for k in metric_keys]
        row += [cell(rec["settings"].get(k)) for k in setting_keys]
        w.writerow(row)
    return buf.getvalue()


def export_buttons(slot, store: Store, chosen: list[Run], q: RunQuery, total: int) -> None:
    """CSV and JSON of the selected runs, or of every run the filters match when none is selected
    (built when clicked, so a large history costs nothing until then)."""
    if chosen:
        what, get = f"{len(chosen)} selected", (lambda: chosen)
    else:
        what = f"all {total:,} filtered"

        def get() -> list[Run]:
            return store.query_runs(_replace(q, offset=0, limit=max(total, 1))).runs
    stamp = datetime.utcnow().strftime("%Y%m%d-%H%M")
    a, b = slot.columns(2)
    a.download_button("⬇ CSV", lambda: export_csv(get()), file_name=f"taillab-runs-{stamp}.csv",
                      mime="text/csv", key="runs.export.csv", width="stretch", disabled=total == 0,
                      help=f"Settings and final metrics of the {what} runs, one row each.")
    b.download_button("⬇ JSON", lambda: export_json(get()), file_name=f"taillab-runs-{stamp}.json",
                      mime="application/json", key="runs.export.json", width="stretch", disabled=total == 0,
                      help=f"Settings and final metrics of the {what} runs.")


# --- several runs: the Compare link ----------------------------------------------------------------

def compare_url(chosen: list[Run]) -> str:
    return "compare?runs=" + ",".join(r.id for r in chosen)


def compare_link(chosen: list[Run], slot) -> None:
    """A button to the Compare page with the selected runs (2 to 20), or why not."""
    n = len(chosen)
    if n < COMPARE_MIN:
        return
    if n > COMPARE_MAX:
        slot.warning(f"Compare takes {COMPARE_MIN} to {COMPARE_MAX} runs; {n} are selected.")
        return
    if slot.button(f"⚖️ Compare {n} runs", key="runs.compare", type="primary", width="stretch",
                   help="Opens the Compare page with these runs (its URL reopens the same comparison)."):
        try:
            st.switch_page(COMPARE_PAGE, query_params={"runs": ",".join(r.id for r in chosen)})
        except st.errors.StreamlitAPIException:  # a dashboard without the Compare page
            slot.markdown(f"[Open the comparison]({compare_url(chosen)})")
