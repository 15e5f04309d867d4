"""ConvStack3DFFNModel has the structure of google/ffn's ffn/training/models/convstack_3d.py."""

from __future__ import annotations

import torch

from ffnops.ffn.model import ConvStack3DFFNModel


def test_depth_12_has_the_reference_parameter_count() -> None:
    model = ConvStack3DFFNModel(depth=12, features=32)
    assert sum(p.numel() for p in model.parameters()) == 638_433  # as in Google's checkpoint


def test_forward_adds_the_update_to_the_seed() -> None:
    torch.manual_seed(0)
    model = ConvStack3DFFNModel(fov_size=9, deltas=2, depth=2, features=4)
    image, seed = torch.randn(2, 1, 9, 9, 9), torch.randn(2, 1, 9, 9, 9)
    logits = model(torch.cat([image, seed], 1))
    assert logits.shape == (2, 1, 9, 9, 9)
    with torch.no_grad():
        model.conv_lom.weight.zero_()
        model.conv_lom.bias.fill_(0.5)
    torch.testing.assert_close(model(torch.cat([image, seed], 1)), seed + 0.5)
