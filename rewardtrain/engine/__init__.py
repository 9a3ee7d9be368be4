"""OneReward vision-language reward model engine (plain Python; never imports Django).

Modules: `config` (run configuration), `template` (the versioned query, worded from a
`contracts.vocabulary` vocabulary), `processor`
(torchvision-free Qwen2.5-VL processor), `tiny` (test-scale model builder), `model` (loading +
LoRA), `data` (snapshot reading and batching), `loss` (paper Eq. 3), `train`, `evaluate` and
`scorer` (batched and differentiable P(Yes)). Heavy imports (torch, transformers) happen in the
submodules, so importing this package is cheap.
"""

from .template import TEMPLATE_VERSION

__all__ = ["TEMPLATE_VERSION"]
