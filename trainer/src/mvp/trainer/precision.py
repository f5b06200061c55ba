"""Whether bf16 autocast pays on a device. On a CPU without bf16 kernels (oneDNN's, which need
AVX-512 or AMX; an AVX2-only EPYC has none) every bf16 matmul is emulated: measured on such a
machine, a 512x576 @ 576x1536 matmul took 820 ms in bf16 against 16 ms in fp32, and the learning
proof's warm start was unfinished after 55 minutes where a machine with them took 21. bf16 is then
the slow setting."""

from __future__ import annotations

import torch


def fast_bf16(device: str) -> bool:
    """True where bf16 autocast is faster than fp32: a CUDA GPU that supports bf16, or a CPU whose
    oneDNN has bf16 kernels (PyTorch's own check)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False
