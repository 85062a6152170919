import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fslsage_ray.tasks.image_transforms import (
    make_batch,
    normalize,
    random_crop_flip,
    to_float_batch,
    to_tensor_batch,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Spec:
    max_value = 255.0
    mean = MEAN
    std = STD


def _images(n: int = 16, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_to_tensor_batch_scales_and_normalises_nchw():
    images = _images(4)
    x = to_tensor_batch(images, 255.0, MEAN, STD)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    expected = (images.transpose(0, 3, 1, 2) / 255.0 - np.reshape(MEAN, (1, 3, 1, 1))) / (
        np.reshape(STD, (1, 3, 1, 1))
    )
    assert np.allclose(x.numpy(), expected, atol=1e-5)


def test_to_tensor_batch_uses_max_value():
    images = np.full((1, 8, 8, 1), 16, np.uint8)
    x = to_tensor_batch(images, 16.0, (0.0,), (1.0,))
    assert torch.allclose(x, torch.ones(1, 1, 8, 8))


def test_normalize_per_channel():
    x = torch.ones(2, 3, 4, 4)
    y = normalize(x, (0.5, 0.0, 1.0), (0.5, 2.0, 1.0))
    assert torch.allclose(y[:, 0], torch.full((2, 4, 4), 1.0))
    assert torch.allclose(y[:, 1], torch.full((2, 4, 4), 0.5))
    assert torch.allclose(y[:, 2], torch.zeros(2, 4, 4))
    assert torch.equal(x, torch.ones(2, 3, 4, 4))  # input untouched


def test_crop_flip_keeps_shape_and_is_deterministic_per_generator():
    x = to_float_batch(_images(), 255.0)
    a = random_crop_flip(x, _gen(7))
    b = random_crop_flip(x, _gen(7))
    c = random_crop_flip(x, _gen(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_only_flips_some_samples():
    x = to_float_batch(_images(64), 255.0)
    y = random_crop_flip(x, _gen(0), padding=0)
    same = [torch.equal(y[i], x[i]) for i in range(64)]
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(64)]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert 10 < sum(flipped) < 54  # p = 0.5


def test_crop_matches_a_per_sample_reference():
    x = to_float_batch(_images(32), 255.0)
    y = random_crop_flip(x, _gen(3), padding=4)
    # Re-draw the same random numbers in the documented order and crop one sample at a time.
    gen = _gen(3)
    offsets = torch.randint(0, 9, (2, 32), generator=gen)
    flips = torch.rand(32, generator=gen) < 0.5
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(32):
        top, left = offsets[0, i], offsets[1, i]
        crop = padded[i, :, top : top + 32, left : left + 32]
        assert torch.equal(y[i], crop.flip(-1) if flips[i] else crop)
    assert (offsets != 4).any()  # some samples really moved


def test_crop_shifts_content_and_pads_black():
    x = torch.ones(64, 3, 32, 32)
    y = random_crop_flip(x, _gen(1), padding=4)
    zeros_per_sample = (y == 0).flatten(1).sum(1)
    assert (zeros_per_sample > 0).sum() > 32  # most crops bring in some black border
    assert y.max() == 1.0 and y.min() == 0.0


def test_make_batch_without_augmentation_equals_to_tensor_batch():
    images = _images(8)
    assert torch.equal(
        make_batch(images, Spec, augment=False, generator=None),
        to_tensor_batch(images, 255.0, MEAN, STD),
    )


def test_make_batch_with_augmentation_needs_and_uses_generator():
    images = _images(8)
    with pytest.raises(ValueError, match="Generator"):
        make_batch(images, Spec, augment=True, generator=None)
    a = make_batch(images, Spec, augment=True, generator=_gen(2))
    b = make_batch(images, Spec, augment=True, generator=_gen(2))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    plain = random_crop_flip(to_float_batch(images, 255.0), _gen(2))
    assert torch.allclose(a, normalize(plain, MEAN, STD))


def test_crop_flip_is_fast_for_a_cifar_batch():
    x = to_float_batch(_images(256), 255.0)
    gen = _gen(0)
    # One intra-op thread: on a busy 2-core box torch's second thread can stall for a whole
    # scheduler slice (~30 ms per op), which measures the machine, not this function.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        random_crop_flip(x, gen)  # warm up
        timings = []
        for _ in range(10):
            start = time.perf_counter()
            random_crop_flip(x, gen)
            timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert float(np.median(timings)) < 0.010


def test_read_only_arrays_are_accepted_without_warning():
    images = _images(4)
    images.flags.writeable = False  # as arrays from Ray's object store are
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = make_batch(images[:2], Spec, augment=False)
    assert x.shape == (2, 3, 32, 32)


def test_uint8_tensors_and_device_argument_work():
    images = _images(4)
    x = make_batch(torch.from_numpy(images), Spec, augment=False, device="cpu")
    assert torch.equal(x, to_tensor_batch(images, 255.0, MEAN, STD))
