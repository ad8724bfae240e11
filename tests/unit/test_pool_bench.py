"""The pool benchmark's arms and statistics on made-up predictions."""

from __future__ import annotations

import numpy as np

from cpfd.benchmarks.pool import arms, contrasts, summarise_pool, to_markdown


def _runs(multiples: tuple[int, ...]) -> list[dict]:
    rng = np.random.default_rng(0)
    runs = []
    for scenario in ("a", "b"):
        for seed in range(3):
            labels = rng.integers(0, 2, 200)
            noisy = np.where(rng.random(200) < 0.4, 1 - labels, labels)
            preds = {m: noisy.tolist() for m in ["baseline", "teacher", *arms(multiples)]}
            preds["cpfd@4x"] = labels.tolist()  # one arm is right everywhere
            runs.append(
                {
                    "scenario": scenario,
                    "seed": seed,
                    "label_names": ["x", "y"],
                    "labels": labels.tolist(),
                    "preds": preds,
                }
            )
    return runs


def test_the_arms_and_contrasts_follow_the_pool_sizes():
    assert arms((0, 1)) == ["pfd@0x", "cpfd@0x", "pfd@1x", "cpfd@1x", "self@1x"]
    pairs = contrasts((0, 4, 16))
    assert ("pfd@16x", "pfd@0x") in pairs and ("cpfd@4x", "pfd@4x") in pairs and ("pfd@16x", "self@16x") in pairs


def test_a_better_arm_is_a_significant_paired_gain_and_a_copy_is_none():
    summary = summarise_pool(_runs((0, 4)), (0, 4), reps=200)
    win = summary["contrasts"]["cpfd@4x - cpfd@0x"]
    assert win["pooled"]["significant"] and win["pooled"]["lo"] > 0.2 and win["a"]["mean"] > 0.3
    tie = summary["contrasts"]["pfd@4x - pfd@0x"]["pooled"]
    assert tie["mean"] == 0 and tie["lo"] == tie["hi"] == 0 and not tie["significant"]
    md = to_markdown(summary)
    assert "| cpfd@4x - cpfd@0x |" in md and "| self@4x |" in md
