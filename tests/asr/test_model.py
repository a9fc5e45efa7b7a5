"""CTCModel shapes, padding behaviour and greedy CTC decoding."""

from __future__ import annotations

import pytest
import torch

from speech_repro.asr.model import CTCModel, ModelConfig, greedy_decode

TINY = ModelConfig(n_mels=8, vocab_size=5, conv_channels=12, rnn_hidden=8, rnn_layers=2)


def _model(config=TINY):
    torch.manual_seed(0)
    return CTCModel(config).eval()


def _padded(*lengths, n_mels=8):
    g = torch.Generator().manual_seed(1)
    utts = [torch.randn(n, n_mels, generator=g) for n in lengths]
    features = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    return utts, features, torch.tensor(lengths)


@pytest.mark.parametrize("kernel,stride", [(5, 2), (3, 1), (4, 2), (5, 3)])
def test_output_lengths_match_the_convolution(kernel, stride):
    config = ModelConfig(n_mels=8, conv_channels=4, conv_kernel=kernel, stride=stride)
    model = CTCModel(config)
    lengths = torch.tensor([1, 2, 7, 8, 33])
    conv = model.subsample
    for n, out in zip(lengths.tolist(), model.output_lengths(lengths).tolist(), strict=True):
        assert conv(torch.zeros(1, 8, n)).shape[-1] == out


def test_forward_shapes_and_log_probabilities():
    model = _model()
    _, features, lengths = _padded(11, 20, 5)
    with torch.no_grad():
        log_probs, out_lengths = model(features, lengths)
    assert out_lengths.tolist() == [6, 10, 3]
    assert log_probs.shape == (3, 10, TINY.vocab_size)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 10), atol=1e-5)
    # pad_packed_sequence leaves zeros past each length; log_softmax turns them into a uniform row
    assert torch.allclose(log_probs[2, 3:], log_probs[2, 3:4].expand(7, -1))


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    model = _model(ModelConfig(**{**TINY.to_dict(), "dropout": 0.5}))
    _, features, lengths = _padded(12, 9)
    with torch.no_grad():
        a, _ = model(features, lengths)
        b, _ = model(features, lengths)
        assert torch.equal(a, b)
        model.train()
        c, _ = model(features, lengths)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("conv_kernel", [1, TINY.conv_kernel])
def test_an_utterance_decodes_the_same_alone_or_in_a_padded_batch(conv_kernel):
    # Kernel 1: only the packed GRU could mix padding into real frames. The default kernel also
    # checks that padding frames read as zeros between the two convolutions.
    model = _model(ModelConfig(**{**TINY.to_dict(), "conv_kernel": conv_kernel}))
    utts, features, lengths = _padded(11, 20)
    with torch.no_grad():
        alone, n = model(utts[0][None], lengths[:1])
        batched, _ = model(features, lengths)
    assert torch.allclose(alone[0], batched[0, : int(n)], atol=1e-6)


def test_gradients_reach_every_parameter_through_ctc_loss():
    model = _model()
    model.train()
    _, features, lengths = _padded(11, 20)
    log_probs, out_lengths = model(features, lengths)
    targets = torch.tensor([1, 2, 3, 1])
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([2, 2]), blank=0
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _one_hot_log_probs(paths, vocab=4):
    t = max(len(p) for p in paths)
    lp = torch.full((len(paths), t, vocab), -10.0)
    for b, path in enumerate(paths):
        for i, s in enumerate(path):
            lp[b, i, s] = 0.0
    return lp


def test_greedy_decode_merges_repeats_and_drops_blanks():
    lp = _one_hot_log_probs([[1, 1, 0, 1, 2, 2, 0], [0, 0, 3, 3, 3, 0, 0], [2, 0, 2, 0, 2]])
    assert greedy_decode(lp, torch.tensor([7, 7, 5])) == [[1, 1, 2], [3], [2, 2, 2]]


def test_greedy_decode_respects_lengths():
    lp = _one_hot_log_probs([[1, 2, 3, 3], [3, 1, 2, 1]])
    assert greedy_decode(lp, torch.tensor([2, 0])) == [[1, 2], []]
    assert greedy_decode(lp, torch.tensor([4, 4])) == [[1, 2, 3], [3, 1, 2, 1]]
