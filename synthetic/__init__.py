"""Procedural synthetic world: the demo's and the tests' fixture world.

The core modules are plain Python (numpy + Pillow only): they never import Django, torch or app
code, so the platform's demo, tests and benchmarks can use them anywhere. See
``docs/synthetic-world.md``.

The world:

- :mod:`synthetic.scenes` — seeded scene generator producing :class:`Condition` objects
  (source, mask, prompt and the ground-truth target) for the ``fill``, ``extend`` and
  ``removal`` tasks.
- :mod:`synthetic.oracles` — one pixel-computable score in [0, 1] per criterion, plus
  :func:`~synthetic.oracles.degrade` to make candidate-like imperfect outputs.
- :mod:`synthetic.annotators` — Bradley–Terry simulated annotators and a human-ceiling helper.
- :mod:`synthetic.conditions` — read/write the contracts-doc conditions folder.

What the demo runs on it (these import the engines, inside functions where torch is needed):

- :mod:`synthetic.loop_config` — ``configs/demo/<size>.json`` and the disjoint condition sets.
- :mod:`synthetic.base_policy` — the supervised pre-training of the tiny base fill policy.
- :mod:`synthetic.reward_base` — the tiny reward-model base and its untrained control copy.
- :mod:`synthetic.candidate_fills` — policy fills of conditions and their oracle scores.
- :mod:`synthetic.oracle_metrics` — reward-model accuracy and policy win rates by the oracle.

The engine-level research loop, its probes and further rounds live in ``research/`` (not installed).
"""

from synthetic.scenes import TASK_CRITERIA, TASKS, Condition, make_condition, make_conditions

__all__ = ["TASKS", "TASK_CRITERIA", "Condition", "make_condition", "make_conditions"]
