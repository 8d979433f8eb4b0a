"""Predict: drop images, pick a finished run, see the top-5 classes."""
import streamlit as st

from dashboard import charts, state
from dashboard.ui import guard, pct
from engine import workspace
from engine.data.io import ImageReadError, open_image
from engine.store import RunStatus

st.title("🔮 Predict")
store = state.store()
finished = [r for r in store.list_runs()  # post-hoc runs have no checkpoint of their own
            if r.status == RunStatus.FINISHED and r.kind != "posthoc"]
guard(bool(finished), "No finished run yet: train one on **Train** first.")

labels = {r.id: f"{r.name} · test bal. acc {pct(r.latest.get('test/bal_acc'))} · {r.id[:8]}" for r in finished}
run_id = st.selectbox("Model (a finished run)", list(labels), format_func=labels.get, key="predict.run")
ckpt = workspace.best_checkpoint(run_id)
guard(ckpt.is_file(), f"Run {run_id} has no checkpoint on disk (was its folder deleted?).")
predictor = state.predictor(run_id, ckpt.stat().st_mtime)
spec = predictor.spec
st.caption(f"Preprocessing, exactly as in this run's evaluation: resize to {spec.size}×{spec.size}, "
           f"{'greyscale' if spec.channels == 1 else 'RGB'}, normalise with mean "
           f"{', '.join(f'{m:.3f}' for m in spec.mean)} and std {', '.join(f'{s:.3f}' for s in spec.std)}. "
           "EXIF rotation is applied; transparency is composited on black.")

files = st.file_uploader("Drop images here (PNG, JPEG, WebP, BMP)", type=["png", "jpg", "jpeg", "webp", "bmp"],
                         accept_multiple_files=True, key="predict.files")
guard(bool(files), "Drop one or more images to classify them.")

for f in files:
    data = f.getvalue()
    with st.container(border=True):
        c1, c2 = st.columns([1, 3])
        try:
            img = open_image(data)
            pred = predictor.predict(data, name=f.name, k=5)
        except ImageReadError as e:
            c1.markdown(f"**{f.name}**")
            c2.error(f"Cannot read this file: {e}".replace("uploaded file: ", ""))
            continue
        c1.image(img, caption=f.name, width="stretch")
        c2.markdown(f"**{pred.labels[0]}** · {pred.probs[0] * 100:.1f}%")
        c2.plotly_chart(charts.topk_bars(pred.labels, pred.probs), width="stretch", key=f"predict.chart.{f.file_id}")
