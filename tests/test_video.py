"""Frames in: what `probe_video` says of a file, checked on files made here with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from reid_merge.io.video import probe_video, read_frames
from tests.data_paths import SAMPLE_VIDEO


def write_timed_video(path: Path, frames: int, nominal_fps: int, frame_step: int) -> Path:
    """`frames` frames in a stream whose container declares `nominal_fps`, timed every
    `frame_step` ticks of 1/`nominal_fps` s (so really at nominal_fps / frame_step)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=nominal_fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 3 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = index * frame_step, Fraction(1, nominal_fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_rate_comes_from_timestamps_when_the_container_claims_another(tmp_path: Path) -> None:
    """A Matroska file that declares 30 fps and times its 71 frames at 10 fps (as phone and
    screen recorders write them): OpenCV says 30 fps and 211 frames; the timestamps win."""
    video = write_timed_video(tmp_path / "phone.mkv", frames=71, nominal_fps=30, frame_step=3)
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30) and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 211
    capture.release()

    info = probe_video(video)

    assert info.fps == pytest.approx(10.0) and info.num_frames == 71
    assert sum(1 for _ in read_frames(info)) == info.num_frames  # no false "truncated"


def test_constant_rate_video_keeps_its_nominal_rate(tmp_path: Path) -> None:
    video = write_timed_video(tmp_path / "steady.mkv", frames=40, nominal_fps=25, frame_step=1)
    info = probe_video(video)
    assert info.fps == pytest.approx(25.0) and info.num_frames == 40
    sample = probe_video(SAMPLE_VIDEO)
    assert sample.fps == pytest.approx(30000 / 1001) and sample.num_frames == 180
