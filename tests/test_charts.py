"""The plotly figure builders: the data a user reads off the charts."""
import math

from dashboard import charts


def test_histogram_sorted_high_to_low_coloured_by_group():
    fig = charts.class_histogram(["a", "b", "c", "d"], [5, 500, 50, 1], ["few", "many", "medium", "few"],
                                 log_y=False, many_threshold=100, few_threshold=20)
    bars = {t.name: (list(t.x), list(t.y)) for t in fig.data if t.type == "bar"}
    assert bars[charts.GROUP_LABELS["many"]] == (["b"], [500])
    assert bars[charts.GROUP_LABELS["few"]] == (["a", "d"], [5, 1])
    assert list(fig.layout.xaxis.categoryarray) == ["b", "c", "a", "d"]
    cum = next(t for t in fig.data if t.type == "scatter")
    assert [round(v, 3) for v in cum.y] == [round(100 * x / 556, 3) for x in (500, 550, 555, 556)]


def test_threshold_labels_sit_at_the_thresholds_on_a_log_axis():
    # plotly.js: shapes in data units, annotations in log10 units on a log axis
    fig = charts.class_histogram(["a", "b"], [1000, 10], ["many", "few"], log_y=True,
                                 many_threshold=100, few_threshold=20)
    assert fig.layout.yaxis.type == "log"
    assert sorted(s.y0 for s in fig.layout.shapes) == [20, 100]
    assert sorted(round(a.y, 6) for a in fig.layout.annotations) == [round(math.log10(20), 6), 2.0]
    lin = charts.class_histogram(["a", "b"], [1000, 10], ["many", "few"], log_y=False,
                                 many_threshold=100, few_threshold=20)
    assert sorted(a.y for a in lin.layout.annotations) == [20, 100]


def test_group_comparison_percent_and_missing_groups():
    fig = charts.group_comparison(["r1", "r2"], {"overall": [0.5, 0.75], "tail": [float("nan"), 0.25]})
    r1, r2 = fig.data
    assert list(r1.y) == [50.0, None] and list(r1.text) == ["50.0", "—"]
    assert list(r2.y) == [75.0, 25.0] and r1.marker.color != r2.marker.color


def test_per_class_accuracy_in_training_count_order():
    fig = charts.per_class_accuracy(["a", "b", "c"], [0.9, 0.5, None], ["many", "medium", "few"], [10, 500, 1])
    assert list(fig.layout.xaxis.categoryarray) == ["b", "a", "c"]
    few = next(t for t in fig.data if t.name == charts.GROUP_LABELS["few"])
    assert list(few.y) == [0]  # no test images of c: drawn at 0, hover shows its count


def test_topk_bars_most_probable_on_top():
    fig = charts.topk_bars(["cat", "dog"], [0.9, 0.1])
    assert list(fig.data[0].y) == ["dog", "cat"] and list(fig.data[0].x) == [10.0, 90.0]
