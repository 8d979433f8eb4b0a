"""Compress: make a finished run smaller or faster (pruning, distillation, int8, ONNX), compare the
variants with it in one table, and see what each one forgot (per class, head / medium / tail)."""
import streamlit as st

from dashboard import compress_ui, state
from dashboard.ui import guard

st.title("🗜️ Compress")
st.caption("Prune, distil, quantize or export a finished run; every variant is a run of its own, compared "
           "with the original on size, speed and accuracy per class group, and on what it forgot: pruning "
           "and quantization tend to hurt the rare (tail) classes first.")
store = state.store()
runs = store.list_runs()
guard(bool(compress_ui.candidates(runs)),
      "No finished training run yet: train one on **Train** first, then come back here to make it smaller "
      "and faster.")

run = compress_ui.pick_run(runs)
compress_ui.actions(store, run)
compress_ui.live(store, run.id)
rows = compress_ui.compare_rows(store, run.id)
if rows is None:
    st.stop()
guard_points, worst = compress_ui.table(store, run, rows)
compress_ui.forgot(store, run, rows, guard_points, worst)
compress_ui.ship(store, rows)
