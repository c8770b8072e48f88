"""The annotated video: labels in the person's colour, and a clear error when it cannot be encoded."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import av
import numpy as np
import pytest

import reid_merge.io.annotate as annotate
from reid_merge.errors import InputError
from tests.builders import tracks_from_rows


def test_boxes_and_labels_take_the_person_colour() -> None:
    image = np.full((240, 320, 3), 128, np.uint8)
    tracks = tracks_from_rows([(1, 17, 100.0, 100.0, 160.0, 220.0)])
    out = annotate.draw_persons(image, tracks, {17: 3})
    colour = np.array(annotate.person_colour(3), np.uint8)
    painted = np.all(out == colour, axis=2)
    assert painted[100:220, 100].any()  # the box's left edge
    tab = painted[60:100, 100:200]  # the label's filled tab above the box
    assert tab.sum() > 200
    assert (out[60:100, 100:200] == 0).all(axis=2).any()  # black text on it
    assert np.array_equal(image, np.full((240, 320, 3), 128, np.uint8))  # input untouched


def test_filled_boxes_are_dashed_and_detected_ones_solid() -> None:
    image = np.full((240, 320, 3), 128, np.uint8)
    detected = tracks_from_rows([(1, 17, 40.0, 100.0, 100.0, 220.0)])
    filled = tracks_from_rows([(1, 3, 200.0, 100.0, 260.0, 220.0)])  # person 3, no raw track
    out = annotate.draw_persons(image, detected, {17: 3}, filled)
    painted = np.all(out == np.array(annotate.person_colour(3), np.uint8), axis=2)
    solid, dashed = painted[130:220, 40], painted[130:220, 200]  # left edges, below the label
    assert solid.all()
    assert 0.3 < dashed.mean() < 0.7  # dashes as long as the gaps between them


def test_failed_encoding_is_an_input_error_and_leaves_no_file(tmp_path: Path) -> None:
    frames = [(1, np.zeros((64, 64, 3), np.uint8))]
    broken = av.codec.codec.UnknownCodecError("libx264")
    with mock.patch.object(annotate, "_open_stream", side_effect=broken), pytest.raises(InputError) as caught:
        annotate.write_annotated_video(frames, tracks_from_rows([]), {}, tmp_path / "annotated.mp4", 25.0)
    assert "cannot encode the annotated video as H.264" in str(caught.value)
    assert "--no-video" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_odd_sized_frames_are_padded_and_every_frame_written(tmp_path: Path) -> None:
    frames = [(f, np.full((63, 81, 3), f * 20, np.uint8)) for f in range(1, 8)]
    tracks = tracks_from_rows([(2, 1, 10.0, 10.0, 40.0, 60.0)])
    path = tmp_path / "annotated.mp4"
    assert annotate.write_annotated_video(frames, tracks, {1: 1}, path, 12.5) == 7
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 12.5
        decoded = list(container.decode(stream))
    assert len(decoded) == 7 and (decoded[0].width, decoded[0].height) == (82, 64)
