"""Per-feature weights by logistic regression (numpy, Newton's method with a little L2), and
their quality on a held-out share of the rows.

The model gives P(bot) = sigmoid(c + sum(b_i x_i)). A feature file adds weights to a base
score and treats a score under the challenge threshold as a bot, so the weights are the
coefficients scaled by -SCALE and the base is the threshold minus SCALE times the intercept:
a score under the threshold then means P(bot) > 1/2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from failsmall.features.source import LabelCounts

SCALE = 6.0  # score points per unit of log-odds
DEFAULT_THRESHOLD = 30  # the example site challenges `bot.score < 30`
Floats = npt.NDArray[np.float64]


class NotEnoughRows(Exception):
    """Too few labelled rows of one class to learn from."""


@dataclass(frozen=True, slots=True)
class Split:
    """The rows to fit on and the held-out rows, as counts per combination."""

    fit: LabelCounts
    held_out: LabelCounts


def split(counts: LabelCounts, held_out_share: float) -> Split:
    """Hold out `held_out_share` of each combination's bot and human rows: the same counts
    give the same split whatever order the store returned the rows in."""
    held_bots = np.floor(counts.bots * held_out_share).astype(np.int64)
    held_humans = np.floor(counts.humans * held_out_share).astype(np.int64)
    return Split(
        LabelCounts(
            counts.keys, counts.patterns, counts.bots - held_bots, counts.humans - held_humans
        ),
        LabelCounts(counts.keys, counts.patterns, held_bots, held_humans),
    )


@dataclass(frozen=True, slots=True)
class Weights:
    base_score: float
    weights: dict[str, float]


def fit_weights(
    counts: LabelCounts, threshold: float = DEFAULT_THRESHOLD, l2: float = 1.0
) -> Weights:
    """Fit on counts; NotEnoughRows unless both bots and humans are present."""
    if counts.bots.sum() == 0 or counts.humans.sum() == 0:
        raise NotEnoughRows(
            f"{counts.bots.sum()} bot and {counts.humans.sum()} human rows: both are needed; "
            "ingest labelled traffic first (`failsmall features ingest`)"
        )
    x = np.hstack([np.ones((len(counts.patterns), 1)), counts.patterns.astype(np.float64)])
    n = (counts.bots + counts.humans).astype(np.float64)
    y = counts.bots.astype(np.float64)
    beta = _newton(x, n, y, np.zeros(x.shape[1]), l2, free_intercept=True)
    # A feature file's base score lies in 1..99. When the best intercept puts it outside, the
    # intercept is held at the bound and the feature weights are fitted around it, rather than
    # clamping the base afterwards (which would shift every score).
    lowest, highest = (threshold - 99) / SCALE, (threshold - 1) / SCALE
    if not lowest <= beta[0] <= highest:
        beta[0] = float(np.clip(beta[0], lowest, highest))
        beta = _newton(x, n, y, beta, l2, free_intercept=False)
    base = float(np.clip(threshold - SCALE * beta[0], 1, 99))
    weights = {
        key: float(np.clip(round(-SCALE * b, 2), -100, 100)) + 0.0
        for key, b in zip(counts.keys, beta[1:], strict=True)
    }
    return Weights(round(base, 2), weights)


def _newton(
    x: Floats, n: Floats, y: Floats, beta: Floats, l2: float, *, free_intercept: bool
) -> Floats:
    """Maximise the penalised log-likelihood of `y` bots out of `n` rows per pattern; with
    `free_intercept` False the intercept (column 0) keeps its value."""
    beta = beta.copy()
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # the intercept is not shrunk
    free = slice(0 if free_intercept else 1, None)

    def objective(b: Floats) -> float:
        z = x @ b
        return float(y @ z - n @ np.logaddexp(0.0, z) - 0.5 * (penalty * b) @ b)

    current = objective(beta)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ beta)))  # the logistic function, without overflow
        gradient = (x.T @ (y - n * p) - penalty * beta)[free]
        hessian = ((x.T * (n * p * (1 - p))) @ x + np.diag(penalty + 1e-9))[free, free]
        step = np.linalg.solve(hessian, gradient)
        # Newton's step, halved until the objective does not get worse (it can overshoot
        # when some combinations are all bots or all humans).
        for _ in range(30):
            trial = beta.copy()
            trial[free] += step
            value = objective(trial)
            if value >= current - 1e-9:
                break
            step = step / 2
        beta, improvement, current = trial, value - current, value
        if float(np.max(np.abs(step))) < 1e-8 or abs(improvement) < 1e-10:
            break
    return beta


@dataclass(frozen=True, slots=True)
class Quality:
    """How a feature file does on held-out rows: `bot` means a score under the threshold."""

    rows: int
    bots: int
    humans: int
    true_positives: int
    false_positives: int
    threshold: float

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.bots if self.bots else 0.0

    @property
    def humans_challenged(self) -> float:
        """The share of human requests the file would challenge."""
        return self.false_positives / self.humans if self.humans else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "rows": self.rows,
            "bots": self.bots,
            "humans": self.humans,
            "threshold": self.threshold,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "humans_challenged": round(self.humans_challenged, 4),
        }


def scores(counts: LabelCounts, base_score: float, weights: dict[str, float]) -> Floats:
    """The score the engine gives each combination: base plus the weights of present features
    (a key the table lacks counts as absent), rounded and clamped to 1..99."""
    vector = np.array([weights.get(k, 0.0) for k in counts.keys])
    total = base_score + counts.patterns.astype(np.float64) @ vector
    clipped: Floats = np.clip(np.round(total), 1, 99)
    return clipped


def quality(
    counts: LabelCounts, base_score: float, weights: dict[str, float], threshold: float
) -> Quality:
    flagged = scores(counts, base_score, weights) < threshold
    return Quality(
        rows=counts.rows,
        bots=int(counts.bots.sum()),
        humans=int(counts.humans.sum()),
        true_positives=int(counts.bots[flagged].sum()),
        false_positives=int(counts.humans[flagged].sum()),
        threshold=threshold,
    )
