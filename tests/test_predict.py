"""Prediction on real files of every supported kind, with the run's own eval transform."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data.builtin import load_builtin
from engine.data.io import ImageReadError, open_image
from engine.infer import Predictor


@pytest.fixture(scope="module")
def predictor(trained_run):
    home, run_id = trained_run
    return Predictor(home / "runs" / run_id / "best.pt")


@pytest.fixture(scope="module")
def digit():
    """A real MNIST test digit (label, 28x28 uint8)."""
    data = load_builtin("mnist")
    return int(data.test_labels[0]), data.test_images[0]


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "L"),
                                       ("JPEG", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB"), ("BMP", "L")])
def test_formats_and_modes_give_the_same_input(predictor, digit, fmt, mode):
    label, arr = digit
    ref = predictor.preprocess(_encode(Image.fromarray(arr), "PNG"))
    img = Image.fromarray(arr).convert(mode)
    kw = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        kw["lossless"] = True
    x = predictor.preprocess(_encode(img, fmt, **kw))
    assert x.shape == (1, 28, 28)
    tol = 0.15 if fmt == "JPEG" else 1e-5  # JPEG is lossy; everything else is exact
    assert (x - ref).abs().mean() < tol


def test_prediction_is_the_model_on_the_eval_transform(predictor, digit):
    label, arr = digit
    pred = predictor.predict(_encode(Image.fromarray(arr), "PNG"), name="d.png", k=5)
    assert len(pred.labels) == 5 and pred.probs == sorted(pred.probs, reverse=True)
    assert abs(sum(predictor.probabilities(predictor.preprocess(_encode(Image.fromarray(arr), "PNG"))[None])[0]) - 1) < 1e-5
    assert pred.labels[0] == str(label)  # the fixture model is ~80 % accurate; this digit is a clear 7


def test_16bit_png_scaled_to_8bit(predictor, digit):
    _, arr = digit
    img16 = Image.fromarray(arr.astype(np.uint16) * 257)  # mode I;16
    assert img16.mode.startswith("I")
    x16 = predictor.preprocess(_encode(img16, "PNG"))
    ref = predictor.preprocess(_encode(Image.fromarray(arr), "PNG"))
    assert torch.allclose(x16, ref, atol=1e-5)


def test_cmyk_jpeg(predictor, digit):
    _, arr = digit
    cmyk = Image.fromarray(arr).convert("RGB").convert("CMYK")
    x = predictor.preprocess(_encode(cmyk, "JPEG", quality=100))
    ref = predictor.preprocess(_encode(Image.fromarray(arr), "PNG"))
    assert (x - ref).abs().mean() < 0.15


def test_exif_rotated_photo_is_predicted_upright(predictor, digit):
    _, arr = digit
    # Store the pixels rotated 90° clockwise, with EXIF orientation 6 ("rotate 90 CW to view")
    # undone by exif_transpose: the decoded image must equal the upright original.
    stored = Image.fromarray(np.rot90(arr, k=1))  # 90° counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(stored.convert("RGB"), "JPEG", quality=100, exif=exif.tobytes())
    x = predictor.preprocess(data)
    ref = predictor.preprocess(_encode(Image.fromarray(arr), "PNG"))
    assert (x - ref).abs().mean() < 0.15
    no_exif = predictor.preprocess(_encode(stored.convert("RGB"), "JPEG", quality=100))
    assert (no_exif - ref).abs().mean() > 0.3  # without the tag it would be sideways


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image"),
])
def test_bad_files_get_a_clear_error(data, words):
    with pytest.raises(ImageReadError, match=words):
        open_image(data)


def test_truncated_png(digit):
    _, arr = digit
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        open_image(data[: len(data) // 2])


def test_cli_predict_json(trained_run, digit, tmp_path):
    home, run_id = trained_run
    _, arr = digit
    good = tmp_path / "seven.png"
    Image.fromarray(arr).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    env = {"TAILLAB_HOME": str(home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "engine.cli", "predict", "--run", run_id, str(good),
                          str(bad), "--json"], capture_output=True, text=True, env=env, cwd=str(tmp_path.parent),
                         timeout=120)
    assert out.returncode == 1, out.stderr  # one file failed
    rows = json.loads(out.stdout)
    assert rows[0]["image"] == str(good) and len(rows[0]["top"]) == 5
    assert abs(sum(t["prob"] for t in rows[0]["top"]) - 1) < 0.05
    assert "not an image" in rows[1]["error"]


# --- post-hoc children: the parent's model plus the correction the child records --------------

def _test_batch(p, n=300):
    data = load_builtin("mnist")
    return torch.stack([p.preprocess(_encode(Image.fromarray(a), "PNG")) for a in data.test_images[:n]])


def test_posthoc_child_predicts_with_parent_model_and_its_correction(ws):
    from engine import imbalance
    from engine.infer import PosthocPredictor, predictor_for_run
    from engine.posthoc import apply_posthoc

    store, run_id = ws
    res = apply_posthoc(store, run_id, "logit_adjust", taus=(2.0,))  # a tau that changes answers
    child = store.get_run(res.run_id)
    assert child.kind == "posthoc" and float(child.tags["tau"]) == 2.0
    p = predictor_for_run(child.id)
    parent = predictor_for_run(run_id)
    assert isinstance(p, PosthocPredictor) and type(parent) is Predictor
    batch = _test_batch(parent)
    with torch.no_grad():
        raw = parent.model(batch).double().numpy()
    counts = np.asarray(json.loads(child.tags["train_counts"]), np.float64)
    got = p.logits(batch)
    # exactly logits - tau * log(prior), and the same as the correction applied by hand
    np.testing.assert_allclose(got - raw, np.broadcast_to(-2.0 * np.log(counts / counts.sum()), raw.shape),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), imbalance.posthoc_logit_adjust(raw, counts, 2.0).argmax(1))
    assert (got.argmax(1) != raw.argmax(1)).any()  # the correction changes some answers
    # predict() on an encoded image goes through the same correction
    img = _encode(Image.fromarray(load_builtin("mnist").test_images[0]), "PNG")
    assert p.predict(img, k=1).labels[0] == p.class_names[int(got[0].argmax())]


def test_posthoc_tau_norm_child_predicts(ws):
    from engine import imbalance
    from engine.infer import predictor_for_run
    from engine.models import classifier
    from engine.posthoc import apply_posthoc

    store, run_id = ws
    res = apply_posthoc(store, run_id, "tau_norm", taus=(1.0,))
    p = predictor_for_run(res.run_id)
    batch = _test_batch(p, 50)
    head = classifier(p.model)
    feats = []
    h = head.register_forward_hook(lambda m, i, o: feats.append(i[0].double()))
    with torch.no_grad():
        p.model(batch)
    h.remove()
    w = imbalance.tau_normalize(head.weight.detach().double().numpy(), 1.0)
    expected = feats[0].numpy() @ w.T + head.bias.detach().double().numpy()
    np.testing.assert_allclose(p.logits(batch), expected, rtol=1e-5, atol=1e-5)


def test_posthoc_child_without_parent_checkpoint_says_so(ws):
    from engine import workspace
    from engine.infer import predictor_for_run
    from engine.posthoc import apply_posthoc

    store, run_id = ws
    res = apply_posthoc(store, run_id, "logit_adjust", taus=(1.0,))
    workspace.best_checkpoint(run_id).unlink()
    with pytest.raises(FileNotFoundError, match=run_id):
        predictor_for_run(res.run_id)
