"""trainables.augment: batched crop/flip, normalisation and the batch pipeline."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from trainables.augment import (
    CIFAR_MEAN,
    CIFAR_STD,
    BatchPipeline,
    crop_flip,
    draw_crop_flip,
    normalize,
    random_crop_flip,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen(seed))


def reference_crop_flip(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, flips: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Slow, obviously right: pad each image with zeros, slice at the offsets, flip if drawn."""
    out = []
    for i in range(len(x)):
        padded = F.pad(x[i], (padding, padding, padding, padding))
        r, c = int(rows[i]), int(cols[i])
        crop = padded[:, r : r + x.shape[2], c : c + x.shape[3]]
        out.append(crop.flip(-1) if bool(flips[i]) else crop)
    return torch.stack(out)


def naive_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


# -- random_crop_flip --------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [4, 2, 0])
def test_crop_flip_matches_the_slow_reference(padding: int) -> None:
    x = images(200)
    rows, cols, flips = draw_crop_flip(200, gen(5), padding=padding)
    out = random_crop_flip(x, gen(5), padding=padding)
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, reference_crop_flip(x, rows, cols, flips, padding))


def test_crop_flip_matches_torchvision_functional() -> None:
    x = images(50, seed=1)
    rows, cols, flips = draw_crop_flip(50, gen(9))
    out = crop_flip(x, rows, cols, flips)
    for i in range(50):
        want = TF.crop(TF.pad(x[i], [4]), int(rows[i]), int(cols[i]), 32, 32)
        if flips[i]:
            want = TF.hflip(want)
        assert torch.equal(out[i], want), i


def test_draws_cover_every_offset_and_flip_half() -> None:
    rows, cols, flips = draw_crop_flip(4000, gen(0))
    assert sorted(rows.unique().tolist()) == list(range(9))
    assert sorted(cols.unique().tolist()) == list(range(9))
    assert rows.dtype == torch.int64 and flips.dtype == torch.bool
    assert 0.45 < flips.float().mean().item() < 0.55
    assert not torch.equal(rows, cols)


def test_crops_and_flips_are_real() -> None:
    x = images(256, seed=2)
    rows, cols, flips = draw_crop_flip(256, gen(3))
    out = random_crop_flip(x, gen(3))
    changed = (out != x).flatten(1).any(1)
    assert changed.float().mean().item() > 0.9
    # A flipped image is the mirror of the un-flipped crop at the same offsets.
    padded = F.pad(x, (4, 4, 4, 4))
    flipped = flips.nonzero().flatten().tolist()
    assert len(flipped) > 80
    for i in flipped[:20]:
        r, c = int(rows[i]), int(cols[i])
        assert torch.equal(out[i], padded[i, :, r : r + 32, c : c + 32].flip(-1))
        assert not torch.equal(out[i], padded[i, :, r : r + 32, c : c + 32])
    # Offsets away from the centre bring in zero padding on the matching side.
    i = int(((rows == 0) & (cols == 0) & ~flips).nonzero()[0])
    assert int(out[i, :, :4, :].abs().sum()) == 0 and int(out[i, :, :, :4].abs().sum()) == 0
    assert torch.equal(out[i, :, 4:, 4:], x[i, :, :28, :28])


def test_crop_flip_is_deterministic_under_a_seed() -> None:
    x = images(64)
    assert torch.equal(random_crop_flip(x, gen(11)), random_crop_flip(x, gen(11)))
    assert not torch.equal(random_crop_flip(x, gen(11)), random_crop_flip(x, gen(12)))


def test_crop_flip_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        random_crop_flip(images(2).float(), gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_crop_flip_is_the_same_on_cuda() -> None:
    x = images(128)
    cpu = random_crop_flip(x, gen(4))
    gpu = random_crop_flip(x.cuda(), gen(4))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    assert torch.allclose(normalize(x.cuda()).cpu(), normalize(x), atol=1e-6)


# -- normalize ---------------------------------------------------------------------------------


def test_normalize_matches_the_formula_and_formats() -> None:
    x = images(16)
    out = normalize(x, channels_last=True)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.allclose(out, naive_normalize(x), atol=1e-5)
    plain = normalize(x, channels_last=False)
    assert plain.is_contiguous() and torch.allclose(plain, out, atol=0)
    half = normalize(x, dtype=torch.bfloat16, channels_last=False)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), out, atol=0.05)


def test_normalize_mean_and_std_on_uniform_data() -> None:
    x = torch.randint(0, 256, (2000, 3, 32, 32), dtype=torch.uint8, generator=gen(7))
    out = normalize(x, channels_last=False).double()
    # Uniform over 0..255: mean 127.5, std sqrt((256^2 - 1) / 12).
    u_mean, u_std = 127.5 / 255, math.sqrt((256**2 - 1) / 12) / 255
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.double)
    std = torch.tensor(CIFAR_STD, dtype=torch.double)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), (u_mean - mean) / std, atol=5e-3)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.full((3,), u_std) / std, atol=5e-3)


# -- BatchPipeline -----------------------------------------------------------------------------


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels 0..n-1 (so batches can be traced back to images)."""
    return images(n, seed=n), torch.arange(n)


def test_epoch_covers_every_image_once_without_drop_last() -> None:
    x, y = numbered(103)
    pipe = BatchPipeline(x, y, batch_size=10, augment=True, channels_last=False)
    batches = list(pipe.epoch(gen(0), drop_last=False))
    assert len(batches) == pipe.steps_per_epoch(drop_last=False) == 11
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(103))
    assert seen.tolist() != list(range(103)), "the epoch must be shuffled"
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    assert all(b[0].dtype == torch.float32 and b[0].shape[1:] == (3, 32, 32) for b in batches)


def test_epoch_with_drop_last_has_only_full_batches() -> None:
    x, y = numbered(103)
    pipe = BatchPipeline(x, y, batch_size=10, augment=False)
    batches = list(pipe.epoch(gen(0)))
    assert len(batches) == len(pipe) == pipe.steps_per_epoch() == 10
    seen = torch.cat([b[1] for b in batches]).tolist()
    assert len(set(seen)) == 100 and all(len(b[1]) == 10 for b in batches)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


def test_epoch_is_deterministic_and_replays_the_documented_draws() -> None:
    x, y = numbered(50)
    pipe = BatchPipeline(x, y, batch_size=16, augment=True, channels_last=False)
    a = list(pipe.epoch(gen(21), drop_last=False))
    b = list(pipe.epoch(gen(21), drop_last=False))
    c = list(pipe.epoch(gen(22), drop_last=False))
    assert all(
        torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
    )
    assert torch.cat([p[1] for p in a]).tolist() != torch.cat([p[1] for p in c]).tolist()
    # Replay: permutation first, then each batch's crop/flip draws, all from the same generator.
    g = gen(21)
    perm = torch.randperm(50, generator=g)
    for k, (xb, yb) in enumerate(a):
        idx = perm[k * 16 : (k + 1) * 16]
        assert torch.equal(yb, y[idx])
        rows, cols, flips = draw_crop_flip(len(idx), g)
        want = naive_normalize(reference_crop_flip(x[idx], rows, cols, flips))
        assert torch.allclose(xb, want, atol=1e-5)


def test_epoch_without_augment_is_just_shuffled_and_normalised() -> None:
    x, y = numbered(40)
    pipe = BatchPipeline(x, y, batch_size=8, augment=False, channels_last=False)
    for xb, yb in pipe.epoch(gen(1)):
        assert torch.allclose(xb, naive_normalize(x[yb]), atol=1e-5)


def test_sequential_is_ordered_unaugmented_and_complete() -> None:
    x, y = numbered(45)
    pipe = BatchPipeline(x, y, batch_size=20, augment=True)
    batches = list(pipe.sequential())
    assert [len(b[1]) for b in batches] == [20, 20, 5]
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(45))
    assert torch.allclose(torch.cat([b[0] for b in batches]), naive_normalize(x), atol=1e-5)


def test_random_batches_are_endless_and_leave_other_streams_alone() -> None:
    x, y = numbered(30)
    pipe = BatchPipeline(x, y, batch_size=7, augment=True)
    epoch_gen = gen(100)
    epoch_state = epoch_gen.get_state()
    global_state = torch.get_rng_state()
    stream = pipe.random_batches(gen(5))
    got = list(itertools.islice(stream, 3 * len(pipe) + 2))  # past several epochs' worth
    assert len(got) == 3 * len(pipe) + 2 and all(len(b[1]) == 7 for b in got)
    assert next(stream)[0].shape == (7, 3, 32, 32)
    assert torch.equal(epoch_gen.get_state(), epoch_state)
    assert torch.equal(torch.get_rng_state(), global_state)
    # The epoch stream is what it would have been without the random batches.
    fresh = BatchPipeline(x, y, batch_size=7, augment=True)
    after = list(pipe.epoch(epoch_gen))
    before = list(fresh.epoch(gen(100)))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(after, before, strict=True))
    # The stream itself is seeded, and samples without replacement within each pass.
    again = list(itertools.islice(pipe.random_batches(gen(5)), 4))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(again, got[:4], strict=True))
    first_pass = torch.cat([b[1] for b in got[: len(pipe)]]).tolist()
    assert len(set(first_pass)) == len(first_pass)


@pytest.mark.parametrize("batch_size", [0, 31])
def test_batch_size_is_validated(batch_size: int) -> None:
    x, y = numbered(30)
    with pytest.raises(ValueError, match=rf"batch_size {batch_size} .*30"):
        BatchPipeline(x, y, batch_size=batch_size, augment=False)


def test_pipeline_rejects_mismatched_inputs() -> None:
    x, y = numbered(30)
    with pytest.raises(ValueError, match="labels"):
        BatchPipeline(x, y[:-1], batch_size=4, augment=False)
    with pytest.raises(ValueError, match="uint8"):
        BatchPipeline(x.float(), y, batch_size=4, augment=False)
    with pytest.raises(ValueError, match="CPU"):
        next(BatchPipeline(x, y, batch_size=4, augment=False).epoch(None))  # type: ignore[arg-type]


def test_held_out_batch_is_never_in_the_range_test_stream() -> None:
    # 300 images in batches of 50 (the smoke spec): a plain random stream starts its second
    # pass after 6 batches and would train on the held-out images from then on
    x, y = numbered(300)
    pipe = BatchPipeline(x, y, batch_size=50, augment=True)
    (held_x, held_y), stream = pipe.held_out_and_stream(gen(3))
    held = set(held_y.tolist())
    assert len(held) == 50
    assert torch.allclose(held_x, naive_normalize(x[held_y]), atol=1e-5)  # not augmented
    seen: list[int] = []
    for _, labels in itertools.islice(stream, 5 * 6):  # five passes over the other 250
        assert len(labels) == 50
        seen += labels.tolist()
    assert not held & set(seen)
    assert set(seen) == set(range(300)) - held
    first_pass = seen[:250]
    assert len(set(first_pass)) == 250  # without replacement within a pass
    # seeded: the same generator seed gives the same held-out batch and stream
    (again_x, _), again = pipe.held_out_and_stream(gen(3))
    assert torch.equal(again_x, held_x)
    assert torch.equal(next(again)[0], next(pipe.held_out_and_stream(gen(3))[1])[0])


def test_held_out_split_needs_two_batches() -> None:
    x, y = numbered(30)
    with pytest.raises(ValueError, match="held-out batch"):
        BatchPipeline(x, y, batch_size=16, augment=False).held_out_and_stream(gen(0))
