import torch

from search.transforms import (
    Augmentation,
    Cutout,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    Resize,
    eval_transform,
    train_transform,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_crop_returns_a_window_of_the_zero_padded_image_and_visits_every_offset():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    batch = image.repeat(200, 1, 1, 1)
    out = RandomCrop(size=2, padding=1)(batch, _gen())
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))[0, 0]
    windows = {(top, left): padded[top:top + 2, left:left + 2] for top in range(3) for left in range(3)}
    seen = set()
    for crop in out[:, 0]:
        match = [k for k, win in windows.items() if torch.equal(win, crop)]
        assert match, f"{crop} is not a window of the padded image"
        seen.update(match)
    assert seen == set(windows)


def test_random_crop_keeps_channels_together():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = RandomCrop(size=4, padding=2)(x, _gen(3))
    # The same offset applies to all channels of an image: channel c is channel 0 plus c*16 wherever not padding.
    for n in range(2):
        inside = out[n, 0] != 0
        assert torch.equal(out[n, 1][inside], out[n, 0][inside] + 16)
        assert torch.equal(out[n, 2][inside], out[n, 0][inside] + 32)


def test_flip_always_and_never():
    x = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3).repeat(4, 1, 1, 1)
    assert torch.equal(HorizontalFlip(p=1.0)(x, _gen()), x.flip(3))
    assert torch.equal(HorizontalFlip(p=0.0)(x, _gen()), x)


def test_flip_half_the_time_on_average():
    x = torch.arange(2, dtype=torch.float32).reshape(1, 1, 1, 2).repeat(4000, 1, 1, 1)
    flipped = (HorizontalFlip(0.5)(x, _gen())[:, 0, 0, 0] == 1).float().mean().item()
    assert 0.45 < flipped < 0.55


def test_cutout_zeroes_a_clipped_square_between_quarter_and_full_size():
    x = torch.ones(500, 1, 32, 32)
    out = Cutout(16)(x, _gen())
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.min().item() >= 64  # a corner centre still covers 8 x 8
    assert zeros.max().item() == 256
    # The zeroed pixels of each image form an axis-aligned rectangle.
    for img in out[:20, 0]:
        rows = (img == 0).any(dim=1).nonzero().flatten()
        cols = (img == 0).any(dim=0).nonzero().flatten()
        assert (img[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()
        assert (img == 0).sum() == len(rows) * len(cols)


def test_cutout_larger_than_image_blanks_it():
    assert (Cutout(4)(torch.ones(3, 2, 1, 1), _gen()) == 0).all()


def test_normalize_hand_computed():
    x = torch.tensor([0.5, 1.0]).reshape(1, 2, 1, 1)
    out = Normalize((0.5, 0.0), (0.25, 2.0))(x)
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.5]))


def test_resize_keeps_constant_images_constant_and_skips_same_size():
    x = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(Resize(32)(x), torch.full((2, 3, 32, 32), 0.3))
    assert Resize(8)(x) is x


def test_train_transform_is_reproducible_with_a_seed_and_shapes_match():
    x = torch.rand(16, 3, 32, 32, generator=_gen(1))
    t = train_transform(32, (0.5,) * 3, (0.25,) * 3, Augmentation())
    a, b = t(x, _gen(7)), t(x, _gen(7))
    assert a.shape == (16, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, t(x, _gen(8)))


def test_eval_transform_is_deterministic_normalisation():
    x = torch.rand(2, 1, 8, 8, generator=_gen(1))
    out = eval_transform(8, (0.5,), (0.5,))(x, _gen())
    assert torch.allclose(out, (x - 0.5) / 0.5)
