"""Procedural synthetic world: scenes, pixel oracles and simulated annotators.

Plain Python (numpy + Pillow only). It never imports Django, torch or app code, so the
platform's demo, tests and benchmarks can use it anywhere. See ``docs/synthetic-world.md``.

Modules:

- :mod:`synthetic.scenes` — seeded scene generator producing :class:`Condition` objects
  (source, mask, prompt and the ground-truth target) for the ``fill``, ``extend`` and
  ``removal`` tasks.
- :mod:`synthetic.oracles` — one pixel-computable score in [0, 1] per criterion, plus
  :func:`~synthetic.oracles.degrade` to make candidate-like imperfect outputs.
- :mod:`synthetic.annotators` — Bradley–Terry simulated annotators and a human-ceiling helper.
- :mod:`synthetic.conditions` — read/write the contracts-doc conditions folder.
"""

from synthetic.scenes import TASK_CRITERIA, TASKS, Condition, make_condition, make_conditions

__all__ = ["TASKS", "TASK_CRITERIA", "Condition", "make_condition", "make_conditions"]
