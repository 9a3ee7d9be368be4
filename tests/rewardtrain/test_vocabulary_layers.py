"""Every layer reads one vocabulary: the contracts seeds, the seeded database rows, annotation's
names, the reward query, the policy engine and the synthetic world (no copies left to drift)."""
from __future__ import annotations

import pytest

import annotation.vocabulary as annotation_vocab
import policytrain.engine.config as policy_config
import rewardtrain.engine.template as template
import synthetic.scenes as scenes
from annotation.services.taxonomy import vocabulary_from_db
from contracts.vocabulary import BUILTIN

pytestmark = pytest.mark.django_db


def test_every_layer_reads_the_builtin_vocabulary():
    # The database as migrations and post_migrate seed it, worded exactly as the seeds.
    assert vocabulary_from_db(task_criteria=BUILTIN.task_criteria) == BUILTIN
    assert annotation_vocab.TASK_CRITERIA == BUILTIN.task_criteria
    assert annotation_vocab.TASK_NAMES == {t.slug: t.name for t in BUILTIN.tasks}
    assert annotation_vocab.CRITERION_NAMES == {c.slug: c.name for c in BUILTIN.criteria}
    assert set(annotation_vocab.INITIAL_GUIDELINES) == {c.slug for c in BUILTIN.criteria}
    assert policy_config.TASKS == scenes.TASKS == BUILTIN.task_slugs
    assert scenes.TASK_CRITERIA == BUILTIN.task_criteria
    assert policy_config.REMOVAL_PROMPT == scenes.REMOVAL_PROMPT == annotation_vocab.FIXED_PROMPTS["removal"]
    assert policy_config.EXTEND_DEFAULT_PROMPT == scenes.EXTEND_FIXED_PROMPT == annotation_vocab.FIXED_PROMPTS["extend"]
    for name in ("CRITERIA", "TASK_NAMES", "CRITERION_DESCRIPTIONS", "TASKS"):
        assert not hasattr(template, name), name
    assert not hasattr(policy_config, "TASK_CRITERIA")


def test_the_reward_query_from_database_rows_is_the_builtin_query():
    from_db = vocabulary_from_db(task_criteria=BUILTIN.task_criteria)
    for task, criteria in BUILTIN.task_criteria.items():
        for criterion in criteria:
            assert template.build_query(task, criterion, "a cat", from_db) == template.build_query(task, criterion, "a cat")
