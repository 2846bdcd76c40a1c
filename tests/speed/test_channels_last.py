# Copyright (c) mmdetr contributors. All rights reserved.
"""The ChannelsLast speed-up: the backbone's weights and input in the
channels-last memory format, the same outputs."""
import torch

from helpers import build_mmdetr, make_batch, mmdetr_cfg, preprocess


def test_backbone_runs_channels_last_through_init_and_loading():
    torch.manual_seed(0)
    model = build_mmdetr()  # built and initialised as a runner does
    weight = model.backbone.layer2[0].conv2.weight  # a 3x3 convolution
    assert weight.is_contiguous(memory_format=torch.channels_last)
    model.load_state_dict(model.state_dict())
    assert weight.is_contiguous(memory_format=torch.channels_last)
    feat = model.extract_feat(torch.randn(1, 3, 64, 96))[0]
    assert feat.is_contiguous(memory_format=torch.channels_last)

    plain = build_mmdetr(
        mmdetr_cfg(speedups=[dict(type='FrozenBatchNorms')]))
    assert not plain.backbone.layer2[0].conv2.weight.is_contiguous(
        memory_format=torch.channels_last)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    model.eval()
    data = make_batch(num_boxes=(1, 2))
    with torch.no_grad():
        ours = model(**preprocess(model, data, False), mode='tensor')
        ref = plain(**preprocess(plain, data, False), mode='tensor')
    torch.testing.assert_close(ours[0][-1], ref[0][-1], rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(ours[1][-1], ref[1][-1], rtol=1e-5,
                               atol=1e-5)
