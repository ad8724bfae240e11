import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_cm
from sklearn.metrics import f1_score, precision_score, recall_score

from cpfd.evaluate import classification_metrics, expected_calibration_error, gap_closed


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    probs[np.arange(100), labels[:100]] += 1  # make half of them right
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    preds = probs.argmax(1)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert m["precision"] == pytest.approx(precision_score(labels, preds, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(labels, preds, average="macro"))
    assert m["confusion_matrix"] == sk_cm(labels, preds, labels=[0, 1, 2]).tolist()


def test_ece_by_hand():
    # two bins used: conf 0.9 (1 of 2 right) and conf 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_gap_closed():
    assert gap_closed(0.85, 0.8, 0.9) == pytest.approx(0.5)
    assert gap_closed(0.9, 0.8, 0.9) == pytest.approx(1.0)
    assert gap_closed(0.85, 0.9, 0.9) is None
