"""The side-by-side leaderboard: Bradley–Terry ratings with item-bootstrap intervals, over every
A-versus-B campaign, per task and criterion, on the dashboard and its API."""
from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from annotation.bradley_terry import ELO_CENTRE, PairItems, fit, leaderboard
from annotation.selectors import source_leaderboard
from policytrain.services import checkpoint_promote
from tests.factories import make_user
from tests.policytrain.test_promotion import checkpoint, side_by_side


def items(wins_a: int, wins_b: int, ties: int = 0) -> np.ndarray:
    """One judgment per item."""
    return np.array([(1, 0, 0)] * wins_a + [(0, 1, 0)] * wins_b + [(0, 0, 1)] * ties, dtype=float)


def test_ratings_follow_the_win_rates_and_stay_finite_for_the_undefeated():
    board = leaderboard([PairItems("x", "y", items(30, 10)), PairItems("y", "z", items(30, 10)),
                         PairItems("x", "z", items(20, 0))], bootstrap=50)
    assert [r["system"] for r in board] == ["x", "y", "z"] and [r["rank"] for r in board] == [1, 2, 3]
    ratings = {r["system"]: r["rating"] for r in board}
    assert np.mean(list(ratings.values())) == pytest.approx(ELO_CENTRE)
    assert np.isfinite(ratings["x"]) and ratings["x"] - ratings["z"] > 200  # never lost, still finite
    for r in board:
        assert r["ci95"][0] <= r["rating"] <= r["ci95"][1] and r["component"] == 0
    assert board[0]["judgments"] == 60 and board[0]["opponents"] == ["y", "z"]


def test_two_even_sides_rate_the_same_and_a_3_to_1_record_is_about_185_points_apart():
    even = fit(["a", "b"], [("a", "b", 10.0, 10.0)])
    assert even[0] == pytest.approx(even[1])
    # 30 : 10 plus one virtual tie → 30.5 : 10.5; BT puts them 400·log10(30.5 / 10.5) ≈ 185 points apart.
    gap = np.subtract(*fit(["a", "b"], [("a", "b", 30.0, 10.0)]))
    assert gap == pytest.approx(400 * np.log10(30.5 / 10.5), abs=0.5)


def test_systems_no_campaign_connects_are_told_apart():
    board = leaderboard([PairItems("a", "b", items(5, 1)), PairItems("c", "d", items(1, 5)),
                         PairItems("e", "a", items(2, 2))], bootstrap=10)
    groups = {r["system"]: r["component"] for r in board}
    assert groups["a"] == groups["b"] == groups["e"] == 0 and groups["c"] == groups["d"] == 1
    assert [r["system"] for r in board][3:] == ["d", "c"]  # each group ranked on its own
    assert [r["rank"] for r in board] == [1, 2, 3, 1, 2]
    for group in (0, 1):  # each group on its own scale, centred on 1000
        assert np.mean([r["rating"] for r in board if r["component"] == group]) == pytest.approx(ELO_CENTRE)


def test_an_unrelated_campaign_does_not_move_a_rating_in_another_group():
    """Reported: a rating moved 1004 → 1189 when a campaign between other systems was added."""
    first = [PairItems("a", "b", items(8, 3, 1)), PairItems("b", "c", items(6, 6))]
    before = {r["system"]: (r["rating"], r["ci95"], r["rank"]) for r in leaderboard(first, bootstrap=30)}
    after = leaderboard([*first, PairItems("x", "y", items(20, 0)), PairItems("y", "z", items(15, 1))], bootstrap=30)
    moved = {r["system"]: (r["rating"], r["ci95"], r["rank"]) for r in after if r["system"] in before}
    assert moved == before
    assert {r["system"]: r["component"] for r in after if r["system"] in "xyz"} == {"x": 1, "y": 1, "z": 1}


@pytest.mark.django_db
def test_source_leaderboard_reads_every_side_by_side_campaign_per_task_and_criterion(tmp_path):
    first, second, third = (checkpoint(n, tmp_path) for n in ("rl-1", "rl-2", "rl-3"))
    # rl-2 beats rl-1 on everything; rl-3 beats rl-2 on aesthetics only and loses the rest.
    side_by_side(second, first, items=6)
    side_by_side(third, second, items=6, answer=lambda k, c: "a" if c == "aesthetics" else "b")
    side_by_side(first, None, task="removal", items=4)
    overall = source_leaderboard(bootstrap=20)
    assert [r["system"] for r in overall][:3] == ["policy:rl-2", "policy:rl-3", "policy:rl-1"]
    aesthetics = source_leaderboard(criterion="aesthetics", bootstrap=20)
    assert aesthetics[0]["system"] == "policy:rl-3"
    assert "base:tiny" not in {r["system"] for r in aesthetics}  # removal has no aesthetics
    removal = source_leaderboard(task="removal", bootstrap=20)
    assert [r["system"] for r in removal] == ["policy:rl-1", "base:tiny"] and removal[0]["judgments"] == 8

    checkpoint_promote(checkpoint=second, force=True, reason="test")
    make_user("sci", "scientist")
    client = Client()
    client.login(username="sci", password="pw-test-1234")
    page = client.get("/dashboard/leaderboard/?criterion=structure").content.decode()
    assert f'<a href="/dashboard/checkpoints/{second.pk}/">policy:rl-2</a> <span class="badge badge-production">' in page
    api = client.get("/api/dashboard/leaderboard/", {"task": "fill", "criterion": "structure"}).json()
    assert [r["system"] for r in api["rows"]] == ["policy:rl-2", "policy:rl-1", "policy:rl-3"]
    assert api["rows"][0]["production"] and api["components"] == 1
    bad = client.get("/api/dashboard/leaderboard/", {"task": "removal", "criterion": "aesthetics"})
    assert bad.status_code == 400 and "criterion" in bad.json()["fields"]
    assert "Invalid leaderboard filter." in client.get("/dashboard/leaderboard/?task=paint").content.decode()
