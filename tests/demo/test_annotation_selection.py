"""Which synthetic samples the platform demo sends to annotators."""
from __future__ import annotations

from types import SimpleNamespace

from demo.services import WorldItem, annotation_selection


def _items(tasks: str) -> list[WorldItem]:
    names = {"f": "fill", "e": "extend", "r": "removal"}
    return [WorldItem(condition=SimpleNamespace(task=names[t], id=f"c{i}"), sample=None) for i, t in enumerate(tasks)]


def test_the_cap_applies_to_pairwise_tasks_and_every_best_worst_sample_is_added():
    items = _items("ferfrrefr")
    chosen = annotation_selection(items, 4)
    # The first 4 as they come, then only the removal (best–worst) samples after the cap, in order.
    assert [it.condition.id for it in chosen] == ["c0", "c1", "c2", "c3", "c4", "c5", "c8"]
    assert annotation_selection(items, 20) == items  # a cap above the count keeps everything once
    assert [it.condition.id for it in annotation_selection(_items("ffee"), 2)] == ["c0", "c1"]
