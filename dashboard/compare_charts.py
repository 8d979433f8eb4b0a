"""Plotly figures of the Compare page. Pure functions of plain data (an engine.compare
Comparison and curves), testable without Streamlit. Every figure is titled, its axes labelled,
and its legend sits outside the plot (right), so 20 runs stay readable."""
from __future__ import annotations

import plotly.graph_objects as go

from dashboard.charts import GROUP_COLORS, GROUP_LABELS, RUN_PALETTE
from engine.compare import Band, Comparison

# 20 distinguishable colours: the dashboard's eight run colours first, then Tableau's.
PALETTE = RUN_PALETTE + ["#1F77B4", "#D62728", "#2CA02C", "#9467BD", "#8C564B", "#E377C2",
                         "#7F7F7F", "#BCBD22", "#17BECF", "#FF9DA6", "#BAB0AC", "#FF7F0E"]
X_TITLES = {"step": "training step", "epoch": "epoch", "time": "wall time (s since the first point)"}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _layout(fig: go.Figure, *, title: str, height: int, legend_title: str | None = None) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), height=height,
                      template="plotly_white", margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top",
                                  title=dict(text=legend_title) if legend_title else None,
                                  font=dict(size=11)))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _short(label: str, n: int = 34) -> str:
    """Shortened to n characters, cutting the run name rather than the id after " · "."""
    if len(label) <= n:
        return label
    name, sep, rest = label.rpartition(" · ")
    if sep and len(rest) < n - 4:
        return name[:n - len(rest) - 4] + "…" + sep + rest
    return label[:n - 1] + "…"


def is_percent(key: str) -> bool:
    """Accuracy-like keys are shown in %; losses, ECE and the rest as they are."""
    return key.rsplit("/", 1)[-1] in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc", "macro_f1")


def curves_overlay(c: Comparison, curves: dict, bands: dict[int, Band], *, key: str, x: str,
                   smoothed: bool = False) -> go.Figure:
    """One line per run; a seed group as its mean line with a ±1 std band (its runs faint).
    curves: run id -> (x, y) with None gaps (not connected); bands: group index -> Band."""
    pct = is_percent(key)
    scale = 100 if pct else 1
    fig = go.Figure()
    for gi, g in enumerate(c.groups):
        col = color(gi)
        if gi in bands:
            b = bands[gi]
            up = [None if m is None or s is None else (m + s) * scale for m, s in zip(b.mean, b.std)]
            lo = [None if m is None or s is None else (m - s) * scale for m, s in zip(b.mean, b.std)]
            name = _short(g.label)
            fig.add_scatter(x=b.x, y=up, mode="lines", line=dict(width=0), showlegend=False,
                            legendgroup=name, hoverinfo="skip")
            fig.add_scatter(x=b.x, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                            fillcolor=_rgba(col, 0.18), showlegend=False, legendgroup=name,
                            hoverinfo="skip")
            for rid in g.run_ids:
                if rid in curves:
                    xs, ys = curves[rid]
                    fig.add_scatter(x=xs, y=[None if v is None else v * scale for v in ys],
                                    mode="lines", line=dict(color=_rgba(col, 0.35), width=1),
                                    showlegend=False, legendgroup=name,
                                    hovertemplate=f"{c.run(rid).label}: %{{y:.3g}}<extra></extra>")
            fig.add_scatter(x=b.x, y=[None if m is None else m * scale for m in b.mean],
                            mode="lines", name=f"{name} (mean ± std)", legendgroup=name,
                            line=dict(color=col, width=2.5),
                            customdata=[[n, None if s is None else s * scale] for n, s in zip(b.n, b.std)],
                            hovertemplate="mean %{y:.3g} ± %{customdata[1]:.2g} over %{customdata[0]} runs"
                                          f"<extra>{name}</extra>")
        else:
            rid = g.run_ids[0]
            if rid not in curves:
                continue
            xs, ys = curves[rid]
            label = _short(c.run(rid).label)
            fig.add_scatter(x=xs, y=[None if v is None else v * scale for v in ys],
                            mode="lines" if len(xs) > 40 else "lines+markers", name=label,
                            line=dict(color=col, width=2), marker=dict(size=5), connectgaps=False,
                            hovertemplate=f"%{{x}}: %{{y:.3g}}<extra>{label}</extra>")
    last = max((v for xs, _ in curves.values() for v in xs), default=0)
    fig.update_xaxes(title=X_TITLES[x], dtick=1 if x == "epoch" and last <= 20 else None)
    fig.update_yaxes(title=key + (" (%)" if pct else ""))
    return _layout(fig, title=f"{key} per {X_TITLES[x].split(' (')[0]}"
                   + (" (smoothed)" if smoothed else ""), height=420)


def class_heatmap(c: Comparison) -> go.Figure:
    """Change of each class's test recall against the baseline (points), runs as rows, classes
    as columns in training-count order (head left); blue helped, red hurt, white no change; a
    strip above names the head / medium / tail groups. A gap (class missing) stays blank."""
    others = [r for r in c.runs if r.id != c.baseline]
    names = [cl.name for cl in c.classes]
    z = [[cl.delta.get(r.id) for cl in c.classes] for r in others]
    custom = [[[_fmt_pct(cl.recall.get(r.id)), _fmt_pct(cl.recall.get(c.baseline)), cl.train_count,
                GROUP_LABELS.get(cl.group, cl.group)] for cl in c.classes] for r in others]
    vals = [abs(v) for row in z for v in row if v is not None]
    top = max(vals + [1.0])
    show_text = len(names) * len(others) <= 400
    fig = go.Figure(go.Heatmap(
        x=names, y=[_short(r.label, 30) for r in others], z=z, zmid=0, zmin=-top, zmax=top,
        colorscale="RdBu", customdata=custom, xgap=1, ygap=1,
        text=[["" if v is None else f"{v:+.0f}" for v in row] for row in z] if show_text else None,
        texttemplate="%{text}" if show_text else None, textfont=dict(size=10),
        colorbar=dict(title=dict(text="points", side="right"), thickness=12, x=1.01),
        hovertemplate=("<b>%{x}</b> (%{customdata[3]}, %{customdata[2]} training images)<br>"
                       "%{y}: %{customdata[0]}<br>baseline: %{customdata[1]}<br>"
                       "change: %{z:+.1f} points<extra></extra>")))
    # the head / medium / tail strip over the columns
    for g in ("many", "medium", "few"):
        idx = [i for i, cl in enumerate(c.classes) if cl.group == g]
        if not idx:
            continue
        # a strip of fixed height in pixels just above the plot, whatever the figure's height
        fig.add_shape(type="rect", xref="x", yref="paper", x0=min(idx) - 0.5, x1=max(idx) + 0.5,
                      ysizemode="pixel", yanchor=1, y0=3, y1=19, fillcolor=GROUP_COLORS[g],
                      line_width=0)
        fig.add_annotation(xref="x", yref="paper", x=(min(idx) + max(idx)) / 2, y=1, yanchor="bottom",
                           yshift=3, text=GROUP_LABELS[g], showarrow=False,
                           font=dict(size=11, color="white"))
    fig.update_xaxes(type="category", title="class (sorted by training images, head left, tail right)",
                     tickangle=-45 if len(names) > 12 else 0, showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False, title="run")
    base = c.run(c.baseline).label
    fig = _layout(fig, title=f"Per-class recall change vs baseline {base} (points; blue helped, red hurt)",
                  height=170 + 26 * max(len(others), 2))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def _fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def group_bars(c: Comparison) -> go.Figure:
    """Head / medium / tail test accuracy: one bar per run, a seed group as one bar (its mean)
    with a ±1 std error bar."""
    from engine.compare import GROUP_METRICS, mean_std
    fig = go.Figure()
    for gi, g in enumerate(c.groups):
        stats = [mean_std(c.metrics[rid][m] for rid in g.run_ids) for m in GROUP_METRICS]
        name = _short(g.label if g.size > 1 else c.run(g.run_ids[0]).label)
        ys = [None if s.mean is None else s.mean * 100 for s in stats]
        errs = [0 if s.std is None else s.std * 100 for s in stats]
        fig.add_bar(x=list(GROUP_METRICS), y=ys, name=name, marker_color=color(gi),
                    error_y=dict(type="data", array=errs, visible=g.size > 1, thickness=1.2),
                    hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>")
    fig.update_xaxes(title="class group (by training images)")
    fig.update_yaxes(title="test accuracy (%)", range=[0, 105])
    return _layout(fig, title="Test accuracy by head / medium / tail", height=400).update_layout(
        barmode="group", bargap=0.2)


def parallel_settings(c: Comparison, settings: dict[str, list[float]], metric: str) -> go.Figure | None:
    """Parallel coordinates: each numeric setting that differs, then the chosen final metric,
    one line per run coloured by the metric. Runs without the metric are left out (None when
    fewer than two remain)."""
    vals = [c.metrics[r.id][metric] for r in c.runs]
    keep = [i for i, v in enumerate(vals) if v is not None]
    if len(keep) < 2 or not settings:
        return None
    dims = [dict(label=key, values=[col[i] for i in keep]) for key, col in settings.items()]
    pct = metric != "ECE"
    dims.append(dict(label=metric + (" (%)" if pct else ""),
                     values=[vals[i] * (100 if pct else 1) for i in keep]))
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=dims[-1]["values"], colorscale="Viridis" if pct else "Viridis_r",
                  showscale=True, colorbar=dict(title=dict(text=dims[-1]["label"]), thickness=12))))
    fig = _layout(fig, title=f"Numeric settings against {metric} (one line per run)", height=420)
    fig.update_layout(margin=dict(l=60, r=40, t=90, b=30))
    return fig

