"""trainables.models: the seed article's CNN, He et al.'s CIFAR ResNets and ResNet-18."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import MODEL_NAMES, build_model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_seed_cnn_parameter_count() -> None:
    """seed_cnn has 651,978 parameters, as the Keras model's summary:

    conv 3->32: 896, conv 32->64: 18,496, conv 64->128: 73,856,
    dense 2048->256: 524,544, dense 256->128: 32,896, dense 128->10: 1,290.
    """
    model = build_model("seed_cnn")
    assert n_params(model) == 651_978
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [d.out_features for d in dense] == [256, 128, 10]


def test_resnet18_is_the_cifar_variant() -> None:
    """ResNet-18 for CIFAR: 11,173,962 parameters, 3x3 stride-1 stem, no max-pool."""
    model = build_model("resnet18")
    assert n_params(model) == 11_173_962
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1) and first.out_channels == 64
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 8


@pytest.mark.parametrize(
    ("name", "params", "blocks"), [("resnet8", 78_042, 3), ("resnet20", 272_474, 9)]
)
def test_cifar_resnets_are_he_et_als(name: str, params: int, blocks: int) -> None:
    """6n + 2 layers: a 16-filter stem, three stages of n blocks (16, 32, 64 filters), no
    max-pool; only the two stage changes project their shortcut."""
    model = build_model(name)
    assert n_params(model) == params
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    main = [c for c in convs if c.kernel_size == (3, 3)]
    assert len(main) == 1 + 2 * blocks  # the weighted layers besides the classifier: depth - 1
    assert main[0].out_channels == 16 and main[-1].out_channels == 64
    assert sum(c.stride == (2, 2) for c in main) == 2
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [32, 64]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert sum(type(m).__name__ == "BasicBlock" for m in model.modules()) == blocks


@pytest.mark.parametrize("depth", [0, 6, 9, 21])
def test_a_cifar_resnet_depth_must_be_6n_plus_2(depth: int) -> None:
    from trainables.models import CifarResNet

    with pytest.raises(ValueError, match=rf"depth {depth} is not 6n \+ 2"):
        CifarResNet(depth)


def test_num_classes() -> None:
    model = build_model("seed_cnn", num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_init_follows_the_global_seed() -> None:
    torch.manual_seed(3)
    a = build_model("seed_cnn").state_dict()
    torch.manual_seed(3)
    b = build_model("seed_cnn").state_dict()
    torch.manual_seed(4)
    c = build_model("seed_cnn").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])


@pytest.mark.parametrize("name", ["seed_cnn", "resnet8"])
def test_a_few_sgd_steps_lower_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(10)) < 0.1, "a fresh model should be near chance"
    assert losses[-1] < losses[0] - 0.1, losses
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= 8, losses


def test_channels_last_forward_matches() -> None:
    torch.manual_seed(0)
    model = build_model("seed_cnn").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        cl = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        )
    assert torch.allclose(plain, cl, atol=1e-5)


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'vgg16'.*seed_cnn, resnet8, resnet20, resnet18"):
        build_model("vgg16")
