"""Frames in: a video file or a MOTChallenge sequence folder, as a stream of ``(frame, bgr)``.

Frames are numbered from 1, as in MOTChallenge files, so a detection's ``frame`` is the
index yielded here. Only one frame is held at a time: memory does not grow with length.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from reid_merge.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    """What we know of an input before decoding it; `num_frames` is the container's claim."""

    path: str
    kind: Literal["video", "sequence"]
    num_frames: int
    fps: float
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_video(path: Path) -> VideoInfo:
    """Check that `path` is a readable video or sequence folder and read its metadata."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _probe_sequence(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(
            f"{path}: not a video file (expected one of {', '.join(VIDEO_SUFFIXES)}) or a MOTChallenge sequence folder"
        )
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot be decoded as a video")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise InputError(f"{path}: the video has no decodable frames")
        height, width = frame.shape[:2]
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    timed = _rate_from_timestamps(path, fps)
    if timed is not None:
        count, fps = timed
    return VideoInfo(
        path=str(path),
        kind="video",
        num_frames=max(count, 1),
        fps=fps if 0 < fps < 1000 else 25.0,
        width=int(width),
        height=int(height),
    )


#: Packets whose timestamps are compared with the container's nominal rate.
_TIMESTAMP_SAMPLE = 300
#: Relative difference beyond which the timestamps' rate wins over the nominal one.
_RATE_TOLERANCE = 0.05


def _rate_from_timestamps(path: Path, nominal_fps: float) -> tuple[int, float] | None:
    """`(frames, fps)` from the stream's packet timestamps when their rate disagrees with
    the container's nominal one, else None.

    Phone and screen recordings often declare one rate (a Matroska default duration of
    30 fps) and time their frames at another (10 fps): OpenCV then reports the nominal rate
    and a frame count of duration x that rate. The first packets are compared; only when
    they disagree is the rest of the stream demuxed (no decoding) to count the frames and
    average the rate over the whole video.
    """
    import av  # PyAV: only for the timestamps of a file OpenCV cannot count

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = container.demux(stream)
            stamps = [p.pts for p in _first(packets, _TIMESTAMP_SAMPLE) if p.pts is not None and p.size]
            rate = _timestamp_rate(stamps, stream.time_base)
            if rate is None or abs(rate - nominal_fps) <= _RATE_TOLERANCE * max(rate, nominal_fps):
                return None
            stamps += [p.pts for p in packets if p.pts is not None and p.size]
            rate = _timestamp_rate(stamps, stream.time_base)
    except (av.error.FFmpegError, IndexError, OSError):
        return None  # OpenCV read the video; its nominal rate stands
    return (len(stamps), rate) if rate is not None and 0 < rate < 1000 else None


def _first(items: Iterator[Any], count: int) -> Iterator[Any]:
    for index, item in enumerate(items):
        yield item
        if index + 1 == count:
            return


def _timestamp_rate(stamps: list[int], time_base: Any) -> float | None:
    """Frames per second from presentation timestamps in `time_base` units (any order).

    >>> from fractions import Fraction
    >>> _timestamp_rate([0, 300, 100, 200], Fraction(1, 1000))
    10.0
    """
    if len(stamps) < 2 or time_base is None:
        return None
    span = float((max(stamps) - min(stamps)) * time_base)
    return (len(stamps) - 1) / span if span > 0 else None


def _probe_sequence(folder: Path) -> VideoInfo:
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        raise InputError(
            f"{folder}: is a folder without seqinfo.ini (expected a video file or a MOTChallenge sequence)"
        )
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
        seq = parser["Sequence"]
        image_dir = folder / seq.get("imDir", "img1")
        info = VideoInfo(
            path=str(folder),
            kind="sequence",
            num_frames=int(seq["seqLength"]),
            fps=float(seq.get("frameRate", "25")),
            width=int(seq["imWidth"]),
            height=int(seq["imHeight"]),
        )
    except (configparser.Error, KeyError, ValueError) as exc:
        raise InputError(f"{ini}: malformed seqinfo.ini ({exc.__class__.__name__}: {exc})") from None
    if not image_dir.is_dir():
        raise InputError(f"{folder}: image folder {image_dir.name}/ named in seqinfo.ini is missing")
    if info.num_frames < 1:
        raise InputError(f"{ini}: seqLength must be >= 1, got {info.num_frames}")
    return info


def _sequence_frame_path(info: VideoInfo, frame: int) -> Path:
    parser = configparser.ConfigParser()
    parser.read(Path(info.path) / "seqinfo.ini", encoding="utf-8")
    seq = parser["Sequence"]
    return Path(info.path) / seq.get("imDir", "img1") / f"{frame:06d}{seq.get('imExt', '.jpg')}"


def read_frames(info: VideoInfo) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, bgr)`` for every frame, 1-based, until the input ends.

    A video that ends early (truncated file) simply yields fewer frames; the caller counts.
    """
    if info.kind == "sequence":
        first = _sequence_frame_path(info, 1)
        for frame in range(1, info.num_frames + 1):
            image_path = first.with_name(f"{frame:06d}{first.suffix}")
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"{image_path}: missing or unreadable frame of the sequence")
            yield frame, image
        return
    capture = cv2.VideoCapture(info.path)
    try:
        frame = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            frame += 1
            yield frame, image
    finally:
        capture.release()
