"""Lets torchvision import where its compiled ops cannot load (CPU-only torch beside PyPI's
CUDA-linked torchvision wheel), so vLLM's Qwen2.5-VL path can use torchvision's pure-Python image
transforms. Put on PYTHONPATH only for the vLLM server `mvp serve` launches; see docs/inference.md.

torchvision 0.28 registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms``
unconditionally, which fails with "operator torchvision::nms does not exist" when ``_C.so`` did not
load. When (and only when) it does not load, this defines the two operator schemas so those
registrations succeed; calling the ops still fails loudly (they have no CPU kernel), and nothing on
the Video LLM path calls them.
"""

import importlib.util
import os

_spec = importlib.util.find_spec("torchvision")
if _spec is not None and _spec.submodule_search_locations:
    import torch

    try:
        torch.ops.load_library(os.path.join(next(iter(_spec.submodule_search_locations)), "_C.so"))
    except (OSError, RuntimeError):
        _LIB = torch.library.Library("torchvision", "DEF")  # kept alive for the process
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
