# Copyright (c) mmdetr contributors. All rights reserved.
import math

import pytest
import torch

from mmdetr.models import LearnedPositionalEncoding, SinePositionalEncoding


def formula(row, col, valid_h, valid_w, num_feats, temperature=10000,
            normalize=True, scale=2 * math.pi, eps=1e-6, offset=0.):
    """The paper's encoding of one pixel (0-based row/col), written out."""
    y, x = row + 1., col + 1.
    if normalize:
        y = (y + offset) / (valid_h + eps) * scale
        x = (x + offset) / (valid_w + eps) * scale
    out = []
    for pos in (y, x):
        for i in range(num_feats):
            t = temperature**(2 * (i // 2) / num_feats)
            out.append(math.sin(pos / t) if i % 2 == 0 else math.cos(pos / t))
    return torch.tensor(out)


@pytest.mark.parametrize('normalize,offset', [(True, 0.), (False, 0.),
                                              (True, -0.5)])
def test_sine_encoding_matches_formula(normalize, offset):
    num_feats, h, w = 8, 5, 7
    pe = SinePositionalEncoding(num_feats, normalize=normalize, offset=offset)
    out = pe(torch.zeros(1, h, w, dtype=torch.bool))
    assert out.shape == (1, 2 * num_feats, h, w)
    for r, c in [(0, 0), (2, 3), (4, 6)]:
        expected = formula(r, c, h, w, num_feats, normalize=normalize,
                           offset=offset)
        torch.testing.assert_close(out[0, :, r, c], expected, atol=1e-5,
                                   rtol=1e-5)


def test_sine_encoding_unaffected_by_padding():
    """An image padded into a larger batch keeps its own encoding."""
    pe = SinePositionalEncoding(16, normalize=True)
    alone = pe(torch.zeros(1, 4, 6, dtype=torch.bool))
    mask = torch.ones(1, 9, 11, dtype=torch.bool)
    mask[:, :4, :6] = False
    padded = pe(mask)
    torch.testing.assert_close(padded[:, :, :4, :6], alone)


def test_learned_encoding_rows_and_cols():
    pe = LearnedPositionalEncoding(4, row_num_embed=10, col_num_embed=12)
    pe.init_weights()
    out = pe(torch.zeros(2, 3, 5, dtype=torch.bool))
    assert out.shape == (2, 8, 3, 5)
    torch.testing.assert_close(out[1, :4, 2, 4], pe.col_embed.weight[4])
    torch.testing.assert_close(out[0, 4:, 2, 4], pe.row_embed.weight[2])


def test_learned_encoding_too_large_map_names_the_option():
    pe = LearnedPositionalEncoding(4, row_num_embed=3, col_num_embed=3)
    with pytest.raises(ValueError, match='row_num_embed'):
        pe(torch.zeros(1, 4, 2, dtype=torch.bool))
