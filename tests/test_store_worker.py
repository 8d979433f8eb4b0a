"""What the worker records at the end of training, computed by hand on four test images."""
import math

import numpy as np

from engine.evaluate import EvalResult
from engine.worker import final_test_metrics


def _result(probs, targets):
    return EvalResult(loss=0.0, logits=np.log(np.asarray(probs, dtype=np.float64)),
                      targets=np.asarray(targets))


def test_macro_f1_over_present_classes_and_ece_by_hand():
    ev = _result([[0.9, 0.05, 0.05],   # class 0, predicted 0 (right, confidence 0.9)
                  [0.6, 0.3, 0.1],     # class 1, predicted 0 (wrong, 0.6)
                  [0.2, 0.7, 0.1],     # class 1, predicted 1 (right, 0.7)
                  [0.1, 0.2, 0.7]],    # class 0, predicted 2 (wrong, 0.7)
                 [0, 1, 1, 0])
    got = final_test_metrics(ev)
    # class 0: P 1/2, R 1/2, F1 1/2; class 1: P 1, R 1/2, F1 2/3; class 2 is absent from the test
    # split, so it does not count (with it the mean would be 0.389)
    assert math.isclose(got["test/macro_f1"], (0.5 + 2 / 3) / 2)
    # 15 bins: {0.9}: |1 - 0.9|, {0.6}: |0 - 0.6|, {0.7, 0.7}: |0.5 - 0.7|, weighted 1/4, 1/4, 2/4
    assert math.isclose(got["test/ece"], 0.25 * 0.1 + 0.25 * 0.6 + 0.5 * 0.2)


def test_empty_test_split_gives_nan_which_the_store_keeps_as_none(db_store):
    got = final_test_metrics(_result(np.zeros((0, 3)) + 1 / 3, []))
    assert all(math.isnan(v) for v in got.values())
    run = db_store.create_run({}, name="r")
    db_store.log_metrics(run.id, got, step=1)
    assert db_store.get_run(run.id).latest == {"test/macro_f1": None, "test/ece": None}
