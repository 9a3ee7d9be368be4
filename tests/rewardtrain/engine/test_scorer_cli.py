"""Scorer (batched and differentiable) and the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from rewardtrain.engine.scorer import RewardScorer, ScoreRequest

pytestmark = pytest.mark.slow  # CLI subprocesses that load torch: the full suite runs it, `make check` does not

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return RewardScorer.from_pretrained(tiny_model_dir)


def _to_pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray((t.detach().permute(1, 2, 0) * 255).round().byte().numpy())


def test_differentiable_matches_score_and_reaches_pixels(scorer):
    g = torch.Generator().manual_seed(0)
    # uint8-representable pixels, so the PIL path sees exactly the same values.
    first = (torch.randint(0, 256, (2, 3, 112, 112), generator=g).float() / 255).requires_grad_(True)
    second = torch.randint(0, 256, (2, 3, 112, 112), generator=g).float() / 255
    prompts = ["a red circle", "blue square on the sea"]
    p = scorer.differentiable(first, second, "fill", "text_alignment", prompts)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    p.sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(not q.requires_grad for q in scorer.model.parameters())
    reference = scorer.score(
        [ScoreRequest(_to_pil(first[i]), _to_pil(second[i]), "fill", "text_alignment", prompts[i]) for i in range(2)]
    )
    assert torch.allclose(p.detach(), torch.tensor([r.p_yes for r in reference]), atol=1e-4)
    log_odds = scorer.differentiable(first, second, "fill", "text_alignment", prompts, return_log_odds=True)
    assert torch.allclose(torch.sigmoid(log_odds), p, atol=1e-6)


def test_differentiable_resizes_to_the_training_budget(scorer):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    p = scorer.differentiable(x, torch.rand(1, 3, 64, 64), "removal", "removal_quality")
    p.sum().backward()
    assert x.grad.abs().sum() > 0
    ref = scorer.score([ScoreRequest(_to_pil(x[0]), _to_pil(torch.rand(3, 64, 64) * 0), "removal", "removal_quality")])
    assert 0 < ref[0].p_yes < 1


def test_batched_score_equals_one_at_a_time(scorer, snapshot_dir):
    rows = [json.loads(x) for x in (snapshot_dir / "pairs.jsonl").read_text().splitlines()][:5]
    reqs = [ScoreRequest(snapshot_dir / r["winner"], snapshot_dir / r["loser"], r["task"], r["criterion"], r["prompt"])
            for r in rows]
    batched = scorer.score(reqs, batch_size=5)
    single = [scorer.score([r])[0] for r in reqs]
    assert all(abs(a.p_yes - b.p_yes) < 1e-5 for a, b in zip(batched, single, strict=True))


def _cli(*args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rewardtrain.engine", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_input_exits_2_with_one_line(tmp_path, tiny_model_dir):
    missing = _cli("evaluate", "--model", str(tmp_path / "none"), "--snapshot", str(tmp_path))
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error:") and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_cfg = tmp_path / "cfg.json"
    bad_cfg.write_text(json.dumps({"base_model": str(tiny_model_dir), "snapshot_dir": "x", "output_dir": "y"}))
    bad = _cli("train", "--config", str(bad_cfg), "--set", "lr=-1", "--quiet")
    assert bad.returncode == 2 and "lr must be > 0" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_build_tiny_and_score(tmp_path, snapshot_dir):
    built = _cli("build-tiny", str(tmp_path / "m"))
    assert built.returncode == 0, built.stderr
    rows = [json.loads(x) for x in (snapshot_dir / "pairs.jsonl").read_text().splitlines()][:3]
    pairs = snapshot_dir / "score_pairs.jsonl"
    pairs.write_text("".join(json.dumps({"first": r["winner"], "second": r["loser"], "task": r["task"],
                                         "criterion": r["criterion"], "prompt": r["prompt"]}) + "\n" for r in rows))
    scored = _cli("score", "--model", str(tmp_path / "m"), "--pairs", str(pairs))
    assert scored.returncode == 0, scored.stderr
    out = [json.loads(x) for x in scored.stdout.splitlines()]
    assert len(out) == 3 and all(0 < o["p_yes"] < 1 for o in out)
