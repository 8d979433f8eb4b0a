"""Plotly figure builders. Pure functions of plain data, so they are testable without Streamlit."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

GROUP_COLORS = {"many": "#4C78A8", "medium": "#F58518", "few": "#E45756"}
# One name per group in every label, legend and table of the dashboard (store keys stay many / few).
GROUP_LABELS = {"many": "head", "medium": "medium", "few": "tail"}
RUN_PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#9D755D", "#E45756", "#72B7B2", "#EECA3B"]
SPLIT_COLORS = {"train": "#4C78A8", "val": "#72B7B2", "test": "#B279A2"}


def _layout(fig: go.Figure, *, title: str | None = None, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
                      template="plotly_white", **kw)
    return fig


def class_order(names: Sequence, counts: Sequence[int]) -> list[int]:
    """Indices of classes by training count, largest first, then by name: the one order of every
    class chart and table."""
    return sorted(range(len(names)), key=lambda i: (-int(counts[i]), str(names[i])))


def class_histogram(names: Sequence[str], counts: Sequence[int], groups: Sequence[str], *,
                    log_y: bool = False, show_cumulative: bool = True,
                    many_threshold: int | None = None, few_threshold: int | None = None) -> go.Figure:
    """Bars sorted high to low (ties by name), coloured head / medium / tail, with the cumulative
    share line."""
    order = class_order(names, counts)
    names = [str(names[i]) for i in order]
    counts = [int(counts[i]) for i in order]
    groups = [groups[i] for i in order]
    fig = go.Figure()
    for g in ("many", "medium", "few"):
        idx = [i for i, x in enumerate(groups) if x == g]
        if idx:
            fig.add_bar(x=[names[i] for i in idx], y=[counts[i] for i in idx], name=GROUP_LABELS[g],
                        marker_color=GROUP_COLORS[g],
                        hovertemplate="%{x}: %{y} images<extra>" + GROUP_LABELS[g] + "</extra>")
    total = max(sum(counts), 1)
    if show_cumulative and counts:
        cum = (np.cumsum(counts) / total * 100).tolist()
        fig.add_scatter(x=names, y=cum, name="Cumulative share (%)", yaxis="y2", mode="lines+markers",
                        line=dict(color="#54A24B", width=2), marker=dict(size=4),
                        hovertemplate="%{x}: %{y:.1f}% of images<extra></extra>")
        fig.update_layout(yaxis2=dict(title="cumulative % of images", overlaying="y", side="right",
                                      range=[0, 105], showgrid=False, tickmode="array",
                                      tickvals=[0, 20, 40, 60, 80, 100]))
    for thr, label in ((many_threshold, "head: more than"), (few_threshold, "tail: fewer than")):
        if thr:
            # plotly.js places shapes in data units but annotations in log10 units on a log axis
            fig.add_hline(y=thr, line_dash="dot", line_color="#888")
            fig.add_annotation(x=1, xref="paper", xanchor="right", y=math.log10(thr) if log_y else thr,
                               yanchor="bottom", text=f"{label} {thr}", showarrow=False,
                               font=dict(size=11, color="#666"), bgcolor="rgba(255,255,255,0.8)")
    fig.update_xaxes(categoryorder="array", categoryarray=names, title="class (sorted by count)")
    fig.update_layout(yaxis=dict(title="training images" + (" (log scale)" if log_y else ""),
                                 type="log" if log_y else "linear", dtick=1 if log_y else None))
    return _layout(fig, barmode="overlay", bargap=0.15)


def split_counts(names: Sequence[str], per_split: dict[str, Sequence[int]]) -> go.Figure:
    fig = go.Figure()
    for split, counts in per_split.items():
        fig.add_bar(x=list(map(str, names)), y=list(counts), name=split,
                    marker_color=SPLIT_COLORS.get(split))
    fig.update_yaxes(title="images")
    return _layout(fig, barmode="group", height=300)


def step_loss(steps: Sequence[int], values: Sequence[float | None], *, smooth: float = 0.9) -> go.Figure:
    """Training loss per logged step: the raw points faint, the smoothed line (EMA) on top."""
    fig = go.Figure()
    many = len(steps) > 30
    fig.add_scatter(x=list(steps), y=list(values), mode="lines" if many else "lines+markers",
                    name="raw", line=dict(color="#4C78A8", width=1), opacity=0.35 if many and smooth else 1)
    if many and smooth:
        from engine.compare import ema  # one EMA for the live view and the Compare page
        fig.add_scatter(x=list(steps), y=ema(values, smooth), mode="lines", name=f"smoothed (EMA {smooth:g})",
                        line=dict(color="#1f4e79", width=2))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="loss")
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    return _layout(fig, title="Training loss", height=300)


def lr_curve(steps: Sequence[int], lrs: Sequence[float | None]) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(lrs), mode="lines", name="learning rate", line=dict(color="#9D755D"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="learning rate", exponentformat="e")
    return _layout(fig, title="Learning rate (head; the backbone's is scaled by its multiplier)", height=300)


def epoch_curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
                 y_title: str, percent: bool = False, colors: dict | None = None) -> go.Figure:
    """series: label -> (epochs, values). NaN values are dropped."""
    fig = go.Figure()
    for label, (x, y) in series.items():
        pts = [(a, b) for a, b in zip(x, y) if b is not None and not math.isnan(b)]
        if not pts:
            continue
        fig.add_scatter(x=[p[0] for p in pts], y=[p[1] * (100 if percent else 1) for p in pts],
                        mode="lines+markers", name=label,
                        line=dict(color=(colors or {}).get(label)))
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title=y_title, range=[0, 101] if percent else None)
    return _layout(fig, title=title, height=300)


def per_class_accuracy(names: Sequence[str], acc: Sequence[float | None], groups: Sequence[str],
                       train_counts: Sequence[int], *, split: str = "test") -> go.Figure:
    """Per-class accuracy bars in training-count order (head left, tail right). Every class is on
    the axis, and each bar carries its value as text, so a class at 0% (no bar) still shows '0%'."""
    order = class_order(names, train_counts)
    fig = go.Figure()
    for g in ("many", "medium", "few"):
        idx = [i for i in order if groups[i] == g]
        if idx:
            fig.add_bar(x=[str(names[i]) for i in idx],
                        y=[(acc[i] or 0) * 100 for i in idx], name=GROUP_LABELS[g],
                        marker_color=GROUP_COLORS[g],
                        text=["n/a" if acc[i] is None else f"{acc[i] * 100:.0f}%" for i in idx],
                        textposition="outside", cliponaxis=False,
                        textfont=dict(size=10 if len(names) <= 30 else 8, color=GROUP_COLORS[g]),
                        customdata=[train_counts[i] for i in idx],
                        hovertemplate="%{x}: %{y:.1f}% (%{customdata} training images)<extra></extra>")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(names[i]) for i in order],
                     tickmode="linear", dtick=1, title="class (sorted by training images)")
    fig.update_yaxes(title=f"{split} accuracy (%)", range=[0, 112], tickvals=[0, 20, 40, 60, 80, 100])
    return _layout(fig, title=f"Per-class {split} accuracy", height=340, uniformtext=dict(minsize=7, mode="show"))


def topk_bars(labels: Sequence[str], probs: Sequence[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[p * 100 for p in probs][::-1], y=list(map(str, labels))[::-1],
                           orientation="h", marker_color="#4C78A8",
                           text=[f"{p * 100:.1f}%" for p in probs][::-1], textposition="auto",
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_xaxes(title="probability (%)", range=[0, 100])
    fig.update_yaxes(type="category")
    return _layout(fig, height=60 + 36 * len(labels))


def group_comparison(run_names: Sequence[str], values: dict[str, Sequence[float | None]]) -> go.Figure:
    """Grouped bars: for each metric (overall, balanced, head, medium, tail) one bar per run."""
    fig = go.Figure()
    palette = RUN_PALETTE
    metrics = list(values)
    for j, name in enumerate(run_names):
        ys = [values[m][j] for m in metrics]
        fig.add_bar(x=metrics, y=[None if v is None or math.isnan(v) else v * 100 for v in ys], name=str(name),
                    marker_color=palette[j % len(palette)],
                    text=["—" if v is None or math.isnan(v) else f"{v * 100:.1f}" for v in ys],
                    textposition="outside", hovertemplate="%{x}: %{y:.1f}%<extra>" + str(name) + "</extra>")
    fig.update_yaxes(title="test accuracy (%)", range=[0, 105])
    fig = _layout(fig, title="Test accuracy by class group", barmode="group", height=420)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0))  # long run names
    return fig




def _log_axis(values: Sequence[float], title: str) -> dict:
    """A log axis labelled at 1-2-5 steps (plotly's own minor labels read as '2 5 1000 2 5')."""
    lo, hi = min(values), max(values)
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo / 1.6 <= t <= hi * 1.6]
    return dict(title=title, type="log", tickvals=ticks, ticktext=[f"{t:,.10g}" for t in ticks])


def _count_bars(fig: go.Figure, names: Sequence[str], counts: Sequence[int], groups: Sequence[str]) -> list[str]:
    """Training-count bars sorted high to low, coloured head / medium / tail; returns the x order."""
    order = class_order(names, counts)
    for g in ("many", "medium", "few"):
        idx = [i for i in order if groups[i] == g]
        if idx:
            fig.add_bar(x=[str(names[i]) for i in idx], y=[int(counts[i]) for i in idx],
                        name=GROUP_LABELS[g], marker_color=GROUP_COLORS[g], opacity=0.75,
                        hovertemplate="%{x}: %{y} training images<extra>" + GROUP_LABELS[g] + "</extra>")
    x = [str(names[i]) for i in order]
    fig.update_xaxes(categoryorder="array", categoryarray=x, title="class (sorted by training images)")
    return x


def weights_vs_counts(names: Sequence[str], counts: Sequence[int], groups: Sequence[str],
                      weights: Sequence[float], *, method: str) -> go.Figure:
    """Class counts (bars, left log axis) with each class's loss weight (line, right log axis)."""
    fig = go.Figure()
    x = _count_bars(fig, names, counts, groups)
    order = class_order(names, counts)
    share = np.asarray(counts, float) * np.asarray(weights, float)
    share = (share / share.sum() * 100).tolist()
    fig.add_scatter(x=x, y=[float(weights[i]) for i in order], yaxis="y2", mode="lines+markers",
                    name="loss weight", line=dict(color="#222222", width=2), marker=dict(size=7),
                    customdata=[share[i] for i in order],
                    hovertemplate="%{x}: weight %{y:.3g} · %{customdata:.1f}% of the loss<extra>"
                                  + method + "</extra>")
    fig.add_hline(y=1, yref="y2", line_dash="dot", line_color="#888")
    fig.update_layout(yaxis=_log_axis(counts, "training images (log)"),
                      yaxis2=dict(_log_axis([*weights, 1.0], "loss weight (log)"),
                                  overlaying="y", side="right", showgrid=False))
    return _layout(fig, height=340, bargap=0.15, barmode="overlay")


def draws_vs_counts(names: Sequence[str], counts: Sequence[int], groups: Sequence[str],
                    draws: Sequence[float], *, sampler: str) -> go.Figure:
    """Class counts (bars) with the expected images drawn per class in one epoch (line), same log axis."""
    fig = go.Figure()
    x = _count_bars(fig, names, counts, groups)
    order = class_order(names, counts)
    fig.add_scatter(x=x, y=[float(draws[i]) for i in order], mode="lines+markers",
                    name="drawn per epoch", line=dict(color="#222222", width=2), marker=dict(size=7),
                    customdata=[float(draws[i]) / int(counts[i]) for i in order],
                    hovertemplate="%{x}: %{y:,.0f} draws per epoch · each image %{customdata:.2g}×"
                                  "<extra>" + sampler + "</extra>")
    fig.update_layout(yaxis=_log_axis([*counts, *draws], "images (log)"))
    return _layout(fig, height=340, bargap=0.15, barmode="overlay")


# --- Data studio ---------------------------------------------------------------------------------

def image_sizes(widths: Sequence[int], heights: Sequence[int], *, max_points: int = 3000) -> go.Figure:
    """Width x height: one dot per distinct size (bigger = more images), or a 2D histogram when
    there are too many distinct sizes to draw."""
    sizes = {}
    for w, h in zip(widths, heights):
        sizes[(int(w), int(h))] = sizes.get((int(w), int(h)), 0) + 1
    fig = go.Figure()
    if len(sizes) <= max_points:
        pts = sorted(sizes.items(), key=lambda kv: -kv[1])
        n = [c for _, c in pts]
        top = max(n, default=1)
        fig.add_scatter(x=[w for (w, _), _ in pts], y=[h for (_, h), _ in pts], mode="markers",
                        marker=dict(size=[8 + 20 * math.sqrt((c - 1) / (top - 1)) if top > 1 else 8
                                          for c in n], color="#4C78A8", opacity=0.6, line=dict(width=0)),
                        customdata=n, hovertemplate="%{x} × %{y} px: %{customdata} images<extra></extra>",
                        name="images")
    else:
        fig.add_histogram2d(x=[int(w) for w in widths], y=[int(h) for h in heights], nbinsx=50, nbinsy=50,
                            colorscale="Blues", hovertemplate="%{x} × %{y} px: %{z} images<extra></extra>")
    fig.update_xaxes(title="width (px)", rangemode="tozero")
    fig.update_yaxes(title="height (px)", rangemode="tozero")
    return _layout(fig, title="Image sizes", height=320, showlegend=False)


def aspect_histogram(aspects: Sequence[float], *, max_aspect: float | None = None) -> go.Figure:
    """Long side / short side of every image; the dotted line is the extreme-aspect threshold."""
    fig = go.Figure(go.Histogram(x=[float(a) for a in aspects], marker_color="#72B7B2", nbinsx=40,
                                 hovertemplate="aspect %{x}: %{y} images<extra></extra>"))
    if max_aspect:
        fig.add_vline(x=max_aspect, line_dash="dot", line_color="#E45756",
                      annotation_text=f"extreme: > {max_aspect:g}", annotation_position="top left")
    fig.update_xaxes(title="aspect ratio (long side / short side)")
    fig.update_yaxes(title="images")
    return _layout(fig, title="Aspect ratios", height=320, bargap=0.05)


def breakdown(counts: dict[str, int], *, title: str) -> go.Figure:
    """Horizontal bars, largest on top (file formats, colour modes)."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[str(k) for k, _ in items], orientation="h",
                           marker_color="#4C78A8", text=[f"{v:,}" for _, v in items], textposition="auto",
                           hovertemplate="%{y}: %{x} images<extra></extra>"))
    fig.update_xaxes(title="images")
    fig.update_yaxes(type="category")
    return _layout(fig, title=title, height=120 + 28 * len(items), showlegend=False)


def version_comparison(labels: Sequence[str], a: Sequence[int], b: Sequence[int], *,
                       name_a: str, name_b: str) -> go.Figure:
    """Images per class in two dataset versions, side by side."""
    fig = go.Figure()
    fig.add_bar(x=list(map(str, labels)), y=[int(v) for v in a], name=name_a, marker_color="#9D9D9D",
                hovertemplate="%{x}: %{y} images<extra>" + name_a + "</extra>")
    fig.add_bar(x=list(map(str, labels)), y=[int(v) for v in b], name=name_b, marker_color="#4C78A8",
                hovertemplate="%{x}: %{y} images<extra>" + name_b + "</extra>")
    fig.update_xaxes(title="class")
    fig.update_yaxes(title="images")
    return _layout(fig, barmode="group", height=340, bargap=0.2)


# --- Compress page (compression lab) ---------------------------------------------------------------

def pareto_front(cost: Sequence[float | None], gain: Sequence[float | None]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal gain,
    one of them strictly), ordered by cost. Points with a missing value are left out."""
    pts = [(i, float(c), float(g)) for i, (c, g) in enumerate(zip(cost, gain))
           if c is not None and g is not None and not math.isnan(c) and not math.isnan(g)]
    front = [i for i, c, g in pts
             if not any((c2 <= c and g2 >= g) and (c2 < c or g2 > g) for _, c2, g2 in pts)]
    return sorted(front, key=lambda i: (float(cost[i]), -float(gain[i])))


def pareto_scatter(labels: Sequence[str], latency_ms: Sequence[float | None], bal_acc: Sequence[float | None],
                   *, kinds: Sequence[str], flagged: Sequence[bool] | None = None) -> go.Figure:
    """Latency at batch 1 (x, log scale: lower is better) against test balanced accuracy (y, higher
    is better), one labelled point per model; the Pareto front (the models nothing beats on
    both) drawn as a step line. ``kinds``: "original" for the parent, else the variant kind;
    flagged points get a red ring."""
    flagged = list(flagged or [False] * len(labels))
    ok = [i for i in range(len(labels)) if latency_ms[i] is not None and bal_acc[i] is not None]
    fig = go.Figure()
    front = pareto_front(latency_ms, bal_acc)
    if len(front) > 1:
        fig.add_scatter(x=[latency_ms[i] for i in front], y=[bal_acc[i] * 100 for i in front],
                        mode="lines", line=dict(color="#54A24B", width=2, dash="dot", shape="hv"),
                        name="Pareto front", hoverinfo="skip")
    symbols = {"original": "star", "prune": "diamond", "distil": "triangle-up", "quantize": "circle",
               "export": "square"}
    colours = {"original": "#222222", "prune": "#F58518", "distil": "#B279A2", "quantize": "#4C78A8",
               "export": "#72B7B2"}
    names = {"original": "original", "prune": "pruned", "distil": "distilled", "quantize": "quantized",
             "export": "ONNX export"}
    # neighbours along the latency axis put their labels on alternate sides, so that they do not overlap
    by_x = sorted(ok, key=lambda i: float(latency_ms[i]))
    where = {i: ("top center" if j % 2 == 0 else "bottom center") for j, i in enumerate(by_x)}
    for kind in dict.fromkeys(kinds[i] for i in ok):
        idx = [i for i in ok if kinds[i] == kind]
        fig.add_scatter(
            x=[latency_ms[i] for i in idx], y=[bal_acc[i] * 100 for i in idx], mode="markers+text",
            name=names.get(kind, kind), text=[str(labels[i]) for i in idx], textposition=[where[i] for i in idx],
            textfont=dict(size=11), cliponaxis=False,
            marker=dict(size=[16 if i in front else 12 for i in idx], symbol=symbols.get(kind, "circle"),
                        color=colours.get(kind, "#9D755D"),
                        line=dict(color=["#E45756" if flagged[i] else "white" for i in idx],
                                  width=[3 if flagged[i] else 1 for i in idx])),
            customdata=[("on the Pareto front" if i in front else "beaten by another model")
                        + (" · flagged" if flagged[i] else "") for i in idx],
            hovertemplate="%{text}<br>%{x:.3g} ms · balanced %{y:.1f}%<br>%{customdata}<extra></extra>")
    if ok:
        xs = [float(latency_ms[i]) for i in ok]
        fig.update_xaxes(**_log_axis(xs, "latency at batch 1, p50 (ms, log scale) · lower is better"))
        ys = [bal_acc[i] * 100 for i in ok]
        lo, hi = min(ys), max(ys)
        pad = max(1.0, (hi - lo) * 0.25)
        fig.update_yaxes(title="test balanced accuracy (%) · higher is better",
                         range=[max(0.0, lo - pad), min(100.0, hi + pad) + pad * 0.6])
    return _layout(fig, title="Speed against balanced accuracy", height=420)


def recall_change(names: Sequence[str], changes: Sequence[float | None], groups: Sequence[str],
                  train_counts: Sequence[int], *, guard_points: float | None = None) -> go.Figure:
    """Per-class change of test recall (points, variant minus parent) in training-count order
    (head left, tail right), coloured head / medium / tail; the guard as a dotted line."""
    order = class_order(names, train_counts)
    fig = go.Figure()
    for g in ("many", "medium", "few"):
        idx = [i for i in order if groups[i] == g]
        if idx:
            vals = [None if changes[i] is None else changes[i] * 100 for i in idx]
            fig.add_bar(x=[str(names[i]) for i in idx], y=[0 if v is None else v for v in vals],
                        name=GROUP_LABELS[g], marker_color=GROUP_COLORS[g],
                        text=["n/a" if v is None else ("0" if round(v, 1) == 0 else f"{v:+.1f}") for v in vals], textposition="outside",
                        cliponaxis=False, textfont=dict(size=10 if len(names) <= 30 else 8),
                        customdata=[int(train_counts[i]) for i in idx],
                        hovertemplate="%{x}: %{y:+.1f} points (%{customdata} training images)<extra></extra>")
    fig.add_hline(y=0, line_color="#888", line_width=1)
    vals = [abs(c) * 100 for c in changes if c is not None]
    top = max([*vals, (guard_points or 0), 1.0]) * 1.3
    if guard_points:
        fig.add_hline(y=-guard_points, line_dash="dot", line_color="#E45756",
                      annotation_text=f"guard: −{guard_points:g} points", annotation_position="bottom right",
                      annotation_font=dict(size=11, color="#E45756"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(names[i]) for i in order],
                     tickmode="linear", dtick=1, title="class (sorted by training images, largest first)")
    fig.update_yaxes(title="test recall change (points)", range=[-top, top], zeroline=False)
    return _layout(fig, title="Per-class recall change, variant minus original", height=360)
