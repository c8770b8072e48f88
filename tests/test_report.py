"""report.html: built from plain data, self-contained, and loaded by a real headless browser."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from reid_merge.app.report import ReportData, render_report, thumbnail_jpeg
from tests.data_paths import SAMPLE_VIDEO
from tests.synthetic_run import make_run

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)
DATA_URI = re.compile(r'<img [^>]*src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


def synthetic_report(persons: list[int]) -> ReportData:
    """One raw track per entry of `persons`, 40 frames each, four crops each."""
    rng = np.random.default_rng(0)
    n = len(persons)
    frames = [np.arange(1 + 10 * i, 41 + 10 * i) for i in range(n)]
    thumbnails = [
        [(int(f), thumbnail_jpeg(rng.integers(0, 255, (96, 40, 3), dtype=np.uint8))) for f in fs[::10]] for fs in frames
    ]
    similarity = rng.uniform(-0.2, 1.0, (n, n))
    similarity = (similarity + similarity.T) / 2
    cannot_link = np.zeros((n, n), dtype=bool)
    if n > 1:
        cannot_link[0, 1] = cannot_link[1, 0] = True
    return ReportData(
        title="synthetic.mp4",
        track_ids=np.arange(1, n + 1) * 3,
        person_ids=np.array(persons),
        track_frames=frames,
        thumbnails=thumbnails,
        similarity=similarity,
        cannot_link=cannot_link,
        threshold=0.65,
        threshold_note="average linkage",
        num_frames=10 * n + 40,
        facts=[("frames", str(10 * n + 40))],
        timings={"detect + track": 30.0, "embed": 5.0},
        models={"reid": "fake <b>model</b>"},
        scores={"raw": {"idf1": 0.5, "id_switches": 4}, "merged": {"idf1": 0.75, "id_switches": 2}},
        notes=["a note with <angle brackets> & ampersands"],
        corrections=["--merge 3,6: one person"],
    )


def sections(page: str) -> set[str]:
    return set(re.findall(r'<section (?:class="[^"]*" )?id="([^"]+)"', page))


def test_report_has_every_section_and_one_gallery_per_person() -> None:
    page = render_report(synthetic_report([1, 2, 1, 3, 3, 3]))
    assert {"summary", "timeline", "similarity", "persons", "P1", "P2", "P3"} <= sections(page)
    assert page.count('class="person"') == 3
    galleries = re.findall(r'data-person="(\d+)">(.*?)</section>', page, flags=re.S)
    tracks = {int(p): re.findall(r'data-track="(\d+)"', body) for p, body in galleries}
    assert tracks == {1: ["3", "9"], 2: ["6"], 3: ["12", "15", "18"]}
    for label in ("IDF1", "75.0%", "detect + track", "30.00 s", "--merge 3,6"):
        assert label in page
    assert "&lt;angle brackets&gt; &amp; ampersands" in page and "<b>model</b>" not in page  # text is escaped


def test_report_of_tracks_that_all_share_frames_draws_without_warnings() -> None:
    data = synthetic_report([1, 2, 3])
    data = dataclasses.replace(data, cannot_link=~np.eye(3, dtype=bool), threshold=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of a legend with nothing in it
        page = render_report(data)
    assert "similarity histogram" in page


def test_report_is_self_contained_and_every_image_decodes() -> None:
    page = render_report(synthetic_report([1, 2, 1]))
    assert not re.search(r'(src|href)="(?!data:)', page), "a resource outside the page"
    images = DATA_URI.findall(page)
    assert len(images) == page.count("<img ") == 3 + 3 * 4  # timeline, heatmap, histogram + crops
    for _, payload in images:
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.size > 0
    assert {"timeline", "similarity heatmap", "similarity histogram"} <= set(re.findall(r'alt="([^"]+)"', page))


def test_one_person_one_track_and_no_usable_pairs() -> None:
    data = synthetic_report([1])
    page = render_report(data)
    assert page.count('class="person"') == 1 and "0 pairs" in page


def test_nobody_detected_still_gives_a_page_with_every_section() -> None:
    page = render_report(synthetic_report([]))
    assert {"summary", "timeline", "similarity", "persons"} <= sections(page)
    assert page.count('class="person"') == 0 and "0 raw tracks merged into 0 persons" in page


def test_each_cut_shows_the_crops_on_both_sides_and_how_to_undo_it() -> None:
    data = synthetic_report([1, 2, 1])
    page = render_report(ReportData(**{**data.__dict__, "cuts": [(3, 9, 21)]}))
    cut = re.search(r'<div class="cut" data-track="3" data-frame="21">(.*?)</div></div>', page, flags=re.S)
    assert cut is not None
    assert "--merge 3,9" in cut.group(1)
    shown = re.findall(r'title="t(\d+), frame (\d+)"', cut.group(1))
    assert shown == [
        ("3", "1"),
        ("3", "11"),
        ("3", "21"),
        ("3", "31"),
        ("9", "21"),
        ("9", "31"),
        ("9", "41"),
        ("9", "51"),
    ]
    assert "cuts" not in sections(render_report(data))  # no cut, no section


def test_inconsistent_report_data_is_refused() -> None:
    data = synthetic_report([1, 2])
    with pytest.raises(ValueError, match="person_ids: expected length 2"):
        ReportData(**{**data.__dict__, "person_ids": np.array([1])})


def test_thumbnails_are_small_jpegs() -> None:
    jpeg = thumbnail_jpeg(np.zeros((256, 100, 3), np.uint8))
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (64, 25, 3) and len(jpeg) < 4000


def headless(*args: str | Path, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root, where chromium's sandbox cannot start
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_in_browser(report: Path, tmp_path: Path, persons: int) -> None:
    """Load the page in headless chromium: every section there, every image decoded to a real size."""
    dom = headless("--dump-dom", report.resolve().as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    # written by the page's own script on the load event, from each image's natural size
    decoded = re.search(r'data-images-decoded="(\d+)/(\d+)"', page)
    assert decoded is not None, "the page's load script did not run"
    assert decoded[1] == decoded[2] and int(decoded[2]) == page.count("<img ") > 3
    sizes = re.findall(r'data-natural="(\d+)x(\d+)"', page)
    assert len(sizes) == int(decoded[2]) and all(int(w) > 0 and int(h) > 0 for w, h in sizes)
    assert {"summary", "timeline", "similarity", "persons"} <= sections(page)
    assert page.count('class="person"') == persons
    shot = tmp_path / "report.png"
    result = headless(
        "--window-size=1200,1600", f"--screenshot={shot}", report.resolve().as_uri(), profile=tmp_path / "profile"
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert pixels is not None and pixels.std() > 10, "the page rendered blank"


@needs_chromium
def test_report_of_a_run_loads_in_a_real_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "scene", monkeypatch, ground_truth=True)
    persons = json.loads((run / "tracks.json").read_text())["summary"]["persons"]
    check_in_browser(run / "report.html", tmp_path, persons)


@pytest.mark.slow
def test_real_run_report_has_a_gallery_per_person(tmp_path: Path) -> None:
    """Real detector and embedder on two seconds of the sample video; then the report in a browser."""
    clip = tmp_path / "clip.mp4"
    with av.open(str(SAMPLE_VIDEO)) as source, av.open(str(clip), mode="w") as target:
        stream = target.add_stream("libx264", rate=source.streams.video[0].average_rate)
        for i, frame in enumerate(source.decode(video=0)):
            if i == 50:
                break
            if i == 0:
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "reid_merge", "run", str(clip), "-o", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "tracks.json").read_text())
    page = (out / "report.html").read_text()
    assert page.count('class="person"') == doc["summary"]["persons"] > 0
    assert (out / "report.html").stat().st_size < 5_000_000
    if CHROMIUM is not None:
        check_in_browser(out / "report.html", tmp_path, doc["summary"]["persons"])


def test_the_join_line_says_how_many_chain_pairs_the_hand_over_ruled_out() -> None:
    from reid_merge.app.run_writer import _threshold_fact

    calibration = {
        "threshold_from": "calibration",
        "false_merge_rate": 0.005,
        "chains_different_people": {"centre": 0.0, "spread": 0.2, "pairs": 40},
        "chains_beyond_the_handover": 3,
    }
    fact = _threshold_fact(0.4, {"criterion": "average"}, calibration)
    assert "estimated wrong joins at most 0.5%; 3 pairs of chains ruled out by the hand-over, criterion" in fact
    older_run = {key: value for key, value in calibration.items() if key != "chains_beyond_the_handover"}
    assert "ruled out" not in _threshold_fact(0.4, {"criterion": "average"}, older_run)


def test_links_left_unmade_as_ambiguous_are_shown_with_the_stitching() -> None:
    from reid_merge.app.run_writer import _stitching_fact

    calibration = {"stitched_links": 3, "ambiguous_links": 2, "stitch_odds": 49.0, "handover": {"samples": 40}}
    fact = _stitching_fact(calibration)
    assert fact.startswith("3 links (2 more left unmade: another way of linking")
    assert "each at least 49 times likelier" in fact
    older_run = {"stitched_links": 3, "handover": {"samples": 40}}  # recorded before the count was
    assert _stitching_fact(older_run).startswith("3 links; ")
    assert _stitching_fact({**calibration, "stitched_links": 1, "ambiguous_links": 0}).startswith("1 link; each")
    few_links = _stitching_fact({**calibration, "appearance_in_stitching": "for only"})
    assert "times likelier than any other way of linking; appearance counted only for a link" in few_links
    assert "; appearance not counted;" in _stitching_fact({**calibration, "appearance_in_stitching": None})
    unchecked = _stitching_fact({**calibration, "unchecked_stitch_odds": 99.0})
    assert "49 times likelier than any other way of linking (99 where a side has too few crops" in unchecked


def test_the_cuts_count_what_stands_and_tell_the_tentative_ones_apart() -> None:
    from reid_merge.app.run_writer import _cuts_fact

    firm = {"track_id": 1, "new_track_id": 9, "frame": 31, "by": "appearance", "tentative": False}
    tentative = [{**firm, "track_id": t, "new_track_id": 10 + t, "tentative": True} for t in (2, 3, 4)]
    fact = _cuts_fact([firm, *tentative], {"tentative_cuts": 3, "tentative_cuts_standing": 1})
    assert fact == (
        "2 (1 of 3 tentative cuts stand: the merge gave the later part to somebody else; "
        "the other 2 stay with their track)"
    )
    older_run = [{key: value for key, value in firm.items() if key != "tentative"}] * 2  # before tentative cuts
    assert _cuts_fact(older_run, {}) == "2"
