"""Appearance cut-offs from the video: the same decisions whatever scale a model scores on."""

from __future__ import annotations

import numpy as np
import pytest

from reid_merge.core.calibration import (
    ScoreModel,
    appearance_log_likelihood_ratio,
    decisive_similarity,
    different_person_model,
    unlearnt_appearance_log_likelihood_ratio,
)


def _scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    different = rng.normal(0.1, 0.08, 200)  # pairs that share a frame
    candidates = np.concatenate([rng.normal(0.1, 0.08, 300), rng.normal(0.6, 0.08, 20)])
    return different, candidates


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (0.3, 0.6), (2.0, -0.5)])
def test_a_model_scoring_on_another_scale_joins_the_same_pairs(scale: float, shift: float) -> None:
    different, candidates = _scores()
    reference = decisive_similarity(candidates, ScoreModel.fit(different), 0.02)
    cut = decisive_similarity(scale * candidates + shift, ScoreModel.fit(scale * different + shift), 0.02)
    assert cut == pytest.approx(scale * reference + shift)
    assert np.sum(candidates >= reference) == np.sum(scale * candidates + shift >= cut)


def test_a_lower_target_joins_fewer_pairs() -> None:
    different, candidates = _scores()
    model = ScoreModel.fit(different)
    joined = [np.sum(candidates >= decisive_similarity(candidates, model, rate)) for rate in (0.2, 0.02, 0.0001)]
    assert joined[0] >= joined[1] >= joined[2]
    assert 15 <= joined[1] <= 22  # about the 20 look-alike-free same pairs


def test_the_different_people_are_the_pairs_that_share_a_frame() -> None:
    similarity = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    shared = np.array([[0, 0, 1], [0, 0, 1], [1, 1, 0]], bool)
    assert different_person_model(similarity, shared) is None  # two pairs: too few to estimate
    big = np.kron(np.ones((4, 4)), similarity)
    model = different_person_model(big, np.kron(np.ones((4, 4), bool), shared))
    assert model is not None and 0.1 <= model.centre <= 0.2


def test_appearance_never_counts_against_a_pair_that_looks_more_alike_than_usual() -> None:
    same, different = ScoreModel(0.6, 0.05, 20), ScoreModel(0.1, 0.1, 50)
    ratio = appearance_log_likelihood_ratio(np.array([0.0, 0.6, 0.99, np.nan]), same, different)
    assert ratio[0] < 0 < ratio[1] <= ratio[2]
    assert ratio[3] == 0.0


def test_appearance_claims_no_more_than_its_pairs_can_tell() -> None:
    # Two normals alone: a similarity 9.5 spreads above two people's is about e^44 times likelier one person.
    same = ScoreModel(0.9, 0.02, 20)
    few, many = ScoreModel(0.0, 0.1, 50), ScoreModel(0.0, 0.1, 5000)
    at_few, at_many = (float(appearance_log_likelihood_ratio(np.array([0.95]), same, d)[0]) for d in (few, many))
    # No more than the same side's peak density (20) over one in 51 of any similarity (density 0.5).
    assert 0.0 < at_few <= np.log(20.0 * 51 / 0.5)
    assert at_few < at_many  # more pairs that share a frame vouch for a thinner tail
    # Against: no less than one in 21 of any similarity over the different side's peak (4).
    far_below = float(appearance_log_likelihood_ratio(np.array([-0.9]), same, few)[0])
    assert np.log(0.5 / 21 / 4.0) <= far_below < 0.0


def test_without_links_to_learn_from_appearance_only_speaks_for_a_pair_and_no_louder_than_its_pairs_allow() -> None:
    few, many = ScoreModel(0.0, 0.1, 50), ScoreModel(0.0, 0.1, 5000)
    similarity = np.linspace(-1.0, 1.0, 201)
    ratio = unlearnt_appearance_log_likelihood_ratio(similarity, few)
    assert (ratio >= 0.0).all()  # never against: how low one person scores here is not known
    assert (np.diff(ratio) >= -1e-12).all()  # the more alike, the more for
    assert (ratio[similarity <= 0.1] == 0.0).all()  # within a spread of two people's typical score: nothing
    assert ratio[-1] > 0.0
    # No similarity rarer than one in 51 of any (density 0.5) against one person's density, 1 / (1 - 0).
    assert ratio.max() <= np.log(1.0 / (0.5 / 51)) + 1e-9
    at = int(np.argmin(np.abs(similarity - 0.5)))
    assert unlearnt_appearance_log_likelihood_ratio(similarity, many)[at] > ratio[at]  # more pairs, thinner tail
    # A model whose scores all sit near 1 tells nobody apart: two people's typical score is no evidence.
    saturated = ScoreModel(0.999, 1e-3, 50)
    assert unlearnt_appearance_log_likelihood_ratio(np.array([0.999]), saturated)[0] == 0.0
