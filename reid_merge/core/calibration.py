"""Appearance cut-offs learnt from the video itself, so that none depends on the embedder.

A similarity of 0.6 means "same person" for one network and nothing at all for another, and
even for one network it means different things in a crowd of look-alikes and in a street of
strangers. But every video labels some pairs for free: tracks that share a frame are two
different people. Their similarities show, for this video and this model, how high two
different people score; a join is made only where a similarity is so far above that, and
there are so many such pairs among the candidates, that the estimated share of wrong joins
(false discovery rate, with every candidate counted as a possible different pair) stays
below a target.

Pairs known to be one person are harder to come by: two stretches of one track look more
alike than two fragments of a person seen before and after an occlusion (on oracle fragments,
after whitening, a fragment's first and last thirds have a median similarity 0.04-0.25 above
that of consecutive fragments of one person, 0.01-0.14 with the whitening fitted
without that track; calibrated on them where the links are too few, appearance vetoed true
links on TUD-Campus, and with its tails bounded still carried a wrong one on KITTI-17 with
MobileNetV2: docs/quality.md). So the "same" side is estimated from links that motion made without
appearance (`same_person_model`). Where those are too few (a short video of a few people has
fewer true links than a distribution needs), appearance can still speak for a stitch, never
against it: a pair that looks more alike than two people of this video rarely do
(`unlearnt_appearance_log_likelihood_ratio`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import false_discovery_control, norm
from scipy.stats import t as student_t

FloatArray = npt.NDArray[np.float64]

#: Fewer known pairs than this and a distribution is not estimated: no decision rests on it.
MIN_PAIRS = 10

#: Density of a similarity about which a model says nothing: uniform over [-1, 1], the range of
#: means of cosines.
ANY_SIMILARITY = 0.5


@dataclass(frozen=True)
class ScoreModel:
    """A normal fitted robustly (median, scaled MAD) to the similarities of known pairs."""

    centre: float
    spread: float
    pairs: int

    @classmethod
    def fit(cls, values: FloatArray) -> ScoreModel | None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) < MIN_PAIRS:
            return None
        centre = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - centre)))
        return cls(centre, max(spread, 1e-3), len(values))

    def survival(self, similarity: FloatArray) -> FloatArray:
        """Share of such pairs at or above each similarity."""
        return norm.sf(similarity, self.centre, self.spread)

    def survival_as_learnt(self, similarity: FloatArray) -> FloatArray:
        """`survival` as far as `pairs` pairs can tell it: Student's t with pairs - 1 degrees of
        freedom in place of the normal, since a spread learnt from few pairs may be too small,
        and a share far in its tail is then too small many times over (KITTI-17, OSNet trained
        on Market-1501: a spread from 12 pairs put a clean track's margin at 1 in 29000 of one
        person's, and it was cut for good; docs/quality.md).

        >>> few, many = ScoreModel(0.0, 0.1, 12), ScoreModel(0.0, 0.1, 10_000)
        >>> [round(float(m.survival_as_learnt(np.array(0.4)) / m.survival(np.array(0.4))), 1) for m in (few, many)]
        [32.9, 1.0]
        """
        return student_t.sf((np.asarray(similarity, dtype=np.float64) - self.centre) / self.spread, self.pairs - 1)

    def log_density(self, similarity: FloatArray) -> FloatArray:
        return norm.logpdf(similarity, self.centre, self.spread)

    def log_likelihood(self, similarity: FloatArray) -> FloatArray:
        """The log density as evidence: the normal mixed with a share 1/(pairs + 1) of any
        similarity. A normal fitted to n pairs knows its tails no further than n pairs show, so
        no similarity is taken as rarer than about one in n + 1 of them: a ratio of two such
        densities stays within what the pairs behind them can tell."""
        share = 1.0 / (self.pairs + 1)
        normal = norm.pdf(similarity, self.centre, self.spread)
        return np.log((1.0 - share) * normal + share * ANY_SIMILARITY)

    def to_dict(self) -> dict[str, float | int]:
        return {"centre": self.centre, "spread": self.spread, "pairs": self.pairs}


def different_person_model(similarity: FloatArray, cannot_link: npt.NDArray[np.bool_]) -> ScoreModel | None:
    """How two different people score in this video: the pairs of tracks that share a frame."""
    upper = np.triu(cannot_link, k=1)
    return ScoreModel.fit(similarity[upper])


def same_person_model(similarity: FloatArray, pairs: list[tuple[int, int]], floor: float) -> ScoreModel | None:
    """How one person scores across a gap: the pairs that motion linked, appearance unseen.

    A few of those links are wrong, so the spread is kept at least `floor` (the different
    model's spread, half of it): the estimate must not claim more certainty than it has.
    """
    model = ScoreModel.fit(np.array([similarity[i, j] for i, j in pairs]))
    if model is None:
        return None
    return ScoreModel(model.centre, max(model.spread, floor), model.pairs)


def appearance_log_likelihood_ratio(similarity: FloatArray, same: ScoreModel, different: ScoreModel) -> FloatArray:
    """log P(s | same) / P(s | different); NaN similarities (no crops) give 0: no evidence.

    Each side is read with the tails its pairs can vouch for (`ScoreModel.log_likelihood`): two
    normals alone put a typical same pair of OSNet on MOT16-09 at about e^10 times likelier one
    person, which outweighs any motion, so that a look-alike far from where the lost person
    could be took the link (oracle F1 there 0.733 -> 0.757, TUD-Stadtmitte 0.951 -> 0.975 with
    these tails, nothing lower: docs/quality.md). Above the centre of the same model the ratio
    is held at least at its value there: a pair that looks more alike than a typical same pair
    is never evidence against it; and below the centre of the different model at most at its
    value there: a pair that looks less alike than two typical people is never evidence for it
    (where neither normal reaches, the side learnt from fewer pairs would otherwise win).
    """
    s = np.nan_to_num(similarity, nan=same.centre)

    def ratio_at(x: FloatArray) -> FloatArray:
        return np.asarray(same.log_likelihood(x) - different.log_likelihood(x), dtype=np.float64)

    ratio = ratio_at(s)
    ratio = np.where(s > same.centre, np.maximum(ratio, ratio_at(np.array(same.centre))), ratio)
    ratio = np.where(s < different.centre, np.minimum(ratio, ratio_at(np.array(different.centre))), ratio)
    return np.where(np.isnan(similarity), 0.0, ratio)


def unlearnt_appearance_log_likelihood_ratio(similarity: FloatArray, different: ScoreModel) -> FloatArray:
    """Evidence for one person where no link taught how one person scores in this video.

    All that is assumed is what any re-identification model is for: one person scores above
    the typical pair of two people, anywhere from there up to 1 (uniformly, the least one can
    claim about where), and no more tightly than two people do (a model whose scores all sit
    near 1 tells nobody apart). Against how two people score (`ScoreModel.log_likelihood`, no rarer than
    its pairs can vouch for), a pair far out in two people's tail is then evidence for one
    person. Nothing is evidence against: how low one person can score here is not known (counted
    against, it cost KITTI-17, where a car sees people at very different sizes, true links), so
    a pair that looks unlike is no evidence at all. NaN (no crops) gives 0.

    >>> different = ScoreModel(0.0, 0.1, 50)
    >>> ratio = unlearnt_appearance_log_likelihood_ratio(np.array([-0.5, 0.05, 0.5, np.nan]), different)
    >>> [round(float(r), 2) for r in ratio]  # at most log(51 / 0.5) = 4.62: one in 51 of any similarity
    [0.0, 0.0, 4.62, 0.0]
    """
    s = np.asarray(similarity, dtype=np.float64)
    uniform = -np.log(1.0 - min(different.centre, 1.0 - 1e-6))  # density on [centre, 1]
    log_same = min(uniform, float(different.log_likelihood(np.array(different.centre))))
    ratio = np.where(s >= different.centre, log_same - different.log_likelihood(s), 0.0)  # NaN fails the test: 0
    return np.maximum(ratio, 0.0)


def decisive_similarity(candidates: FloatArray, different: ScoreModel, false_rate: float) -> float:
    """The lowest similarity at which joining every candidate pair at or above it keeps the
    estimated share of wrong joins at most `false_rate` (Benjamini-Hochberg with every
    candidate counted as possibly different); +inf when no cut does.

    Args:
        candidates: similarities of the pairs that could be joined (no shared frame, reachable).
        different: how different people score in this video.
        false_rate: the target share of wrong joins.

    >>> d = ScoreModel(0.0, 0.1, 50)
    >>> round(decisive_similarity(np.array([0.9, 0.8, 0.1, 0.0, -0.1]), d, 0.02), 2)
    0.8
    >>> decisive_similarity(np.array([0.1, 0.0]), d, 0.02)
    inf
    """
    values = np.asarray(candidates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("inf")
    joined = values[false_discovery_control(different.survival(values)) <= false_rate]
    return float(joined.min()) if len(joined) else float("inf")
