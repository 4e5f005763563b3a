"""The cost curve: 100 thresholds priced over a 100,000-item backtest, and the recommendation.

Measured: the backtest's tally of 100,000 scored items into per-threshold counts (automated,
wrong, wrong per label pair, as ``reviewapp.control.backtests`` keeps them), the curve it
stores, then ``threshold_costs`` and ``recommend`` on it, as the policy page does. Floor: one
``bincount`` and ``cumsum`` of the same confidences (the least any per-threshold count costs).
Target: <= 200 ms. The pricing alone (``threshold_costs`` and ``recommend`` over the stored
curve, plain Python over 100 thresholds) is shown on its own row. Both sizes price a
100,000-item backtest; CI runs fewer rounds."""

import time

import numpy as np

from benchmarks.harness import fmt, pct, table
from deployments.policy.costs import BacktestCurve, CostSettings, recommend, threshold_costs
from reviewapp.control.backtests import THRESHOLDS, _Tally

LABELS = [str(n) for n in range(10)]


def _items(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    confidence = rng.beta(5, 1.5, size=n)
    wrong = rng.random(n) > confidence  # the less confident, the more often wrong
    true = rng.integers(0, len(LABELS), size=n)
    predicted = np.where(wrong, (true + rng.integers(1, len(LABELS), size=n)) % len(LABELS), true)
    return confidence, wrong, true, predicted


def _tally(confidence, wrong, true, predicted) -> dict:
    tally = _Tally()
    size = len(THRESHOLDS) + 1
    reached = np.searchsorted(THRESHOLDS, confidence, side="right")
    tally.scored = len(confidence)
    tally.automated_at += np.bincount(reached, minlength=size)
    tally.wrong_at += np.bincount(reached, weights=wrong, minlength=size).astype(np.int64)
    pair_code = true[wrong] * len(LABELS) + predicted[wrong]
    for code in np.unique(pair_code):
        chosen = reached[wrong][pair_code == code]
        pair = (LABELS[code // len(LABELS)], LABELS[code % len(LABELS)])
        tally.wrong_pairs_at[pair] = np.bincount(chosen, minlength=size)
    return tally.curve()


def _price(curve: dict, items: int):  # as reviewapp.control.costs reads a stored curve
    backtest = BacktestCurve(
        thresholds=curve["thresholds"],
        items=items,
        automated=curve["automated"],
        errors=curve["errors"],
        wrong_pairs={(p["true"], p["predicted"]): p["errors"] for p in curve["wrong_pairs"]},
    )
    settings = CostSettings(
        regression=False,
        error_cost=20.0,
        pair_costs={("8", "1"): 400.0, ("3", "5"): 150.0},
        review_minutes=1.5,
        hourly_cost=35.0,
        arrivals_per_day=12_000.0,
        capacity_per_day=6_000.0,
        error_rate_ceiling=0.05,
    )
    return recommend(threshold_costs(backtest, settings), settings)


def main(small: bool) -> None:
    n = 100_000
    confidence, wrong, true, predicted = _items(n)
    runs = 10 if small else 30
    measured, pricing, floor = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        curve = _tally(confidence, wrong, true, predicted)
        priced = time.perf_counter()
        advice = _price(curve, n)
        done = time.perf_counter()
        measured.append((done - started) * 1000)
        pricing.append((done - priced) * 1000)
        started = time.perf_counter()
        reached = np.searchsorted(THRESHOLDS, confidence, side="right")
        np.cumsum(np.bincount(reached, minlength=len(THRESHOLDS) + 1)[::-1])
        floor.append((time.perf_counter() - started) * 1000)
    p50, floor_p50 = pct(measured, 50), pct(floor, 50)
    table(
        f"Cost curve: 100 thresholds over a {n:,}-item backtest, then the recommendation",
        ["what", "runs", "p50 ms", "max ms"],
        [
            ["tally + curve + costs + recommendation", runs, fmt(p50), fmt(max(measured))],
            ["of which costs + recommendation", runs, fmt(pct(pricing, 50)), fmt(max(pricing))],
            ["floor: bincount + cumsum of the confidences", runs, fmt(floor_p50), fmt(max(floor))],
        ],
    )
    print(
        f"recommended {advice.threshold}; p50 / floor = {p50 / max(floor_p50, 1e-9):.1f}; "
        f"target: <= 200 ms -> {'met' if max(measured) <= 200 else 'NOT met'}"
    )
