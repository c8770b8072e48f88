"""Colour histograms of the upper and lower body (`reid_merge/core/colour.py`)."""

from __future__ import annotations

import numpy as np

from reid_merge.core.colour import COLOUR_DIM, colour_histograms, with_colour


def _person(top: tuple[int, int, int], bottom: tuple[int, int, int], height: int = 120, seed: int = 0) -> np.ndarray:
    """An RGB crop: a shirt of one colour above trousers of another, with a little noise."""
    crop = np.zeros((height, height // 2, 3), dtype=np.int16)
    crop[: height // 2], crop[height // 2 :] = top, bottom
    noise = np.random.default_rng(seed).integers(-8, 9, crop.shape)
    return np.clip(crop + noise, 0, 255).astype(np.uint8)


def test_the_same_clothes_look_alike_and_swapped_clothes_do_not() -> None:
    red, blue = (200, 30, 30), (30, 30, 200)
    a, again, swapped = colour_histograms([_person(red, blue), _person(red, blue, 90, seed=1), _person(blue, red)])
    assert a.shape == (COLOUR_DIM,)
    assert a @ again > 0.9  # another size, other noise: the same clothes
    assert a @ swapped < 0.1  # the same colours on the other halves of the body: somebody else


def test_rows_are_unit_and_an_empty_list_gives_none() -> None:
    crops = [_person((10, 120, 40), (240, 240, 240)), np.zeros((1, 1, 3), np.uint8)]
    np.testing.assert_allclose(np.linalg.norm(colour_histograms(crops), axis=1), 1.0, atol=1e-6)
    assert colour_histograms([]).shape == (0, COLOUR_DIM)


def test_features_and_colours_count_alike() -> None:
    crops = [_person((200, 30, 30), (30, 30, 200)), _person((30, 30, 200), (200, 30, 30))]
    features = np.array([[1.0, 0.0], [1.0, 0.0]])  # the backbone sees one person twice
    both = with_colour(features, crops)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-6)
    colours = colour_histograms(crops)
    assert np.isclose(both[0] @ both[1], (1.0 + colours[0] @ colours[1]) / 2.0, atol=1e-6)
