"""SpecAugment with an explicit generator."""

from __future__ import annotations

import torch

from speech_repro.asr.augment import SpecAugmentConfig, spec_augment

CONFIG = SpecAugmentConfig(freq_masks=2, freq_width=4, time_masks=2, time_width=10)


def _features():
    return torch.randn(60, 16, generator=torch.Generator().manual_seed(0)) + 3.0


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_masks():
    x = _features()
    assert torch.equal(spec_augment(x, CONFIG, _gen(1)), spec_augment(x, CONFIG, _gen(1)))


def test_different_seeds_give_different_masks():
    x = _features()
    outs = [spec_augment(x, CONFIG, _gen(s)) for s in range(5)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_does_not_touch_global_rng_or_input():
    x = _features()
    before = x.clone()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    out = spec_augment(x, CONFIG, _gen(1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(x, before)
    assert out is not x


def test_p_zero_returns_input_unchanged():
    x = _features()
    out = spec_augment(x, SpecAugmentConfig(p=0.0), _gen(1))
    assert torch.equal(out, x)


def test_masked_values_equal_the_utterance_mean():
    x = _features()
    mean = x.mean()
    found_mask = False
    for seed in range(10):
        out = spec_augment(x, CONFIG, _gen(seed))
        changed = out != x
        if changed.any():
            found_mask = True
            assert torch.all(out[changed] == mean)
        # Masks are whole bands: every changed entry lies on a fully masked row or column.
        rows = (out == mean).all(dim=1)
        cols = (out == mean).all(dim=0)
        assert torch.all(changed <= (rows[:, None] | cols[None, :]))
    assert found_mask


def test_mask_widths_are_bounded():
    x = _features()
    config = SpecAugmentConfig(freq_masks=1, freq_width=3, time_masks=1, time_width=100)
    for seed in range(30):
        out = spec_augment(x, config, _gen(seed))
        mean = x.mean()
        assert int((out == mean).all(dim=0).sum()) <= 3
        assert int((out == mean).all(dim=1).sum()) <= 60 // 5  # time width capped at frames // 5


def test_zero_masks_is_identity_copy():
    x = _features()
    config = SpecAugmentConfig(freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(x, config, _gen(0)), x)
