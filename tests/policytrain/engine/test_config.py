import math

import pytest

from policytrain.engine.config import GenerateConfig, RLConfig

BASE = {"base_policy": "b", "conditions_dir": "c", "output_dir": "o"}


def test_defaults_round_trip():
    cfg = RLConfig(**BASE)
    assert cfg.task_probs == {"fill": 0.5, "extend": 0.25, "removal": 0.25}
    assert RLConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithm": 3}, "algorithm must be 1 or 2"),
        ({"task_probs": {"fill": 0.5, "extend": 0.2}}, "must sum to 1"),
        ({"task_probs": {"inpaint": 1.0}}, "unknown task 'inpaint'"),
        ({"hinge_lambda": 1.5}, "hinge_lambda"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"t_range": (0.8, 0.2)}, "t_range"),
        ({"resolution": 100}, "multiple of 16"),
        ({"reward": "score"}, "reward must be"),
        ({"mixed_precision": "fp16"}, "mixed_precision"),
        ({"deploy_weights": "best"}, "deploy_weights"),
        ({"batch_size": 0}, "batch_size"),
        ({"reference_true_cfg": 0.5}, "reference_true_cfg"),
        ({"kl_weight": -0.1}, "kl_weight must be >= 0"),
        ({"criterion_weights": {"inpaint": {"structure": 2}}}, "criterion_weights: unknown task 'inpaint'"),
        ({"criterion_weights": {"removal": {"structure": 2}}}, r"criterion_weights\['removal'\]: unknown criterion"),
        ({"criterion_weights": {"fill": {"structure": -1}}}, "must be a finite number >= 0"),
        ({"criterion_weights": {"fill": {"structure": float("nan")}}}, "must be a finite number >= 0"),
        ({"criterion_weights": {"fill": {"structure": True}}}, "must be a finite number >= 0"),
        ({"criterion_weights": {"fill": 2}}, r"criterion_weights\['fill'\] must be a dict"),
        ({"criterion_weights": {"removal": {"removal_quality": 0}}}, "every weight is 0"),
    ],
)
def test_validation_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**BASE, **changes)


def test_criterion_weights_default_to_one_and_round_trip():
    cfg = RLConfig(**BASE, criterion_weights={"extend": {"structure": 3, "aesthetics": 0}})
    assert cfg.criterion_weight("extend", "structure") == 3.0
    assert cfg.criterion_weight("extend", "aesthetics") == 0.0
    assert cfg.criterion_weight("extend", "consistency") == 1.0
    assert cfg.criterion_weight("fill", "structure") == 1.0
    assert RLConfig.from_dict(cfg.to_dict()) == cfg


def test_scored_criteria_keep_active_tasks_and_positive_weights():
    cfg = RLConfig(**BASE, task_probs={"fill": 0.5, "extend": 0.5, "removal": 0.0},
                   criterion_weights={"extend": {"structure": 0}})
    assert cfg.active_tasks == ["fill", "extend"]
    covered = {"fill": ["structure", "aesthetics"], "extend": ["structure"], "removal": ["removal_quality"]}
    assert cfg.scored_criteria(covered) == {"fill": ["structure", "aesthetics"], "extend": []}


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="unknown RLConfig field"):
        RLConfig.from_dict({**BASE, "lamda": 0.5})


def test_log_odds_ceiling_is_logit_of_lambda():
    cfg = RLConfig(**BASE, reward="log_odds", hinge_lambda=0.9)
    assert math.isclose(cfg.hinge_ceiling, math.log(9.0))
    assert RLConfig(**BASE).hinge_ceiling == 0.9


def test_generate_config_needs_a_model():
    with pytest.raises(ValueError, match="base_policy"):
        GenerateConfig(conditions_dir="c", out_dir="o")


@pytest.mark.parametrize(("allowed", "expected"), [(False, False), (True, True)])
def test_cudnn_attention_follows_the_config_on_cuda_only(allowed, expected):
    import torch

    from policytrain.engine.rl import configure_attention_kernels

    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(not expected)
        configure_attention_kernels(RLConfig(**BASE, cudnn_attention=allowed), torch.device("cpu"))
        assert torch.backends.cuda.cudnn_sdp_enabled() is (not expected)  # CPU runs leave it alone
        configure_attention_kernels(RLConfig(**BASE, cudnn_attention=allowed), torch.device("cuda"))
        assert torch.backends.cuda.cudnn_sdp_enabled() is expected
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
