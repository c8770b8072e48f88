"""``report.html``: one self-contained page that shows what the merge decided and why.

A gallery per person (the crops that were compared, grouped by the raw tracks merged into
that person, so a wrong merge shows at a glance), the track → person timeline, the
track-by-track similarity the clustering used (heatmap ordered by person, and histogram of
same-person vs different-person pairs with the threshold), and the run's numbers.

Everything is inlined: crops are the JPEG thumbnails of the merge cache, charts are PNGs
drawn with matplotlib's Agg canvas (no pyplot, no global backend switch), both as ``data:``
URIs; no external CSS, script or font. The one inline script only records each image's
decoded size in the page (``data-natural``), which the browser test reads back.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from reid_merge.io.annotate import person_colour

THUMBNAIL_HEIGHT = 64  # px: a gallery of a few hundred crops stays well under a few MB
MAX_TICK_LABELS = 60  # tracks; beyond this, heatmap and timeline axes show no per-track labels

SCORE_ROWS = (
    ("idf1", "IDF1", True),
    ("hota", "HOTA", True),
    ("assa", "AssA", True),
    ("mota", "MOTA", True),
    ("id_switches", "ID switches", False),
    ("num_pred_ids", "IDs", False),
    ("num_gt_ids", "true IDs", False),
)


@dataclass(frozen=True)
class ReportData:
    """What the report shows, as plain data (no models, no video).

    Attributes:
        title: the page title, usually the video's name.
        track_ids: `(N,)` sorted raw track IDs.
        person_ids: `(N,)` person of each track.
        track_frames: N arrays, the frames where each track has a box (1-based).
        thumbnails: N lists of ``(frame, jpeg bytes)``: the crops taken for each track.
        similarity: `(N, N)` the similarity the clustering used, ``1 - distance``; NaN where a
            track was held apart for want of evidence (no crops, likely false positive).
        cannot_link: `(N, N)` pairs that could never be one person (a shared frame, or an
            impossible hand-over).
        threshold: the distance at which appearance alone joined chains of stitched tracks
            (similarity ``1 - threshold``); negative when the video made no such join decisive.
        threshold_note: how the threshold was used (criterion, or ``--persons`` instead).
        num_frames: frames in the video.
        facts: ``(label, value)`` rows of the run's numbers.
        timings: seconds per stage.
        models: role → one-line description of the model used.
        scores: ``{"raw": {...}, "merged": {...}}`` evaluation scores, or None.
        notes: what the run told the user.
        corrections: manual corrections applied, one line each.
        apply_hint: the command that corrects this run, shown to the reader.
        cuts: ``(track_id, new_track_id, frame)`` of each impure track cut: from `frame` on,
            `track_id` became `new_track_id` (both in `track_ids`).
    """

    title: str
    track_ids: npt.NDArray[np.int64]
    person_ids: npt.NDArray[np.int64]
    track_frames: Sequence[npt.NDArray[np.int64]]
    thumbnails: Sequence[Sequence[tuple[int, bytes]]]
    similarity: npt.NDArray[np.float64]
    cannot_link: npt.NDArray[np.bool_]
    threshold: float
    threshold_note: str
    num_frames: int
    facts: Sequence[tuple[str, str]] = ()
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] | None = None
    notes: Sequence[str] = ()
    corrections: Sequence[str] = ()
    apply_hint: str = "reid-merge apply RUN_DIR --merge A,B --split C"
    cuts: Sequence[tuple[int, int, int]] = ()

    def __post_init__(self) -> None:
        n = len(self.track_ids)
        for name, value in (("person_ids", self.person_ids), ("track_frames", self.track_frames)):
            if len(value) != n:
                raise ValueError(f"{name}: expected length {n}, got {len(value)}")
        if len(self.thumbnails) != n:
            raise ValueError(f"thumbnails: expected length {n}, got {len(self.thumbnails)}")
        for name, matrix in (("similarity", self.similarity), ("cannot_link", self.cannot_link)):
            if matrix.shape != (n, n):
                raise ValueError(f"{name}: expected shape ({n}, {n}), got {matrix.shape}")


def thumbnail_jpeg(crop_rgb: np.ndarray, height: int = THUMBNAIL_HEIGHT, quality: int = 80) -> bytes:
    """An RGB crop as JPEG bytes, scaled to `height` pixels high.

    >>> data = thumbnail_jpeg(np.zeros((128, 40, 3), np.uint8))
    >>> data[:2] == b"\\xff\\xd8" and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape
    (64, 20, 3)
    """
    h, w = crop_rgb.shape[:2]
    width = max(1, round(w * height / max(h, 1)))
    interpolation = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    small = cv2.resize(crop_rgb, (width, height), interpolation=interpolation)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {w}x{h} crop as JPEG")
    return encoded.tobytes()


def person_hex(person_id: int) -> str:
    """The person's colour in the annotated video, as CSS ``#rrggbb``.

    >>> person_hex(1) == person_hex(1)
    True
    """
    b, g, r = person_colour(person_id)
    return f"#{r:02x}{g:02x}{b:02x}"


def display_order(data: ReportData) -> npt.NDArray[np.int64]:
    """Track indices ordered by person, then by first frame: the order of every chart."""
    first = np.array([int(f.min()) if len(f) else 0 for f in data.track_frames], dtype=np.int64)
    return np.lexsort((data.track_ids, first, data.person_ids)).astype(np.int64)


def pair_values(data: ReportData) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Similarities of the track pairs the clustering could join: same person, different persons."""
    n = len(data.track_ids)
    rows, cols = np.triu_indices(n, k=1)
    values = data.similarity[rows, cols]
    usable = np.isfinite(values) & ~data.cannot_link[rows, cols]
    same = data.person_ids[rows] == data.person_ids[cols]
    return values[usable & same], values[usable & ~same]


def track_cohesion(data: ReportData) -> npt.NDArray[np.float64]:
    """`(N,)` mean similarity of each track to the other tracks of its person (NaN when alone)."""
    same = data.person_ids[:, None] == data.person_ids[None, :]
    np.fill_diagonal(same, False)
    values = np.where(same & np.isfinite(data.similarity), data.similarity, 0.0)
    counts = (same & np.isfinite(data.similarity)).sum(axis=1)
    return np.where(counts > 0, values.sum(axis=1) / np.maximum(counts, 1), np.nan)


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string."""
    order = display_order(data)
    same, different = pair_values(data)
    if len(order):
        charts = {
            "timeline": _png_uri(_timeline_figure(data, order)),
            "heatmap": _png_uri(_heatmap_figure(data, order)),
            "histogram": _png_uri(_histogram_figure(same, different, data.threshold, data.threshold_note)),
        }
    else:  # nobody detected: the page still says so, with the same sections
        charts = dict.fromkeys(("timeline", "heatmap", "histogram"), _png_uri(_empty_figure("no tracks")))
    persons = sorted(set(data.person_ids.tolist()))
    parts = [
        _HEAD.format(title=html.escape(data.title)),
        f"<h1>{html.escape(data.title)}</h1>",
        f'<p class="lead">{len(data.track_ids)} raw tracks merged into {len(persons)} persons. '
        f"To correct the merge: <code>{html.escape(data.apply_hint)}</code></p>",
        _summary_section(data),
        '<section id="timeline"><h2>Track → person timeline</h2>'
        "<p>One row per raw track, bars where it has a box, coloured as the person it belongs to "
        "(same colours as <code>annotated.mp4</code>).</p>"
        f'<img class="chart" alt="timeline" src="{charts["timeline"]}"></section>',
        '<section id="similarity"><h2>Similarity the merge used</h2>'
        "<p>Track-by-track appearance similarity (crop by crop, after per-video whitening). "
        "Fragments were first stitched end to start by motion (see <em>stitched by motion</em> "
        "above), appearance vetoing; the chains were then joined where appearance alone is "
        "decisive, at the line below, which this video set: it is where the estimated share of wrong "
        "joins, judged against how pairs that share a frame (two people) score, meets the target. "
        "Dark cells: pairs that can never be one person (they share a frame, or one could not have "
        "walked to where the other starts); light grey: tracks held apart "
        "(no usable crop, or a short low-confidence track). Lines separate persons.</p>"
        f'<img class="chart" id="heatmap" alt="similarity heatmap" src="{charts["heatmap"]}">'
        f"<p>Pairs that could be joined, same person vs different persons "
        f"({_pairs(len(same))} and {_pairs(len(different))}). The clustering merges whole groups while their "
        f"<em>average</em> similarity stays above the line, so single pairs may sit on either side.</p>"
        f'<img class="chart" id="histogram" alt="similarity histogram" src="{charts["histogram"]}"></section>',
        _cuts_section(data),
        '<section id="persons"><h2>Persons</h2>'
        "<p>The crops taken for each raw track, grouped by person. A person whose rows show two "
        "different people is a wrong merge: split the odd track out with <code>--split</code>.</p>",
        *(_person_gallery(data, person) for person in persons),
        "</section>",
        _FOOT,
    ]
    return "\n".join(parts)


def _summary_section(data: ReportData) -> str:
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in data.facts)
    out = ['<section id="summary"><h2>Run</h2><div class="tables">', f"<table>{rows}</table>"]
    if data.timings:
        body = "".join(
            f"<tr><th>{_text(stage)}</th><td>{seconds:.2f} s</td></tr>" for stage, seconds in data.timings.items()
        )
        total = sum(data.timings.values())
        out.append(f'<table class="timings"><tr><th colspan="2">time per stage</th></tr>{body}')
        out.append(f"<tr><th>total</th><td>{total:.2f} s</td></tr></table>")
    if data.models:
        body = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in data.models.items())
        out.append(f'<table class="models"><tr><th colspan="2">models</th></tr>{body}</table>')
    if isinstance(data.scores, dict):
        out.append(_scores_table(data.scores))
    out.append("</div>")
    if data.corrections:
        items = "".join(f"<li>{_text(c)}</li>" for c in data.corrections)
        out.append(f'<h3>Manual corrections</h3><ul class="corrections">{items}</ul>')
    if data.notes:
        items = "".join(f"<li>{_text(n)}</li>" for n in data.notes)
        out.append(f'<h3>Notes</h3><ul class="notes">{items}</ul>')
    out.append("</section>")
    return "".join(out)


def _scores_table(scores: dict[str, dict[str, Any]]) -> str:
    columns = [name for name in ("raw", "merged") if isinstance(scores.get(name), dict)]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for key, label, percent in SCORE_ROWS:
        cells = []
        for c in columns:
            cells.append(f"<td>{_score_text(scores[c].get(key), percent)}</td>")
        body.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    return f'<table class="scores"><tr><th>against ground truth</th>{head}</tr>{"".join(body)}</table>'


def _text(value: Any) -> str:
    """Any value read back from a run's files as HTML text: it may have been edited by anyone."""
    return html.escape(str(value))


def _score_text(value: Any, percent: bool) -> str:
    """A score cell: numbers formatted, anything else (a hand-edited tracks.json) escaped.

    >>> _score_text(0.5, True), _score_text(3, False), _score_text("<b>", True)
    ('50.0%', '3', '&lt;b&gt;')
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * value:.1f}%" if percent else str(value)
    return "" if value is None else html.escape(str(value))


def _person_gallery(data: ReportData, person: int) -> str:
    members = [i for i in display_order(data) if data.person_ids[i] == person]
    frames = np.concatenate([data.track_frames[i] for i in members])
    cohesion = track_cohesion(data)
    span = f"frames {int(frames.min())}–{int(frames.max())}" if len(frames) else "no boxes"
    tracks = len(members)
    out = [
        f'<section class="person" id="P{person}" data-person="{person}">',
        f'<h3><span class="swatch" style="background:{person_hex(person)}"></span>P{person} '
        f'<span class="dim">· {tracks} raw track{"s" if tracks != 1 else ""} · {span}</span></h3>',
    ]
    for i in members:
        track_frames = data.track_frames[i]
        crops = data.thumbnails[i]
        head = [f"<b>t{int(data.track_ids[i])}</b>"]
        if len(track_frames):
            head.append(f"frames {int(track_frames.min())}–{int(track_frames.max())}, {len(track_frames)} boxes")
        head.append(f"{len(crops)} crops" if crops else "no usable crop")
        warn = ""
        if np.isfinite(cohesion[i]):
            low = data.threshold >= 0 and cohesion[i] < 1.0 - data.threshold
            warn = " low" if low else ""
            head.append(f'<span class="cohesion{warn}">similarity to the rest of P{person}: {cohesion[i]:.2f}</span>')
        images = "".join(
            f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}" '
            f'title="t{int(data.track_ids[i])}, frame {frame}" alt="t{int(data.track_ids[i])} frame {frame}">'
            for frame, jpeg in crops
        )
        out.append(
            f'<div class="track{warn}" data-track="{int(data.track_ids[i])}"><div class="head">'
            f'{" · ".join(head)}</div><div class="crops">{images}</div></div>'
        )
    out.append("</section>")
    return "\n".join(out)


#: Crops shown on each side of a cut.
CUT_CROPS_EACH_SIDE = 4


def _cuts_section(data: ReportData) -> str:
    """Each impure track cut, with its last crops before and first crops after the cut, and the
    command that undoes it."""
    if not data.cuts:
        return ""
    command = data.apply_hint.split(" --merge")[0]
    out = [
        '<section id="cuts"><h2>Tracks cut in two</h2>'
        "<p>The tracker moved these track IDs from one person to another where two people met: "
        "the crops before and after differed more than one person's do in this video. If both "
        "sides show one person, undo the cut with the command given.</p>"
    ]
    for track_id, new_track_id, frame in data.cuts:
        i, j = np.searchsorted(data.track_ids, [track_id, new_track_id])
        sides = [data.thumbnails[i][-CUT_CROPS_EACH_SIDE:], data.thumbnails[j][:CUT_CROPS_EACH_SIDE]]
        images = [
            "".join(
                f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}" '
                f'title="t{t}, frame {f}" alt="t{t} frame {f}">'
                for f, jpeg in side
            )
            for t, side in zip((track_id, new_track_id), sides)
        ]
        out.append(
            f'<div class="cut" data-track="{track_id}" data-frame="{frame}"><div class="head"><b>t{track_id}</b> '
            f"until frame {frame - 1} | <b>t{new_track_id}</b> from frame {frame} · undo: "
            f"<code>{html.escape(command)} --merge {track_id},{new_track_id}</code></div>"
            f'<div class="crops">{images[0]}<span class="dim"> | </span>{images[1]}</div></div>'
        )
    out.append("</section>")
    return "\n".join(out)


def _track_label(data: ReportData, i: int) -> str:
    return f"P{int(data.person_ids[i])} · t{int(data.track_ids[i])}"


def _rgb(person: int) -> tuple[float, float, float]:
    b, g, r = person_colour(person)
    return r / 255, g / 255, b / 255


def _runs(frames: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of consecutive frames.

    >>> _runs(np.array([1, 2, 3, 7, 8]))
    [(1, 3), (7, 2)]
    """
    if len(frames) == 0:
        return []
    f = np.unique(frames)
    breaks = np.flatnonzero(np.diff(f) > 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks, [len(f) - 1]])
    return [(int(f[a]), int(f[b] - f[a] + 1)) for a, b in zip(starts, stops)]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty_figure(message: str) -> Any:
    fig = _figure(6.0, 1.0)
    fig.text(0.5, 0.5, message, ha="center", va="center", color="#777777")
    return fig


def _timeline_figure(data: ReportData, order: npt.NDArray[np.int64]) -> Any:
    n = len(order)
    labelled = n <= MAX_TICK_LABELS
    fig = _figure(10.0, min(2.0 + 0.2 * n, 14.0))
    ax = fig.add_subplot()
    for row, i in enumerate(order):
        ax.broken_barh(
            [(start - 0.5, length) for start, length in _runs(data.track_frames[i])],
            (row - 0.4, 0.8),
            facecolors=_rgb(int(data.person_ids[i])),
            edgecolors="none",
        )
    _person_separators(ax, data.person_ids[order], horizontal_only=True)
    ax.set_xlim(0.5, max(data.num_frames, 1) + 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("frame")
    if labelled:
        ax.set_yticks(range(n), [_track_label(data, int(i)) for i in order], fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} raw tracks, grouped by person")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _heatmap_figure(data: ReportData, order: npt.NDArray[np.int64]) -> Any:
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    n = len(order)
    sim = data.similarity[np.ix_(order, order)]
    never = data.cannot_link[np.ix_(order, order)]
    usable = np.isfinite(sim) & ~never & ~np.eye(n, dtype=bool)
    low = float(np.nanmin(sim[usable])) if usable.any() else 0.0
    norm = Normalize(vmin=min(low, 1.0 - data.threshold) if data.threshold >= 0 else low, vmax=1.0)
    cmap = colormaps["viridis"]
    image = cmap(norm(np.nan_to_num(sim, nan=low)))
    image[never] = (0.2, 0.2, 0.2, 1.0)
    image[~np.isfinite(sim)] = (0.85, 0.85, 0.85, 1.0)
    image[np.eye(n, dtype=bool)] = (1.0, 1.0, 1.0, 1.0)
    side = min(3.0 + 0.16 * n, 11.0)
    fig = _figure(side + 1.8, side)
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="nearest")
    _person_separators(ax, data.person_ids[order])
    if n <= MAX_TICK_LABELS:
        labels = [_track_label(data, int(i)) for i in order]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="similarity (1 - distance)", shrink=0.8)
    ax.legend(
        handles=[
            Patch(color=(0.2, 0.2, 0.2), label="never one person"),
            Patch(color=(0.85, 0.85, 0.85), label="held apart"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02 if n > MAX_TICK_LABELS else -0.12),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    return fig


def _histogram_figure(
    same: npt.NDArray[np.float64], different: npt.NDArray[np.float64], threshold: float, note: str
) -> Any:
    fig = _figure(9.0, 3.6)
    ax = fig.add_subplot()
    values = np.concatenate([same, different, [0.0], [1.0 - threshold] if threshold >= 0 else []])
    bins = np.linspace(min(float(values.min()), 0.0), max(float(values.max()), 1.0), 41)
    # Each group sums to 1: a handful of same-person pairs stays visible beside hundreds of others.
    for group, colour, label in ((different, "#8c8c8c", "different persons"), (same, "#2a9d8f", "same person")):
        if len(group):
            weights = np.full(len(group), 1.0 / len(group))
            ax.hist(group, bins=bins, weights=weights, alpha=0.6, color=colour, label=f"{label} ({_pairs(len(group))})")
    if threshold >= 0:
        label = f"joins by appearance from {1.0 - threshold:.2f} ({note})"
        ax.axvline(1.0 - threshold, color="#d62828", linestyle="--", label=label)
    ax.set_xlabel("similarity (1 - distance)")
    ax.set_ylabel("share of the group's pairs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    else:  # every pair of tracks shares a frame, or none has crops: nothing to compare
        ax.text(0.5, 0.5, "no pair of tracks that could be one person", ha="center", transform=ax.transAxes)
    return fig


def _pairs(count: int) -> str:
    return f"{count} pair" if count == 1 else f"{count} pairs"


def _person_separators(ax: Any, persons: npt.NDArray[np.int64], horizontal_only: bool = False) -> None:
    for edge in np.flatnonzero(np.diff(persons) != 0) + 0.5:
        ax.axhline(edge, color="white" if not horizontal_only else "#bbbbbb", linewidth=0.8)
        if not horizontal_only:
            ax.axvline(edge, color="white", linewidth=0.8)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · reid-merge report</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
  padding: 0 16px 40px; color: #222; background: #fafafa; }}
h1 {{ margin: 20px 0 4px; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }}
code {{ background: #eee; padding: 1px 4px; border-radius: 3px; }}
.lead {{ color: #444; }} .dim {{ color: #777; font-weight: normal; }}
.tables {{ display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }}
table {{ border-collapse: collapse; background: #fff; }}
th, td {{ text-align: left; padding: 2px 10px; border-bottom: 1px solid #eee; font-weight: normal; }}
th {{ color: #555; }} td {{ font-variant-numeric: tabular-nums; }}
img.chart {{ max-width: 100%; height: auto; display: block; margin: 8px 0; }}
.person {{ background: #fff; border: 1px solid #e4e4e4; border-radius: 6px; padding: 4px 12px 8px; margin: 12px 0; }}
.person h3 {{ margin: 6px 0; }}
.swatch {{ display: inline-block; width: 14px; height: 14px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }}
.track {{ border-top: 1px dashed #e4e4e4; padding: 4px 0; }}
.track .head {{ font-size: 13px; color: #444; margin-bottom: 3px; }}
.crops img {{ height: 64px; margin: 0 2px 2px 0; border-radius: 2px; }}
.cohesion.low {{ color: #c1121f; font-weight: bold; }}
</style></head>
<body>"""

# Records each image's decoded size in the page: a browser test that dumps the DOM sees
# whether every embedded image really decoded, not only that an <img> tag exists.
_FOOT = """<script>
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural", images[i].naturalWidth + "x" + images[i].naturalHeight);
    if (images[i].naturalWidth > 0) decoded++;
  }
  document.body.setAttribute("data-images-decoded", decoded + "/" + images.length);
});
</script>
</body></html>
"""
