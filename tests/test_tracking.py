"""Tracking: what `track_frames` hands on besides the tracks (the boxes backfilling walks over)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reid_merge.core.backfill import MATCH_IOU
from reid_merge.core.tracks import box_iou
from tests.data_paths import SAMPLE_VIDEO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

FRAMES = 30


def test_every_detection_comes_out_tracked_or_untracked_and_the_hook_goes() -> None:
    from reid_merge.io.video import probe_video, read_frames
    from reid_merge.models.tracking import check_tracker_config, load_detector, track_frames

    frames = list(itertools.islice(read_frames(probe_video(SAMPLE_VIDEO)), FRAMES))
    plain, info = load_detector("offline")  # never tracked with: its predictions are the detector's
    detected = [
        plain.predict(image, conf=0.1, imgsz=640, classes=info.person_classes, device="cpu", verbose=False)[0].boxes
        for _, image in frames
    ]
    model, _ = load_detector("offline")
    stream = list(track_frames(model, iter(frames), info, tracker=check_tracker_config("bytetrack"), device="cpu"))

    assert [t.frame for t in stream] == [f for f, _ in frames]
    assert sum(len(t.untracked) for t in stream) > 0  # the tracker's unconfirmed starts, at least
    for tracked, boxes in zip(stream, detected):
        found = boxes.xyxy.numpy().astype(np.float64)
        assert len(tracked.tracks) + len(tracked.untracked) <= len(found)
        assert (tracked.untracked.track_id == -1).all() and (tracked.untracked.frame == tracked.frame).all()
        # Each untracked box is one of the detector's, with its score, and none is a tracked one.
        for box, score in zip(tracked.untracked.xyxy, tracked.untracked.score):
            same = np.flatnonzero(np.abs(found - box).max(axis=1) < 1e-3)
            assert len(same) == 1 and abs(float(boxes.conf[same[0]]) - score) < 1e-6
        if len(tracked.tracks) and len(tracked.untracked):
            assert box_iou(tracked.untracked.xyxy, tracked.tracks.xyxy).max() < MATCH_IOU
    hooks = model.callbacks["on_predict_postprocess_end"]
    assert not any(getattr(hook, "__name__", "") == "keep_detections" for hook in hooks)
