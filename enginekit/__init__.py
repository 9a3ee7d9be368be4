"""What every training engine needs the same way, written once (Django-free, like the engines).

- ``runs``: the distributed environment, stopping on every rank at the same step, seeding and
  the RNG state saved with a checkpoint, and ``RunCancelled``.
- ``checkpoints``: checkpoint folders written atomically (a temporary sibling, the marker file
  last, then one rename) and the newest complete one found again.
- ``cli``: leaving a CLI process under torchrun.

The reward trainer (``rewardtrain.engine``) and the RL trainer (``policytrain.engine``) both use
these; a third engine should too.
"""
