"""The annotated video: every input frame, boxes coloured and labelled by person ID.

Encoded as H.264 in MP4 with PyAV (which ships its own FFmpeg), so it plays in browsers and
phones without a system ffmpeg. Written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from reid_merge.atomic import atomic_path
from reid_merge.errors import InputError
from reid_merge.tracks import TrackSet


def person_colour(person_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per person (golden-ratio hue steps).

    >>> person_colour(1) == person_colour(1) and person_colour(1) != person_colour(2)
    True
    """
    hue = (person_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_persons(image: np.ndarray, raw: TrackSet, mapping: dict[int, int]) -> np.ndarray:
    """Draw one frame's boxes, labelled ``P<person> t<raw track>``; returns a new image."""
    out = image.copy()
    scale = max(0.4, min(image.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for track_id, box in zip(raw.track_id, raw.xyxy):
        person = mapping.get(int(track_id), int(track_id))
        colour = person_colour(person)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        label = f"P{person} t{int(track_id)}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(th + base, y1)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty), colour, -1)
        cv2.putText(out, label, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_annotated_video(
    frames: Iterable[tuple[int, np.ndarray]],
    raw: TrackSet,
    mapping: dict[int, int],
    path: Path,
    fps: float,
) -> int:
    """Encode annotated frames to `path`; returns the number of frames written.

    Args:
        frames: `(frame, bgr)` pairs, 1-based, in order.
        raw: the tracker's detections, with raw track IDs.
        mapping: raw track ID → person ID (unmapped IDs are shown as themselves).
        path: the ``.mp4`` to write.
        fps: frame rate of the input.
    """
    order = np.argsort(raw.frame, kind="stable")
    sorted_frames = raw.frame[order]
    written = 0
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = None
            for frame, image in frames:
                if stream is None:
                    stream = _open_stream(container, image.shape[1], image.shape[0], fps)
                lo, hi = np.searchsorted(sorted_frames, [frame, frame + 1])
                annotated = draw_persons(image, raw[order[lo:hi]], mapping)
                padded = _pad_even(annotated)
                for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="bgr24")):
                    container.mux(packet)
                written += 1
            if stream is None:
                raise InputError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return written


def _open_stream(container: av.container.OutputContainer, width: int, height: int, fps: float):
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width = width + width % 2  # yuv420p needs even sizes
    stream.height = height + height % 2
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast"}
    return stream


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
