"""VoVNet (Lee et al., CVPRW 2019): one-shot aggregation, each block concatenates its
layers' outputs once instead of DenseNet's concatenation at every layer."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, pooled_classifier
from deploylens.zoo.registry import Published, register


class OSAModule(nn.Module):
    def __init__(self, c_in: int, stage: int, concat: int, layers: int, identity: bool):
        super().__init__()
        self.identity = identity
        self.layers = nn.ModuleList(ConvBnAct(c_in if i == 0 else stage, stage, 3) for i in range(layers))
        self.concat = ConvBnAct(c_in + layers * stage, concat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        y = self.concat(torch.cat(outputs, dim=1))  # aggregated once, at the end
        return y + x if self.identity else y


class VoVNet(ClassifierNet):
    def __init__(self, stage_channels: tuple[int, ...], concat_channels: tuple[int, ...],
                 blocks_per_stage: tuple[int, ...], layers_per_block: int = 5, num_classes: int = 1000):
        stem = nn.Sequential(ConvBnAct(3, 64, 3, 2), ConvBnAct(64, 64, 3), ConvBnAct(64, 128, 3, 2))
        stages, c_in = [], 128
        for index, (stage, concat, blocks) in enumerate(zip(stage_channels, concat_channels, blocks_per_stage)):
            modules: list[nn.Module] = [nn.MaxPool2d(3, 2, ceil_mode=True)] if index > 0 else []
            for b in range(blocks):
                modules.append(OSAModule(c_in, stage, concat, layers_per_block, identity=b > 0))
                c_in = concat
            stages.append(nn.Sequential(*modules))
        super().__init__(stem, nn.Sequential(*stages), pooled_classifier(nn.Linear(c_in, num_classes)))


# Layout of the authors' co-repository (stigma0617/VoVNet.pytorch). The only verified
# parameter figures are a reimplementation's backbone counts (classifier excluded); no
# MAC figure was found that matches this layout, so none is claimed.
_PARAMS = "params: gau-nernst vision-toolbox reimplementation (backbone, classifier excluded)"
_AUTHORS = "top-1: stigma0617/VoVNet.pytorch README"
_VARIANTS = {
    "vovnet27_slim": ((64, 80, 96, 112), (128, 256, 384, 512), (1, 1, 1, 1), "3.01M", 71.6,
                      "top-1: same reimplementation"),
    "vovnet39": ((128, 160, 192, 224), (256, 512, 768, 1024), (1, 1, 2, 2), "21.58M", 76.77, _AUTHORS),
    "vovnet57": ((128, 160, 192, 224), (256, 512, 768, 1024), (1, 1, 4, 3), "35.62M", 77.73, _AUTHORS),
}
for _name, (_stage, _concat, _blocks, _params, _top1, _top1_source) in _VARIANTS.items():
    register(_name, family="vovnet", published=Published(_params, None, "no verified figure", _top1,
                                                         f"{_PARAMS}; {_top1_source}", params_counts="backbone"))(
        lambda stage=_stage, concat=_concat, blocks=_blocks: VoVNet(stage, concat, blocks))
