"""EfficientNet-Lite0 (ImageNet-pretrained) as the teacher of mvp-smol's vision tower.

Its last feature map is average-pooled over the image regions that the student's merged visual
tokens cover, so each student token has a teacher vector for exactly the pixels it sees.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mvp.model.weights import EFFICIENTNET_LITE0, WeightsError

FEATURE_DIM = 1280


class Teacher:
    def __init__(self) -> None:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise WeightsError(
                "efficientnet-lite-pytorch is not installed; "
                "install it with `pip install efficientnet-lite-pytorch==0.1.0`"
            ) from exc
        weights = EFFICIENTNET_LITE0.path()
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = net.eval()

    @torch.no_grad()
    def features(self, frames: list[np.ndarray], grid: tuple[int, int], scale: int = 2) -> torch.Tensor:
        """(len(frames), grid_h * grid_w, 1280) region features of RGB uint8 frames resized to
        ``scale`` times the student's input size (grid * 56 px), in row-major token order."""
        gh, gw = grid
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(gh * 56 * scale, gw * 56 * scale), mode="bilinear", antialias=True)
        fmap = self.net.extract_features((x - 127.0) / 128.0)
        pooled = F.adaptive_avg_pool2d(fmap, (gh, gw))
        return pooled.flatten(2).transpose(1, 2)
