"""Predict: drop images, pick a finished run, a post-hoc child or a compressed variant (and up to
three more to set side by side), see the top-5 classes and each model's latency."""
import streamlit as st

from dashboard import charts, predict_ui, state
from dashboard.ui import guard
from engine.data.io import ImageReadError, open_image

st.title("🔮 Predict")
store = state.store()
finished = predict_ui.models(store.list_runs())
guard(bool(finished), "No finished run yet: train one on **Train** first.")

by_id = {r.id: r for r in finished}
if st.session_state.get("predict.run") not in by_id:  # default: the best test balanced accuracy
    st.session_state["predict.run"] = predict_ui.default_model(finished)
run_id = st.selectbox("Model (a finished run, a post-hoc correction or a compressed variant)", list(by_id),
                      format_func=lambda i: predict_ui.label(by_id[i]), key="predict.run")
others = st.multiselect(f"Side by side with (up to {predict_ui.MAX_MODELS - 1} more)",
                        [i for i in by_id if i != run_id], format_func=lambda i: predict_ui.label(by_id[i]),
                        max_selections=predict_ui.MAX_MODELS - 1, key="predict.compare",
                        help="Variants made on **Compress** (ONNX fp32, int8, pruned, distilled) "
                             "and post-hoc corrections (their parent's model, corrected) are listed too.")
chosen = [by_id[run_id]] + [by_id[i] for i in others if i in by_id]
try:
    preds = {r.id: predict_ui.predictor(r) for r in chosen}
except (FileNotFoundError, ValueError) as e:
    guard(False, str(e))
st.caption(predict_ui.preprocessing_caption(preds[run_id]))

# no type filter: a file that is not an image gets a card saying why, not a small chip
files = st.file_uploader("Drop images here (PNG, JPEG, WebP, BMP)", accept_multiple_files=True,
                         key="predict.files")
guard(bool(files), "Drop one or more images to classify them.")
files, repeats = predict_ui.unique_files(files)
if repeats:
    st.caption(f"Shown once: {', '.join(repeats)} (the same content was dropped already).")
st.caption(predict_ui.LATENCY_NOTE)

for f in files:
    data = f.getvalue()
    with st.container(border=True):
        try:
            img = open_image(data)
            if len(chosen) == 1:
                pred, ms = predict_ui.timed_predict(preds[run_id], data, f.name)
        except ImageReadError as e:
            st.error(predict_ui.read_error(f.name, e), icon="🚫")
            continue
        if len(chosen) > 1:
            predict_ui.side_by_side(f, data, img, chosen, preds)
            continue
        c1, c2 = st.columns([1, 3])
        c1.image(img, caption=f.name, width="stretch")
        c2.markdown(f"**{pred.labels[0]}** · {pred.probs[0] * 100:.1f}%")
        c2.caption(f"⏱ {ms:.2f} ms per image")
        c2.plotly_chart(charts.topk_bars(pred.labels, pred.probs), width="stretch", key=f"predict.chart.{f.file_id}")
