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
    return VideoInfo(
        path=str(path),
        kind="video",
        num_frames=max(count, 1),
        fps=fps if 0 < fps < 1000 else 25.0,
        width=int(width),
        height=int(height),
    )


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
