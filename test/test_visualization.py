"""Pictures: the static scene stays neutral and what moves stands out."""

from __future__ import annotations

import numpy as np

from mds_core.visualization import STATIC_COLOUR, colourise_labels, colourise_masks, component_colours, heat_map


def one_hot_masks(labels: np.ndarray, num_components: int) -> np.ndarray:
    return (labels[None] == np.arange(num_components)[:, None, None]).astype(np.float32)


def test_the_background_component_is_grey_and_the_others_keep_their_colours():
    labels = np.full((6, 8), 2)
    labels[1:3, 1:4] = 0  # a mover on component 0
    labels[4:, 5:] = 4  # and one on component 4; component 2 holds most of the image: the background
    picture = colourise_masks(one_hot_masks(labels, 5))
    assert (picture[labels == 2] == STATIC_COLOUR).all()
    colours = component_colours(5)
    assert (picture[labels == 0] == colours[0]).all() and (picture[labels == 4] == colours[4]).all()
    assert not (colours[0] == STATIC_COLOUR).all()  # component 0 has a colour when it is not the background
    # told which component is the background (the node knows it), the picture follows that
    told = colourise_masks(one_hot_masks(labels, 5), background=4)
    assert (told[labels == 4] == STATIC_COLOUR).all() and (told[labels == 2] == colours[2]).all()
    assert (colourise_labels(labels, 5, background=2) == picture).all()


def test_soft_masks_blend_the_colours():
    masks = np.zeros((2, 1, 1), np.float32)
    masks[:, 0, 0] = [0.75, 0.25]  # background 0
    expected = 0.75 * np.array(STATIC_COLOUR) + 0.25 * component_colours(2)[1].astype(float)
    assert np.abs(colourise_masks(masks)[0, 0].astype(float) - expected).max() <= 1.0  # rounded to uint8


def test_the_heat_map_brightens_with_the_probability_and_clips():
    values = np.array([[0.0, 0.1, 0.3, 0.6, 1.0, 7.0, np.nan]], np.float32)
    brightness = heat_map(values).astype(int).sum(axis=-1)[0]
    assert (np.diff(brightness[:5]) > 0).all()  # 0 < 0.1 < 0.3 < 0.6 < 1
    assert brightness[5] == brightness[4] and brightness[6] == brightness[0]  # above 1 clips; NaN shows as 0
