import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from engine.transforms import EvalSpec, eval_transform, pil_to_uint8_tensor


@pytest.mark.parametrize("shape, size, mean, std", [((1, 28, 28), 28, (0.13,), (0.31,)),
                                                    ((3, 50, 37), 28, (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)),
                                                    ((1, 20, 20), 64, (0.5,), (0.25,))])
def test_eval_transform_equals_torchvision_pipeline(shape, size, mean, std):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(list(mean), list(std))])(x)
    got = eval_transform(EvalSpec(size, shape[0], mean, std))(x)
    assert got.shape == (shape[0], size, size)
    assert torch.allclose(got, ref, atol=1e-5)


def test_pil_to_tensor_matches_torchvision():
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    assert torch.equal(pil_to_uint8_tensor(img, 3), v2.functional.pil_to_tensor(img))
    assert torch.equal(pil_to_uint8_tensor(img, 1), v2.functional.pil_to_tensor(img.convert("L")))
