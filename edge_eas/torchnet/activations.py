"""The activation registry (`edge_eas.net.activations`) as torch modules."""

from __future__ import annotations

from torch import nn

from edge_eas.net.activations import activation


def torch_activation(name: str) -> nn.Module:
    """A new torch module for activation `name` (ValueError for an unknown one)."""
    return getattr(nn, activation(name).torch)()
