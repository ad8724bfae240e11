"""Where training and prediction run: CUDA with bf16 autocast when there is a GPU, else CPU."""

from __future__ import annotations

import torch

from cpfd.errors import CpfdError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CpfdError("train.device is 'cuda' but no GPU is visible")
    return torch.device(name)


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
