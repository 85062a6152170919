"""The small split CNN: shapes, sizes, and that it learns scikit-learn digits quickly."""

import pytest
import torch
import torch.nn.functional as F

from fslsage_ray.models import ModelError, build_split_model, count_parameters, list_aux


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_cnn_shapes(channels: int, size: int) -> None:
    split = build_split_model("cnn", 10, channels, size)
    assert split.cut_shape == (32, size // 2, size // 2)
    z = split.client(torch.randn(4, channels, size, size))
    assert tuple(z.shape) == (4, *split.cut_shape)
    assert split.server(z).shape == (4, 10)
    for aux in list_aux("cnn"):
        am = build_split_model("cnn", 10, channels, size, aux=aux).make_aux()
        assert am(z).shape == (4, 10)


def test_cnn_param_counts() -> None:
    split = build_split_model("cnn", 10, 1, 8)
    assert count_parameters(split.client) == 9_632
    assert count_parameters(split.server) == 56_202
    expected = {"linear": 5_130, "one_block": 19_210, "two_blocks": 56_202, "server_copy": 56_202}
    for aux, params in expected.items():
        am = build_split_model("cnn", 10, 1, 8, aux=aux).make_aux()
        assert count_parameters(am) == params, aux


def test_cnn_rejects_image_size_not_divisible_by_4() -> None:
    with pytest.raises(ModelError, match="divisible by 4"):
        build_split_model("cnn", 10, 1, 6)


def test_cnn_learns_digits() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=gen)
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    split = build_split_model("cnn", 10, 1, 8)
    params = [*split.client.parameters(), *split.server.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    for _ in range(4):
        for batch in train[torch.randperm(len(train), generator=gen)].split(64):
            loss = F.cross_entropy(split.server(split.client(images[batch])), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    split.client.eval()
    split.server.eval()
    with torch.no_grad():
        predictions = split.server(split.client(images[test])).argmax(1)
    assert (predictions == labels[test]).float().mean().item() > 0.9
