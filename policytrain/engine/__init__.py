"""OneReward fill-policy RL engine (plain Python; never imports Django, Celery or app code).

Modules: ``config`` (RLConfig, GenerateConfig), ``tiny`` (test-scale FLUX.1-Fill builder),
``pipeline`` (FillPolicy over diffusers' FluxFillPipeline helpers, conditions folder reading),
``onestep`` (no-grad rollout + one grad step + x0 + decode), ``rl`` (Algorithms 1 and 2),
``generate`` (candidate generation job). Heavy imports happen in the submodules.
"""

from .config import GenerateConfig, RLConfig

__all__ = ["GenerateConfig", "RLConfig"]
