"""What RL sees of the reward model (issue #22 item 5): its oracle accuracy on the pairs RL scores
and how well its pixel gradient points where the oracle's does.

RL (``policytrain.engine.recipe.RLRecipe.step``) scores ONE kind of pair: the policy's one-step x0
image (no-grad denoise to a step k ~ U{⌈t1·N⌉ .. ⌊t2·N⌋} of ``policy_steps``, one velocity,
x0 = x_k − σ_k·v, decode) first, against a reference image (a full no-grad denoise with
``reference_steps``) second, both pasted back onto the source outside the mask. Algorithm 1's
reference is the base policy; Algorithm 2's is the EMA of the policy, which starts as the base.
These diagnostics are taken at the base policy, where both algorithms start, so one measurement
serves both; the loss is a hinge on reward(x0, reference), whose pixel gradient with respect to
x0 is what moves the policy.

- ``one_step_judged``: the reward model's agreement with the oracle on those pairs (oracle margin
  above the tie threshold, ``one_step_rows``), judged like every other oracle accuracy of the
  demo: correct when r(better, worse) > r(worse, better) (½ on an exact tie), scored through the
  tensor path RL uses (``RewardScorer.differentiable``, float images, no 8-bit rounding).
- ``gradient_cosines``: per (condition, criterion) the cosine between the reward model's gradient
  ∇ₓ r(x, reference) (exact, autograd) and the oracle's ∇ₓ oracle(x) at x = the one-step x0, both
  restricted to the edit region (paste-back sends no gradient elsewhere). The oracles are numpy and
  partly thresholded, so their gradient is estimated by central differences (``oracle_gradient_cosine``
  says how and with what error) on the oracle exactly as defined, never on an approximation of it.

Plain Python with numpy at import; torch and the engines are imported inside the functions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np

from core.stats import t_quantile_975
from synthetic import oracles
from synthetic.candidate_fills import _condition_tensors
from synthetic.oracle_metrics import oracle_accuracy_intervals, oracle_accuracy_table
from synthetic.scenes import Condition

#: ``oracle(condition, image HxWx3 float in [0, 1], criterion) -> score or None`` (``oracles.score``).
Oracle = Callable[[Condition, np.ndarray, str], float | None]
#: The RL settings that shape the pairs RL scores (``policytrain.engine.config.RLConfig`` fields).
RL_PAIR_FIELDS = ("t_range", "reference_steps", "policy_steps", "guidance", "reference_true_cfg",
                  "negative_prompt", "max_sequence_length", "paste_back")


@dataclass(frozen=True)
class DiagnosticSizes:
    """How much the diagnostics measure.

    ``accuracy_conditions_per_task``: conditions per task whose (x0, reference) pair is judged per
    criterion (issue #22 asks ≥ 200 per task for RL evaluation). ``gradient_conditions_per_task``:
    the first that many of them also get a gradient cosine (the oracle's finite differences cost
    2 + 2·``directions`` oracle calls per criterion). ``step_levels``: the finite-difference step
    as an RMS change of the edit region's values, in 8-bit levels.
    """

    accuracy_conditions_per_task: int
    gradient_conditions_per_task: int
    directions: int = 8
    step_levels: float = 1.0
    threshold: float = 0.03
    batch_size: int = 16


@dataclass
class OneStepPair:
    """One condition's RL pair: the policy's one-step x0 and the reference, [3, H, W] in [0, 1]."""

    condition: Condition
    policy_image: Any  # torch.Tensor, pasted back when RL pastes back
    reference_image: Any
    k: int


def rl_pair_settings(rl: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``RL_PAIR_FIELDS`` a run with the overrides ``rl`` uses: ``RLConfig``'s
    defaults under the demo config's ``rl`` section (the platform passes it as overrides)."""
    from policytrain.engine.config import RLConfig

    defaults = {f.name: f.default for f in fields(RLConfig) if f.default is not MISSING}
    return {name: rl.get(name, defaults[name]) for name in RL_PAIR_FIELDS}


def one_step_pairs(policy, conditions: Sequence[Condition], rl: dict[str, Any], seed: int,
                   batch_size: int = 16) -> list[OneStepPair]:
    """RL's pair for every condition, made as ``RLRecipe.step`` makes it with ``policy`` as both the
    policy and the reference (the base, where both algorithms start).

    Each condition draws its own k from RL's distribution (``sample_grad_step``); conditions that
    drew the same k share a batch, since a one-step call takes one k. Seeded: the same call gives
    the same pairs.
    """
    import torch

    from policytrain.engine.onestep import one_step_images, sample_grad_step
    from policytrain.engine.pipeline import paste_back_source, policy_prompt

    s = rl_pair_settings(rl)
    gen = torch.Generator("cpu").manual_seed(seed)
    ks = [sample_grad_step(gen, int(s["policy_steps"]), tuple(s["t_range"])) for _ in conditions]
    by_k: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(ks):
        by_k[k].append(i)
    out: dict[int, OneStepPair] = {}
    with torch.no_grad():
        for k, members in sorted(by_k.items()):
            for start in range(0, len(members), batch_size):
                idx = members[start:start + batch_size]
                chunk = [conditions[i] for i in idx]
                src, masks = _condition_tensors(chunk)
                height, width = int(src.shape[-2]), int(src.shape[-1])
                inputs = policy.prepare_inputs(src.to(policy.device), masks.to(policy.device), gen)
                embeds = policy.encode_prompts([policy_prompt(c.task, c.prompt) for c in chunk],
                                               int(s["max_sequence_length"]))
                negative = (policy.encode_prompts([s["negative_prompt"]] * len(chunk), int(s["max_sequence_length"]))
                            if float(s["reference_true_cfg"]) > 1.0 else None)
                noise_ref = policy.initial_noise(len(chunk), height, width, gen)
                noise_pol = policy.initial_noise(len(chunk), height, width, gen)
                ref_schedule = policy.schedule(int(s["reference_steps"]), height, width)
                pol_schedule = policy.schedule(int(s["policy_steps"]), height, width)
                latents = policy.denoise(noise_ref, inputs, embeds, ref_schedule, None, float(s["guidance"]),
                                         float(s["reference_true_cfg"]), negative)
                ref = policy.decode(latents, height, width)
                pol = one_step_images(policy, inputs, embeds, noise_pol, pol_schedule, k, float(s["guidance"])).images
                if s["paste_back"]:
                    ref, pol = paste_back_source(ref, src, masks), paste_back_source(pol, src, masks)
                for j, i in enumerate(idx):
                    out[i] = OneStepPair(conditions[i], pol[j].float().cpu(), ref[j].float().cpu(), k)
    return [out[i] for i in range(len(conditions))]


def _hwc(image) -> np.ndarray:
    return image.detach().permute(1, 2, 0).cpu().numpy().astype(np.float32)


def _log_odds(scorer, first, second, task: str, criteria: Sequence[str], prompts: Sequence[str]):
    """r(first, second) per row through RL's path (``RewardScorer.differentiable``, log-odds)."""
    return scorer.differentiable(first, second, task, list(criteria), list(prompts), return_log_odds=True)


def one_step_rows(pairs: Sequence[OneStepPair], threshold: float = 0.03,
                  oracle: Oracle = oracles.score) -> list[dict[str, Any]]:
    """Each (pair, criterion) whose oracle scores of x0 and the reference differ by more than
    ``threshold``: ``pair`` (its index), ``condition_id``, ``task``, ``criterion``, ``prompt``,
    ``margin``, ``k`` and ``policy_better`` (the oracle prefers x0)."""
    rows: list[dict[str, Any]] = []
    for n, pair in enumerate(pairs):
        x0, ref = _hwc(pair.policy_image), _hwc(pair.reference_image)
        for criterion in pair.condition.criteria:
            a, b = oracle(pair.condition, x0, criterion), oracle(pair.condition, ref, criterion)
            if a is None or b is None or abs(a - b) <= threshold:
                continue
            rows.append({"pair": n, "condition_id": pair.condition.id, "task": pair.condition.task,
                         "criterion": criterion, "prompt": pair.condition.prompt, "margin": abs(a - b),
                         "k": pair.k, "policy_better": a > b})
    return rows


def judge_rows(scorer, pairs: Sequence[OneStepPair], rows: Sequence[dict[str, Any]], batch_size: int = 16
               ) -> list[tuple[dict[str, Any], float]]:
    """Each of ``one_step_rows``' rows with 1 when the reward model prefers the oracle's better
    image, compared in both orders as every oracle accuracy of the demo (r(better, worse) >
    r(worse, better); ½ on an exact tie), else 0. ``oracle_metrics.oracle_accuracy_table`` and
    ``oracle_accuracy_intervals`` read the result."""
    import torch

    judged: list[tuple[dict[str, Any], float]] = []
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    with torch.no_grad():
        for task, task_rows in by_task.items():
            for start in range(0, len(task_rows), batch_size):
                chunk = task_rows[start:start + batch_size]
                pol = torch.stack([pairs[r["pair"]].policy_image for r in chunk])
                ref = torch.stack([pairs[r["pair"]].reference_image for r in chunk])
                x0_better = torch.tensor([r["policy_better"] for r in chunk])[:, None, None, None]
                better, worse = torch.where(x0_better, pol, ref), torch.where(x0_better, ref, pol)
                crits, prompts = [r["criterion"] for r in chunk], [r["prompt"] for r in chunk]
                forward = _log_odds(scorer, better, worse, task, crits, prompts).float()
                backward = _log_odds(scorer, worse, better, task, crits, prompts).float()
                judged += [(r, 1.0 if f > b else 0.5 if f == b else 0.0)
                           for r, f, b in zip(chunk, forward.tolist(), backward.tolist(), strict=True)]
    return judged


def one_step_judged(scorer, pairs: Sequence[OneStepPair], threshold: float = 0.03, batch_size: int = 16,
                    oracle: Oracle = oracles.score) -> list[tuple[dict[str, Any], float]]:
    """``judge_rows`` of ``one_step_rows``: the reward model's agreement with the oracle on every
    decisive (x0, reference) pair × criterion."""
    return judge_rows(scorer, pairs, one_step_rows(pairs, threshold, oracle), batch_size)


def reward_gradients(scorer, pairs: Sequence[OneStepPair], batch_size: int = 16
                     ) -> list[tuple[OneStepPair, str, np.ndarray]]:
    """(pair, criterion, ∇ₓ r(x, reference) at x = the pair's x0 as HxWx3) for every criterion that
    applies to the pair's condition: the direction RL's hinge pushes x0 in (log-odds and P(Yes)
    share it). Rows of one forward are independent samples, so summing them before the backward
    gives each row its own gradient."""
    import torch

    wanted = [(pair, criterion) for pair in pairs for criterion in pair.condition.criteria]
    by_task: dict[str, list[tuple[OneStepPair, str]]] = defaultdict(list)
    for pair, criterion in wanted:
        by_task[pair.condition.task].append((pair, criterion))
    grads: dict[tuple[int, str], np.ndarray] = {}
    for task, items in by_task.items():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            x = torch.stack([p.policy_image for p, _ in chunk]).clone().requires_grad_(True)
            ref = torch.stack([p.reference_image for p, _ in chunk])
            values = _log_odds(scorer, x, ref, task, [c for _, c in chunk], [p.condition.prompt for p, _ in chunk])
            (grad,) = torch.autograd.grad(values.float().sum(), x)
            for (pair, criterion), g in zip(chunk, grad, strict=True):
                grads[(id(pair), criterion)] = _hwc(g)
    return [(pair, criterion, grads[(id(pair), criterion)]) for pair, criterion in wanted]


def oracle_gradient_cosine(condition: Condition, image: np.ndarray, criterion: str, reward_grad: np.ndarray,
                           directions: int, step_levels: float, rng: np.random.Generator,
                           oracle: Oracle = oracles.score) -> float | None:
    """cos(∇ reward, ∇ oracle) at ``image`` over the edit region's values, the oracle's gradient
    estimated by central differences; None where it is undefined (no reward gradient in the
    region, or the oracle does not change along any probed direction: RL gets no oracle direction
    there).

    Estimator: write ∇oracle = α·ĝ + w with ĝ the unit reward gradient and w ⊥ ĝ. α is the central
    difference along ĝ (the one direction that matters for the sign: does a small step along the
    reward's gradient raise the oracle?). |w|² is estimated from ``directions`` = K random unit
    directions v_k ⊥ ĝ in the region: E[(w·v)²] = |w|²/(d − 1) for d region values, so
    |w|² ≈ (d − 1)/K · Σ (central difference along v_k)². Then cos = α / √(α² + |w|²). For a
    smooth oracle the sign is exact and |w|² carries a relative error of √(2/K) (a χ²_K/K factor):
    a small cosine is off by a factor whose spread is about 1/√(2K) (25 % at K = 8) and whose mean
    overstates |cos| by about 11 % at K = 8 (5 % at K = 16); a cosine near ±1 is accurate (w is
    small). Where the oracle is thresholded (silhouettes, colour and ink matches, the residue
    share) a step that crosses a threshold adds its jump to the differences: the figure is that of
    the oracle seen at the scale of the step.

    The step is ``step_levels``/255 as an RMS change of the region's values (norm √d·step_levels/255);
    the oracle clips to [0, 1] as it always does.
    """
    region = np.broadcast_to(oracles.mask_array(condition)[..., None], image.shape)
    d = int(region.sum())
    g = np.where(region, reward_grad, 0.0).astype(np.float64)
    norm = float(np.linalg.norm(g))
    if d < 2 or norm == 0.0 or not np.isfinite(norm):
        return None
    g_hat = g / norm
    h = math.sqrt(d) * step_levels / 255.0

    def derivative(direction: np.ndarray) -> float:
        plus = oracle(condition, (image + h * direction).astype(np.float32), criterion)
        minus = oracle(condition, (image - h * direction).astype(np.float32), criterion)
        if plus is None or minus is None:
            raise ValueError(f"oracle {criterion!r} does not apply to condition {condition.id}")
        return (plus - minus) / (2 * h)

    alpha = derivative(g_hat)
    probes = []
    for _ in range(directions):
        v = np.where(region, rng.standard_normal(image.shape), 0.0)
        v -= float((v * g_hat).sum()) * g_hat
        probes.append(derivative(v / np.linalg.norm(v)))
    w2 = (d - 1) / directions * float(np.sum(np.square(probes)))
    if alpha == 0.0 and w2 == 0.0:
        return None
    return float(alpha / math.sqrt(alpha * alpha + w2))


def gradient_cosines(scorer, pairs: Sequence[OneStepPair], directions: int = 8, step_levels: float = 1.0,
                     seed: int = 0, batch_size: int = 16, oracle: Oracle = oracles.score) -> list[dict[str, Any]]:
    """``oracle_gradient_cosine`` for every (pair, criterion) that applies: rows with
    ``condition_id``, ``task``, ``criterion`` and ``cosine`` (None where undefined)."""
    out = []
    for n, (pair, criterion, grad) in enumerate(reward_gradients(scorer, pairs, batch_size)):
        image = _hwc(pair.policy_image)
        if oracle(pair.condition, image, criterion) is None:
            continue  # the criterion does not apply (text alignment without a requested object)
        rng = np.random.default_rng([seed, n])
        cosine = oracle_gradient_cosine(pair.condition, image, criterion, grad, directions, step_levels, rng, oracle)
        out.append({"condition_id": pair.condition.id, "task": pair.condition.task, "criterion": criterion,
                    "cosine": cosine})
    return out


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """Student's t 95 % interval of a mean over independent units (here conditions): mean ±
    t₀.₉₇₅(n − 1)·sd/√n. None below two units."""
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    half = t_quantile_975(len(arr) - 1) * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return float(arr.mean() - half), float(arr.mean() + half)


def cosine_table(records: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """Per task → criterion: mean cosine over conditions, its t interval (``mean_interval``: the
    conditions are independent draws), the number of conditions with a defined cosine, and of
    those where the oracle did not move (no direction for RL to follow)."""
    cells: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for r in records:
        cells[(r["task"], r["criterion"])].append(r["cosine"])
    mean: dict = defaultdict(dict)
    ci: dict = defaultdict(dict)
    n: dict = defaultdict(dict)
    undefined: dict = defaultdict(dict)
    for (task, crit), values in sorted(cells.items()):
        defined = [v for v in values if v is not None]
        n[task][crit], undefined[task][crit] = len(defined), len(values) - len(defined)
        mean[task][crit] = float(np.mean(defined)) if defined else None
        interval = mean_interval(defined)
        ci[task][crit] = list(interval) if interval else None
    return {"mean": dict(mean), "ci": dict(ci), "n": dict(n), "undefined": dict(undefined)}


def task_means(table: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """Per task, the unweighted mean over its criteria (criteria without a figure left out)."""
    out = {}
    for task, crits in table.items():
        vals = [v for v in crits.values() if v is not None]
        out[task] = float(np.mean(vals)) if vals else None
    return out


def rl_diagnostics(scorers: dict[str, Any], policy, conditions: Sequence[Condition], rl: dict[str, Any],
                   sizes: DiagnosticSizes, seed: int = 0, oracle: Oracle = oracles.score) -> dict[str, Any]:
    """Both diagnostics of every reward model in ``scorers`` (name → scorer) on the same RL pairs of
    ``conditions``: the first ``sizes.accuracy_conditions_per_task`` of each task judged, the first
    ``sizes.gradient_conditions_per_task`` of those with gradient cosines (the same random probe
    directions for every model).

    Returns ``models``: name → the demo report's ``one_step_*`` and ``gradient_cosine*`` keys;
    beside it ``one_step_conditions`` (per task), ``gradient_cosine_estimator`` and
    ``rl_diagnostics_cpu_s`` (this process's CPU seconds, all threads, for everything).
    """
    import time

    cpu = time.process_time()
    by_task: dict[str, list[Condition]] = defaultdict(list)
    for c in conditions:
        by_task[c.task].append(c)
    picked = [c for cs in by_task.values() for c in cs[:sizes.accuracy_conditions_per_task]]
    pairs = one_step_pairs(policy, picked, rl, seed, sizes.batch_size)
    grad_ids = {c.id for cs in by_task.values() for c in cs[:sizes.gradient_conditions_per_task]}
    rows = one_step_rows(pairs, sizes.threshold, oracle)  # the oracle's verdicts, shared by every model
    models = {}
    for name, scorer in scorers.items():
        judged = judge_rows(scorer, pairs, rows, sizes.batch_size)
        accuracy, n_pairs = oracle_accuracy_table(judged)
        cosines = cosine_table(gradient_cosines(scorer, [p for p in pairs if p.condition.id in grad_ids],
                                                sizes.directions, sizes.step_levels, seed, sizes.batch_size, oracle))
        models[name] = {
            "one_step_oracle_accuracy": accuracy,
            "one_step_oracle_accuracy_ci": oracle_accuracy_intervals(judged),
            "one_step_oracle_accuracy_mean": task_means(accuracy),
            "one_step_pairs": n_pairs,
            "one_step_policy_better_share": _policy_better_share(judged),
            "gradient_cosine": cosines["mean"],
            "gradient_cosine_ci": cosines["ci"],
            "gradient_cosine_mean": task_means(cosines["mean"]),
            "gradient_cosine_conditions": cosines["n"],
            "gradient_cosine_undefined": cosines["undefined"],
        }
    counts: dict[str, int] = defaultdict(int)
    for p in pairs:
        counts[p.condition.task] += 1
    return {
        "models": models,
        "one_step_conditions": dict(counts),
        "gradient_cosine_estimator": {"directions": sizes.directions, "step_levels": sizes.step_levels,
                                      "interval": "t over conditions"},
        "rl_diagnostics_cpu_s": round(time.process_time() - cpu, 2),
    }


def _policy_better_share(judged: Sequence[tuple[dict[str, Any], float]]) -> dict[str, dict[str, float]]:
    """Per task → criterion, the share of judged pairs where the oracle prefers x0 to the reference
    (near 0: the one-step image is nearly always worse, so the pairs test "x0 is worse" only)."""
    cells: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r, _ in judged:
        cells[(r["task"], r["criterion"])].append(bool(r["policy_better"]))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, crit), flags in cells.items():
        out[task][crit] = float(np.mean(flags))
    return dict(out)


def summary_lines(section: dict[str, Any], control: dict[str, Any] | None = None) -> list[str]:
    """``rl_diagnostics``' figures as the demo summary's table. ``section``: one model's keys plus
    the shared ones (the report's ``reward_model``); ``control``: another model's keys (the
    untrained control's), shown beside them as the chance level of each figure."""
    est = section["gradient_cosine_estimator"]

    def cell(source: dict[str, Any] | None, key: str, task: str, crit: str) -> Any:
        return None if source is None else source.get(key, {}).get(task, {}).get(crit)

    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    def interval(bounds: Sequence[float] | None, fmt: str) -> str:
        return "" if not bounds else f"[{bounds[0]:{fmt}}, {bounds[1]:{fmt}}]"

    lines = ["", f"Reward model on RL's pairs (the base's one-step x0 vs its reference; conditions per task "
                 f"{section['one_step_conditions']}, {section['rl_diagnostics_cpu_s']:.0f} CPU-s)",
             f"{'task':<8} {'criterion':<16} {'acc':>6} {'95 %':>13} {'n':>4} {'x0 better':>9} {'untrained':>9} "
             f"{'grad cos':>9} {'95 % (t)':>17} {'n':>4} {'undef':>5} {'untrained':>9}"]
    for task, crits in oracles.TASK_CRITERIA.items():
        for c in crits:
            lines.append(
                f"{task:<8} {c:<16} {num(cell(section, 'one_step_oracle_accuracy', task, c), '.3f'):>6} "
                f"{interval(cell(section, 'one_step_oracle_accuracy_ci', task, c), '.2f'):>13} "
                f"{cell(section, 'one_step_pairs', task, c) or 0:>4} "
                f"{num(cell(section, 'one_step_policy_better_share', task, c), '.2f'):>9} "
                f"{num(cell(control, 'one_step_oracle_accuracy', task, c), '.3f'):>9} "
                f"{num(cell(section, 'gradient_cosine', task, c), '+.3f'):>9} "
                f"{interval(cell(section, 'gradient_cosine_ci', task, c), '+.3f'):>17} "
                f"{cell(section, 'gradient_cosine_conditions', task, c) or 0:>4} "
                f"{cell(section, 'gradient_cosine_undefined', task, c) or 0:>5} "
                f"{num(cell(control, 'gradient_cosine', task, c), '+.3f'):>9}")
    means = ", ".join(f"{t} {num(section['one_step_oracle_accuracy_mean'].get(t), '.3f')} / "
                      f"{num(section['gradient_cosine_mean'].get(t), '+.3f')}" for t in oracles.TASK_CRITERIA)
    return lines + [
        f"per task, mean over criteria (accuracy / cosine): {means}",
        "acc: oracle accuracy on those pairs whose oracle scores differ by more than the tie threshold (both "
        "orders; 95 % interval clustered by condition); x0 better: the share of them where the oracle prefers the "
        "one-step image; untrained: the untrained control's figure on the same pairs",
        f"grad cos: cosine of the reward's and the oracle's pixel gradients at x0 in the edit region, mean over "
        f"conditions with a t interval; the oracle's by central differences ({est['directions']} random directions, "
        f"a {est['step_levels']:g}/255 step); undef: conditions where the oracle (or the reward) did not move"]


def measure(reward_model_dirs: dict[str, str], base_policy_dir: str, conditions: Sequence[Condition],
            rl: dict[str, Any], sizes: DiagnosticSizes, seed: int = 0) -> dict[str, Any]:
    """``rl_diagnostics`` of reward-model folders (name → folder, each through the product's
    ``RewardScorer``, as RL loads it) at a base-policy folder."""
    from policytrain.engine.pipeline import FillPolicy
    from rewardtrain.engine.scorer import RewardScorer

    scorers = {name: RewardScorer.from_pretrained(path) for name, path in reward_model_dirs.items()}
    return rl_diagnostics(scorers, FillPolicy.from_pretrained(base_policy_dir), conditions, rl, sizes, seed)
