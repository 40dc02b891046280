"""BatchAugment: per-image crops and flips of a batch; DeepInversion's jitter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from dfkd_lightning.synthesis.augment import BatchAugment, crop_boxes, random_jitter


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def find_crop(
    out: torch.Tensor, image: torch.Tensor, padding: int, mode: str = "constant"
) -> tuple[int, int, bool] | None:
    """The (top, left, flipped) of the padded crop of ``image`` equal to ``out``, if any."""
    padded = F.pad(image[None], (padding,) * 4, mode=mode)[0]
    h, w = image.shape[-2:]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            if torch.equal(out, crop):
                return top, left, False
            if torch.equal(out, crop.flip(-1)):
                return top, left, True
    return None


@pytest.mark.parametrize(
    "augment",
    [
        BatchAugment(),
        BatchAugment(crop_padding=0, flip=False),
        BatchAugment(resized_crop_scale=(0.25, 1.0)),
        BatchAugment(padding_mode="reflect"),
    ],
)
def test_output_shape_and_dtype(augment: BatchAugment) -> None:
    images = torch.rand(6, 3, 16, 12)
    out = augment(images, generator=generator(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert augment(images[:0]).shape == (0, 3, 16, 12)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_padded_crop_is_exact_and_per_image(mode: str) -> None:
    image = torch.rand(3, 10, 10)
    images = image.expand(24, -1, -1, -1)  # identical images
    out = BatchAugment(crop_padding=3, padding_mode=mode)(images, generator=generator(1))
    found = [find_crop(o, image, 3, mode) for o in out]
    assert all(f is not None for f in found)  # each output is an exact (flipped) shifted crop
    assert len(set(found)) > 5  # with parameters of its own
    assert {f[2] for f in found if f is not None} == {False, True}
    # the same seed gives the same parameters
    assert torch.equal(out, BatchAugment(crop_padding=3, padding_mode=mode)(images, generator(1)))


def test_padded_crop_without_flip() -> None:
    images = torch.rand(16, 2, 8, 8)
    out = BatchAugment(crop_padding=2, flip=False)(images, generator=generator(2))
    found = [find_crop(o, i, 2) for o, i in zip(out, images, strict=True)]
    assert all(f is not None and not f[2] for f in found)
    # zero padding: a shifted crop shows zeros on the side it moved in from
    top, left, _ = found[0]  # type: ignore[misc]
    if top < 2:
        assert (out[0, :, : 2 - top] == 0).all()


def test_flip_mask() -> None:
    images = torch.rand(32, 3, 5, 7)
    out = BatchAugment(crop_padding=0, flip=True)(images, generator=generator(3))
    same = (out == images).flatten(1).all(1)
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all()
    assert same.any() and flipped.any()


def test_roi_align_crops_are_pixel_exact() -> None:
    images = torch.rand(5, 3, 12, 12)
    padded = F.pad(images, (4, 4, 4, 4))
    tops, lefts = [0, 3, 8, 5, 1], [8, 0, 2, 7, 4]
    boxes = torch.tensor([[x, y, x + 12, y + 12] for y, x in zip(tops, lefts, strict=True)])
    out = crop_boxes(padded, boxes.float(), size=(12, 12))
    for i, (y, x) in enumerate(zip(tops, lefts, strict=True)):
        assert torch.equal(out[i], padded[i, :, y : y + 12, x : x + 12])


def test_roi_align_matches_torchvision_resized_crop_inside() -> None:
    images = torch.rand(2, 3, 32, 32)
    out = crop_boxes(images, torch.tensor([[6.0, 4.0, 22.0, 20.0], [0.0, 8.0, 20.0, 32.0]]))
    for i, (top, left, h, w) in enumerate([(4, 6, 16, 16), (8, 0, 24, 20)]):
        ref = TF.resized_crop(images[i], top, left, h, w, [32, 32], antialias=True)
        # identical away from the box edges (roi_align reads real neighbours there)
        torch.testing.assert_close(out[i, :, 1:-1, 1:-1], ref[:, 1:-1, 1:-1])


def test_resized_crop_params_and_output() -> None:
    augment = BatchAugment(resized_crop_scale=(0.25, 1.0))
    top, left, h, w = augment.resized_crop_params(2000, 32, 32, generator(4))
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32).all() and (left + w <= 32).all()
    fraction = (h * w).float() / (32 * 32)
    assert fraction.min() >= 0.25 - 0.05 and fraction.max() <= 1.0
    assert fraction.min() < 0.3 and fraction.max() > 0.9  # the range is covered
    ratio = w.float() / h.float()
    assert ratio.min() >= 3 / 4 - 0.1 and ratio.max() <= 4 / 3 + 0.1
    assert len(set(zip(top.tolist(), left.tolist(), h.tolist(), w.tolist(), strict=True))) > 500
    images = torch.rand(1, 3, 32, 32).expand(16, -1, -1, -1)
    out = augment(images, generator=generator(5))
    assert out.shape == images.shape
    assert len({o.sum().item() for o in out}) > 10  # different crops of the same image
    identity = BatchAugment(
        resized_crop_scale=(1.0, 1.0), resized_crop_ratio=(1.0, 1.0), flip=False
    )
    assert torch.equal(identity(images), images)


def test_resized_crop_fallback_for_impossible_ratio() -> None:
    augment = BatchAugment(resized_crop_scale=(1.0, 1.0), resized_crop_ratio=(2.0, 2.0))
    top, left, h, w = augment.resized_crop_params(8, 16, 16, generator(0))
    assert (w == 16).all() and (h == 8).all() and (top == 4).all() and (left == 0).all()


@pytest.mark.parametrize(
    "augment",
    [BatchAugment(crop_padding=2), BatchAugment(resized_crop_scale=(0.3, 1.0))],
)
def test_gradients_flow(augment: BatchAugment) -> None:
    images = torch.rand(3, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: augment(x, generator=generator(7)), (images,))
    augment(images, generator=generator(7)).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("augment", [BatchAugment(), BatchAugment(resized_crop_scale=(0.25, 1.0))])
def test_seeded_reproducibility(augment: BatchAugment) -> None:
    images = torch.rand(8, 3, 16, 16)
    a = augment(images, generator=generator(11))
    assert torch.equal(a, augment(images, generator=generator(11)))
    assert not torch.equal(a, augment(images, generator=generator(12)))
    torch.manual_seed(0)
    b = augment(images)
    torch.manual_seed(0)
    assert torch.equal(b, augment(images))


@pytest.mark.parametrize("augment", [BatchAugment(), BatchAugment(resized_crop_scale=(0.25, 1.0))])
def test_bfloat16_autocast(augment: BatchAugment) -> None:
    images = torch.rand(4, 3, 16, 16, requires_grad=True)
    reference = augment(images, generator=generator(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = augment(images, generator=generator(1))
        out_bf16 = augment(images.bfloat16(), generator=generator(1))
    assert out.dtype == torch.float32 and out_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(out_bf16.float(), reference, atol=1e-2, rtol=1e-2)
    out_bf16.float().sum().backward()
    assert images.grad is not None


def test_random_jitter_rolls_the_whole_batch() -> None:
    images = torch.rand(4, 3, 9, 9)
    seen = set()
    for seed in range(30):
        out = random_jitter(images, 2, generator(seed))
        assert torch.equal(out, random_jitter(images, 2, generator(seed)))
        matches = [
            (dy, dx, flip)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            for flip in (False, True)
            if torch.equal(
                out,
                torch.roll(images, (dy, dx), (2, 3)).flip(-1)
                if flip
                else torch.roll(images, (dy, dx), (2, 3)),
            )
        ]
        assert len(matches) == 1  # one shift and one flip for every image
        seen.add(matches[0])
    assert len(seen) > 10
    assert torch.equal(random_jitter(images, 0, flip=False), images)
