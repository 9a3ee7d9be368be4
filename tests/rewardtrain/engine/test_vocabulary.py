"""The vocabulary contract: schema, JSON form and validation (contracts.vocabulary)."""

import json

import pytest

from contracts.vocabulary import (
    BUILTIN,
    CriterionSpec,
    TaskSpec,
    Vocabulary,
    VocabularyError,
    is_builtin,
    vocabulary_or_builtin,
)


def test_builtin_is_the_paper_table():
    assert BUILTIN.task_slugs == ("fill", "extend", "removal")
    assert BUILTIN.task_criteria == {
        "fill": ("text_alignment", "consistency", "structure", "aesthetics"),
        "extend": ("text_alignment", "consistency", "structure", "aesthetics"),
        "removal": ("removal_quality",),
    }
    assert [c.slug for c in BUILTIN.criteria if c.uses_prompt] == ["text_alignment"]
    assert BUILTIN.task("removal").fixed_prompt == "remove the specified object"


def test_json_round_trip_keeps_the_order_even_through_sorted_keys():
    data = json.loads(json.dumps(BUILTIN.to_dict(), sort_keys=True))  # as a snapshot manifest writes it
    assert list(data["tasks"]) == ["extend", "fill", "removal"]
    assert Vocabulary.from_dict(data) == BUILTIN
    assert vocabulary_or_builtin(None) is BUILTIN


def test_restricted_to_keeps_only_the_given_pairs():
    sub = BUILTIN.restricted_to({"removal": ["removal_quality"], "fill": ["structure"]})
    assert sub.task_criteria == {"fill": ("structure",), "removal": ("removal_quality",)}
    assert sub.criterion("structure").tasks == ("fill",)
    assert is_builtin(sub)
    reworded = Vocabulary.from_dict({**sub.to_dict(), "criteria": {
        **sub.to_dict()["criteria"], "structure": {**sub.to_dict()["criteria"]["structure"], "description": "other"}}})
    assert not is_builtin(reworded)
    with pytest.raises(VocabularyError, match="not valid for task 'removal'"):
        BUILTIN.restricted_to({"removal": ["structure"]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "object with 'tasks' and 'criteria'"),
        ({"tasks": {}, "criteria": {}, "extra": 1}, "unknown vocabulary key"),
        ({"tasks": {"Fill!": {"name": "x"}}, "criteria": {}}, "task slug 'Fill!'"),
        ({"tasks": {"fill": {"name": " "}}, "criteria": {}}, "task 'fill' name must be a non-empty string"),
        ({"tasks": {"fill": {"name": "Fill"}}, "criteria": {"c": {"name": "C", "description": "", "tasks": ["fill"]}}},
         "criterion 'c' description must be a non-empty string"),
        ({"tasks": {"fill": {"name": "Fill"}}, "criteria": {"c": {"name": "C", "description": "d", "tasks": ["x"]}}},
         "criterion 'c' names unknown task"),
        ({"tasks": {"fill": {"name": "Fill"}}, "criteria": {"c": {"name": "C", "description": "d"}}},
         "'tasks' list"),
        ({"tasks": {"fill": {"name": "Fill"}},
          "criteria": {"c": {"name": "C", "description": "d", "tasks": ["fill"], "uses_prompt": "yes"}}},
         "uses_prompt must be true or false"),
    ],
)
def test_malformed_vocabularies_are_refused_with_the_entry_named(data, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_dict(data)


def test_duplicate_slugs_and_lookups():
    with pytest.raises(VocabularyError, match="listed twice"):
        Vocabulary(tasks=(TaskSpec("a", "A"), TaskSpec("a", "B")), criteria=())
    with pytest.raises(VocabularyError, match="unknown criterion 'nope'"):
        BUILTIN.criterion("nope")
    with pytest.raises(VocabularyError, match="unknown task 'nope'"):
        BUILTIN.criteria_for("nope")
    solo = Vocabulary(tasks=(TaskSpec("t", "T"),), criteria=(CriterionSpec("c", "C", "d", ("t",)),))
    assert solo.check_pair("t", "c").description == "d"
