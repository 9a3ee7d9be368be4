"""Does a smoothed reward point where the oracle does? (issue #22, "prove the loop learns").

RL follows the reward model's pixel gradient at the one-step x0, and the RL diagnostics found that
gradient orthogonal to the oracle's (cosines within ±0.02 of 0, like an untrained model's) although
the model ranks whole candidates well on several criteria. A discriminative model trained on a few
thousand pairs has an input gradient dominated by directions that change its output but no
property a person (or the oracle) sees; averaging the gradient over noisy copies of the input
(SmoothGrad; the gradient of the Gaussian-smoothed reward E_ε[r(x + σε, ref)]) cancels those
directions where they change from copy to copy and keeps what is common to them.

This probe measures that at RL's inputs, the same way the demo's diagnostics do
(``synthetic.rl_diagnostics`` on the rl-diagnostics set, the config's ``t_range``, the trained
reward model and the untrained control): the one-step oracle accuracy and the gradient cosine of
each model as is and smoothed with ``samples`` noisy copies at each ``sigma`` (images in [0, 1]).
A smoothed trained model whose cosine clears the smoothed control's would justify a smoothed
reward in RL; smoothing that lifts the control as much is the estimator's or the oracle's doing,
not the model's. From the repository root::

    python -m research.smooth_probe <loop_dir> <size> [out.json] [--conditions=48] [--gradient=16]
        [--samples=16] [--sigmas=0.03,0.1,0.2] [--model=<reward model dir>]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from research.timestep_probe import diagnostics_setup, recording, table_lines, task_summary
from synthetic import rl_diagnostics as diag
from synthetic.loop_config import quiet_libraries


class SmoothedScorer:
    """``inner``'s ``differentiable`` averaged over ``samples`` copies of ``first`` with Gaussian
    noise of standard deviation ``sigma`` added (no clamp, so no copy loses its gradient at the
    edges of [0, 1]); ``second`` (RL's reference, which gets no gradient) is left as it is. The
    noise comes from one seeded generator, so a run is reproducible."""

    def __init__(self, inner, samples: int, sigma: float, seed: int = 0):
        import torch

        if samples < 1 or sigma < 0:
            raise ValueError(f"samples must be >= 1 and sigma >= 0, got {samples} and {sigma}")
        self.inner, self.samples, self.sigma = inner, int(samples), float(sigma)
        self._gen = torch.Generator().manual_seed(seed)

    def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
        import torch

        total = None
        for _ in range(self.samples):
            noise = torch.randn(first.shape, generator=self._gen).to(first.device, first.dtype)
            value = self.inner.differentiable(first + self.sigma * noise, second, task, criterion, prompt,
                                              return_log_odds=return_log_odds)
            total = value if total is None else total + value
        return total / self.samples


def run(loop_dir: str | Path, size: str, out_json: str | Path | None = None, conditions_per_task: int = 48,
        gradient_per_task: int = 16, samples: int = 16, sigmas: tuple[float, ...] = (0.03, 0.1, 0.2),
        seed: int = 0, model: str | Path | None = None) -> dict[str, Any]:
    """The RL diagnostics (config's window) of a finished loop's trained and untrained reward models,
    as they are and smoothed at each sigma, on the rl-diagnostics set; prints the per-task table.
    ``model`` replaces the loop's trained reward model (e.g. an ``rm-probe-<name>/run/final``): a
    model at the ln 2 saddle has nothing for smoothing to show."""
    quiet_libraries()
    from policytrain.engine.pipeline import FillPolicy

    work = Path(loop_dir).resolve()
    cfg, base_dir, sizes, conds, models = diagnostics_setup(work, size, conditions_per_task, gradient_per_task, seed,
                                                            Path(model) if model else None)
    scorers: dict[str, Any] = dict(models)
    for sigma in sigmas:
        for name, scorer in models.items():
            scorers[f"{name}-s{sigma:g}"] = SmoothedScorer(scorer, samples, sigma, seed)
    t0 = time.time()
    with recording() as calls:
        found = diag.rl_diagnostics(scorers, FillPolicy.from_pretrained(base_dir), conds, cfg["rl"], sizes, seed)
    found["per_task"] = {name: task_summary(calls["judged"][i], calls["cosines"][i])
                         for i, name in enumerate(scorers)}
    result = {"loop_dir": str(work), "size": size, "seed": seed, "model": str(model or work / "rm-run" / "final"), "t_range": cfg["rl"].get("t_range"),
              "samples": samples, "sigmas": list(sigmas), "conditions_per_task": conditions_per_task,
              "gradient_conditions_per_task": gradient_per_task, "diagnostics": found,
              "seconds": round(time.time() - t0, 1)}
    target = Path(out_json) if out_json else work / "smooth-probe.json"
    target.write_text(json.dumps(result, indent=2))
    names = list(scorers)
    for i in range(0, len(names), 2):  # two models per table: each smoothed model beside its control
        print("\n".join(table_lines({"cfg": found}, names[i:i + 2])))
    print(f"written {target} ({result['seconds']} s)")
    return result


def main(argv: list[str]) -> None:
    """``python -m research.smooth_probe …`` (module docstring)."""
    opts: dict[str, str] = {}
    args = []
    for a in argv:
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            if key not in ("conditions", "gradient", "samples", "sigmas", "model") or not eq:
                raise SystemExit(f"unknown option {a!r}; options: --conditions=N --gradient=N --samples=N "
                                 "--sigmas=A,B,... --model=DIR")
            opts[key] = value
        else:
            args.append(a)
    if len(args) < 2:
        raise SystemExit("usage: python -m research.smooth_probe <loop_dir> <size> [out.json] [--conditions=N] "
                         "[--gradient=N] [--samples=N] [--sigmas=A,B] [--model=DIR]")
    sigmas = tuple(float(s) for s in opts.get("sigmas", "0.03,0.1,0.2").split(","))
    run(args[0], args[1], args[2] if len(args) > 2 else None, int(opts.get("conditions", 48)),
        int(opts.get("gradient", 16)), int(opts.get("samples", 16)), sigmas, model=opts.get("model"))


if __name__ == "__main__":  # pragma: no cover - manual use
    main(sys.argv[1:])
