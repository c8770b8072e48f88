"""The annotated video: every input frame, boxes coloured and labelled by person ID.

Encoded as H.264 in MP4 with PyAV (which ships its own FFmpeg), so it plays in browsers and
phones without a system ffmpeg. Written to a temporary file and renamed when complete.
Frames larger than 4K are scaled down to fit 3840x2160 (`video_size`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from reid_merge.core.tracks import TrackSet
from reid_merge.errors import InputError
from reid_merge.io.atomic import atomic_path


def person_colour(person_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per person (golden-ratio hue steps).

    >>> person_colour(1) == person_colour(1) and person_colour(1) != person_colour(2)
    True
    """
    hue = (person_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_persons(
    image: np.ndarray, raw: TrackSet, mapping: dict[int, int], filled: TrackSet | None = None
) -> np.ndarray:
    """Draw one frame's boxes, labelled ``P<person> · t<raw track>``; returns a new image.

    `filled` are boxes that gap filling added (person IDs, no raw track): drawn dashed and
    labelled ``P<person> · filled``.
    """
    out = image.copy()
    scale = max(0.4, min(image.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for track_id, box in zip(raw.track_id, raw.xyxy):
        person = mapping.get(int(track_id), int(track_id))
        colour = person_colour(person)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        _draw_label(out, x1, y1, f"P{person}", f"t{int(track_id)}", colour, scale)
    filled = filled if filled is not None else TrackSet.empty()
    for person, box in zip(filled.track_id, filled.xyxy):
        colour = person_colour(int(person))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        _draw_dashed_rectangle(out, (x1, y1, x2, y2), colour, thickness)
        _draw_label(out, x1, y1, f"P{int(person)}", "filled", colour, scale)
    return out


def _draw_dashed_rectangle(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple, thickness: int) -> None:
    """A rectangle of dashes, as long as the gaps between them (OpenCV draws only solid lines)."""
    x1, y1, x2, y2 = box
    dash = max(4, 2 * thickness + 2)
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay), 1)
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // length, ay + (by - ay) * start // length)
            q = (ax + (bx - ax) * end // length, ay + (by - ay) * end // length)
            cv2.line(image, p, q, colour, thickness)


def _draw_label(image: np.ndarray, x: int, y: int, person: str, track: str, colour: tuple, scale: float) -> None:
    """``P3 · t17`` on a filled tab above (x, y): the person large and bold, the raw track small.

    OpenCV's Hershey fonts have no "·", so the separator is a drawn dot.
    """
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    bold = max(1, round(scale * 2.5))
    small = scale * 0.75
    (pw, ph), base = cv2.getTextSize(person, font, scale, bold)
    (tw, th), _ = cv2.getTextSize(track, font, small, 1)
    gap = max(3, round(ph * 0.4))
    bottom = max(ph + base + 2, y)
    baseline = bottom - base
    cv2.rectangle(image, (x, bottom - ph - base - 3), (x + 2 + pw + 2 * gap + tw + 3, bottom), colour, -1)
    cv2.putText(image, person, (x + 2, baseline), font, scale, black, bold, cv2.LINE_AA)
    dot_x = x + 2 + pw + gap
    cv2.circle(image, (dot_x, baseline - th // 2), max(1, round(ph * 0.1)), black, -1, cv2.LINE_AA)
    cv2.putText(image, track, (dot_x + gap, baseline), font, small, black, 1, cv2.LINE_AA)


def write_annotated_video(
    frames: Iterable[tuple[int, np.ndarray]],
    raw: TrackSet,
    mapping: dict[int, int],
    path: Path,
    fps: float,
    filled: TrackSet | None = None,
) -> int:
    """Encode annotated frames to `path`; returns the number of frames written.

    Args:
        frames: `(frame, bgr)` pairs, 1-based, in order.
        raw: the tracker's detections, with raw track IDs.
        mapping: raw track ID → person ID (unmapped IDs are shown as themselves).
        path: the ``.mp4`` to write.
        fps: frame rate of the input.
        filled: boxes added by gap filling, with person IDs; drawn dashed.
    """
    order = np.argsort(raw.frame, kind="stable")
    sorted_frames = raw.frame[order]
    filled = filled if filled is not None else TrackSet.empty()
    filled_order = np.argsort(filled.frame, kind="stable")
    filled_frames = filled.frame[filled_order]
    written = 0
    try:
        with atomic_path(path) as tmp:
            container = av.open(str(tmp), mode="w", format="mp4")
            try:
                stream = None
                for frame, image in frames:
                    if stream is None:
                        size = video_size(image.shape[1], image.shape[0])
                        stream = _open_stream(container, *size, fps)
                    lo, hi = np.searchsorted(sorted_frames, [frame, frame + 1])
                    a, b = np.searchsorted(filled_frames, [frame, frame + 1])
                    annotated = draw_persons(image, raw[order[lo:hi]], mapping, filled[filled_order[a:b]])
                    padded = _fit(annotated, size)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="bgr24")):
                        container.mux(packet)
                    written += 1
                if stream is None:
                    raise InputError(f"{path}: no frames to write")
                for packet in stream.encode():
                    container.mux(packet)
            finally:
                container.close()
    except (av.error.FFmpegError, av.codec.codec.UnknownCodecError, OSError) as exc:
        # A PyAV build without libx264, a full disk, an encoder that refuses the frame size.
        raise InputError(
            f"{path}: cannot encode the annotated video as H.264 ({exc.__class__.__name__}: {exc}); --no-video skips it"
        ) from None
    return written


def _open_stream(container: av.container.OutputContainer, width: int, height: int, fps: float):
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width = width + width % 2  # yuv420p needs even sizes
    stream.height = height + height % 2
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast"}
    # Frame threads as well as slices (PyAV's default is slices alone): x264 then keeps every
    # core busy (bench/video_encoding.py).
    stream.codec_context.thread_type = "AUTO"
    return stream


MAX_VIDEO_SIZE = (3840, 2160)


def video_size(width: int, height: int) -> tuple[int, int]:
    """Size of the annotated video for `width` x `height` input frames: even, and within 4K.

    Larger frames are scaled down to fit 3840x2160 (either orientation): H.264 players stop
    around 4K, and x264 holds dozens of frames in memory, over 100 MB each at 8000x6000.

    >>> video_size(641, 360)
    (642, 360)
    >>> video_size(8000, 6000)
    (2880, 2160)
    """
    long_side, short_side = MAX_VIDEO_SIZE
    scale = min(1.0, long_side / max(width, height), short_side / min(width, height))
    if scale == 1.0:
        return width + width % 2, height + height % 2  # yuv420p needs even sizes
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at the video's `size` (width, height): scaled down, or padded to even."""
    if image.shape[1] > size[0] or image.shape[0] > size[1]:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return _pad_even(image)


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
