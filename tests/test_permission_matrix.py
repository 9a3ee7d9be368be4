"""Permission matrix generated from the URL configuration (issue #21, item 9).

Every named route that ``django.urls.get_resolver()`` knows is requested as each role — anonymous,
annotator, curator, scientist and a superuser — and the answer is compared with ``POLICY``, the
declared table of who may use it. A route missing from ``POLICY`` fails the test by name, so a new
route forces a decision about who may call it; a ``POLICY`` entry naming no route fails too, so the
table cannot rot.

What "may use" means here: the answer is neither 401/403 nor a redirect to a login page (a 2xx, a
400 for the empty body of a write, a 404 for a dummy id, a 405 all count as "let in"); a role
outside the policy gets 401/403 or a login redirect, or a 404 where the route declares that it
hides existence (``hides``: an annotator asking for a campaign that is not open to them).
No route may answer 5xx to anyone. The admin is Django's own (permission-checked by model
permissions, see tests/test_security.py); only its index is sampled.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotation.models import DatasetSnapshot, Judgment
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from annotation.services.snapshots import snapshot_create
from jobs.models import Job, JobKind
from jobs.services import job_create
from policytrain.models import PolicyCheckpoint, PolicyRun
from rewardtrain.models import RewardModel, RewardRun
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

ANON, ANN, CUR, SCI, ADMIN = "anonymous", "annotator", "curator", "scientist", "admin"
ROLES = (ANON, ANN, CUR, SCI, ADMIN)
EVERYONE = frozenset(ROLES)
SIGNED_IN = frozenset({ANN, CUR, SCI, ADMIN})
STAFF = frozenset({CUR, SCI, ADMIN})  # IsStaffRole (the superuser holds every role)
CURATORS = frozenset({CUR, ADMIN})
SCIENTISTS = frozenset({SCI, ADMIN})
ANNOTATORS = frozenset({ANN, ADMIN})


@dataclass(frozen=True)
class Policy:
    """Who may use a route. ``method``: what the matrix sends (GET unless the route only writes);
    ``hides``: roles outside the policy may get 404 instead of 403 (the view hides existence)."""

    roles: frozenset[str]
    method: str = "GET"
    hides: bool = False
    # Logging out ends the session: it runs on fresh clients, and its answer is the login page.
    logs_out: bool = False
    # The roles requested, when fewer than all: a costly answer that is the same for every signed-in
    # role (the OpenAPI schema takes a second to build) is checked as anonymous and the least role.
    asked: tuple[str, ...] | None = None


def P(roles, method="GET", hides=False, logs_out=False, asked=None):  # noqa: N802 - reads as a table
    return Policy(frozenset(roles), method, hides, logs_out, asked)


# One entry per route name. Keep it in the order of the URL files.
POLICY: dict[str, Policy] = {
    # config/urls.py
    "login": P(EVERYONE),
    "logout": P(EVERYONE, "POST", logs_out=True),  # logging out is harmless for anyone
    "schema": P(SIGNED_IN, asked=(ANON, ANN)),  # API docs only to signed-in users (issue #21 item 8)
    "api-docs": P(SIGNED_IN),
    # annotation/api/urls.py
    "api-token": P(EVERYONE, "POST"),
    "api-logout": P(SIGNED_IN, "POST", logs_out=True),
    "api-me": P(SIGNED_IN),
    "api-task-types": P(SIGNED_IN),  # everyone reads the vocabulary; writes are curators' (below)
    "api-task-type": P(SIGNED_IN),
    "api-criteria": P(SIGNED_IN),
    "api-criterion": P(SIGNED_IN),
    "api-guideline-publish": P(CURATORS, "POST"),
    "api-guideline-preview": P(CURATORS, "POST"),
    "api-users": P(CURATORS),
    "api-user": P(CURATORS),
    "api-user-reset-password": P(CURATORS, "POST"),
    "api-campaigns": P(SIGNED_IN),  # each role sees the campaigns open to it (campaign_list_for)
    "api-campaign": P(SIGNED_IN),
    "api-campaign-progress": P(SIGNED_IN),
    "api-campaign-quality": P(STAFF),
    "api-next": P(ANNOTATORS, "POST"),
    "api-last": P(ANNOTATORS),
    "api-campaign-items": P(STAFF),
    "api-campaign-action": P(CURATORS, "POST"),
    "api-item": P(STAFF),
    "api-item-adjudicate": P(CURATORS, "POST"),
    "api-item-gold": P(CURATORS, "POST"),
    # A lease is its annotator's own: another annotator (and the superuser) get 404.
    "api-submit": P(ANNOTATORS, "POST", hides=True),
    "api-skip": P(ANNOTATORS, "POST", hides=True),
    "api-release": P(ANNOTATORS, "POST", hides=True),
    "api-judgments": P(SIGNED_IN),  # an annotator lists only their own
    "api-judgment": P(ANNOTATORS, "PATCH", hides=True),
    "api-samples": P(STAFF),
    "api-imports": P(CURATORS, "POST"),
    "api-import": P(CURATORS),
    "api-export": P(STAFF),
    "api-export-jobs": P(STAFF),
    "api-export-job": P(STAFF),
    "api-export-cancel": P(STAFF, "POST"),
    "api-export-download": P(STAFF),
    "api-campaigns-from-candidates": P(CURATORS, "POST"),
    "api-candidate-sources": P(STAFF),
    "api-snapshots": P(STAFF),
    "api-snapshot-preview": P(STAFF),
    "api-snapshot": P(STAFF),
    # rewardtrain/urls.py: the staff roles (the dashboard pages for runs are the scientists')
    "reward-presets": P(STAFF),
    "reward-runs": P(STAFF),
    "reward-run-preview": P(STAFF, "POST"),
    "reward-run": P(STAFF),
    "reward-run-action": P(STAFF, "POST"),
    "reward-models": P(STAFF),
    "reward-model": P(STAFF),
    "reward-model-score": P(STAFF, "POST"),
    "reward-model-evaluations": P(STAFF),
    "reward-score": P(STAFF),
    "reward-baselines": P(STAFF),
    "reward-baseline": P(STAFF),
    "reward-baseline-cancel": P(STAFF, "POST"),
    # policytrain/urls.py
    "api-policy-runs": P(STAFF),
    "api-policy-run-preview": P(STAFF, "POST"),
    "api-policy-run": P(STAFF),
    "api-policy-run-artifact": P(STAFF),
    "api-policy-run-action": P(STAFF, "POST"),
    "api-policy-checkpoints": P(STAFF),
    "api-policy-checkpoint": P(STAFF),
    "api-policy-promotion-gate": P(STAFF),
    "api-policy-promote": P(SCIENTISTS, "POST"),  # deciding which model serves is the scientists'
    "api-policy-production": P(STAFF),
    "api-policy-generations": P(STAFF),
    "api-policy-generation": P(STAFF),
    # jobs/urls.py
    "api-job-cancel": P(STAFF, "POST"),
    "api-job-resume": P(STAFF, "POST"),
    # frontend/api_urls.py
    "dash-api-jobs": P(STAFF),
    "dash-api-queues": P(STAFF),
    "dash-api-job": P(STAFF),
    "dash-api-job-tags": P(STAFF, "POST"),
    "dash-api-overlay": P(STAFF),
    "dash-api-artifact": P(STAFF),
    "dash-api-lineage": P(STAFF),
    "dash-api-compare-rm": P(STAFF),
    "dash-api-compare-ckpt": P(STAFF),
    "dash-api-campaigns": P(STAFF),
    "dash-api-campaign": P(STAFF),
    "dash-api-leaderboard": P(STAFF),
    # annotation/media_urls.py: any signed-in user (annotators load the images they judge)
    "media": P(SIGNED_IN),
    # frontend/urls.py: home sends each role to its page; pages by role_page
    "home": P(SIGNED_IN),
    "annotate": P(ANNOTATORS, hides=True),  # a campaign not open to the annotator is 404
    "dashboard": P(STAFF),  # sends a curator to campaigns, a scientist to runs
    "dash-run": P(SCIENTISTS),
    "dash-overlay": P(SCIENTISTS),
    "dash-new-reward": P(SCIENTISTS),
    "dash-new-policy": P(SCIENTISTS),
    "dash-new-generation": P(SCIENTISTS),
    "dash-registry": P(SCIENTISTS),
    "dash-leaderboard": P(SCIENTISTS),
    "dash-reward-model": P(SCIENTISTS),
    "dash-checkpoint": P(SCIENTISTS),
    "dash-snapshot": P(STAFF),
    "dash-compare-rm": P(SCIENTISTS),
    "dash-compare-ckpt": P(SCIENTISTS),
    "dash-campaigns": P(STAFF),
    "dash-new-campaign": P(STAFF),
    "dash-campaign": P(STAFF),
    "dash-campaign-items": P(STAFF),
    "dash-item": P(STAFF),
    "dash-people": P(CURATORS),
    "dash-imports": P(CURATORS),
    "dash-taxonomy": P(CURATORS),
    "dash-criterion-new": P(CURATORS),
    "dash-criterion": P(CURATORS),
    "dash-guideline": P(CURATORS),
    "dash-task-type-new": P(CURATORS),
    "dash-task-type": P(CURATORS),
    # Django's password-reset flow is public by design (the token in the link is the credential).
    "password_reset": P(EVERYONE),
    "password_reset_done": P(EVERYONE),
    "password_reset_confirm": P(EVERYONE),
    "password_reset_complete": P(EVERYONE),
}

# Writes on routes whose GET is open to more roles: checked as a second row of the matrix.
WRITE_POLICY: dict[tuple[str, str], Policy] = {
    ("api-task-types", "POST"): P(CURATORS, "POST"),
    ("api-task-type", "PATCH"): P(CURATORS, "PATCH"),
    ("api-criteria", "POST"): P(CURATORS, "POST"),
    ("api-criterion", "PATCH"): P(CURATORS, "PATCH"),
    ("api-users", "POST"): P(CURATORS, "POST"),
    ("api-user", "PATCH"): P(CURATORS, "PATCH"),
    ("api-campaigns", "POST"): P(CURATORS, "POST"),
    ("api-campaign", "PATCH"): P(CURATORS, "PATCH"),
    ("api-snapshots", "POST"): P(STAFF, "POST"),
    ("reward-runs", "POST"): P(STAFF, "POST"),
    ("reward-baselines", "POST"): P(STAFF, "POST"),
    ("reward-model-evaluations", "POST"): P(STAFF, "POST"),
    ("api-policy-runs", "POST"): P(STAFF, "POST"),
    ("api-policy-generations", "POST"): P(STAFF, "POST"),
    ("api-export-jobs", "POST"): P(STAFF, "POST"),
}


def walk(patterns=None, namespace: str = "") -> list[str]:
    """Every route name in the URL configuration, with its namespace (``admin:index``)."""
    names = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names += walk(entry.url_patterns, ns)
        elif isinstance(entry, URLPattern):
            if entry.name is None and namespace.startswith("admin:"):
                continue  # the admin's object redirects; the admin is only sampled (below)
            if entry.name is None:
                raise AssertionError(f"unnamed route {entry.pattern}: name it and declare its policy")
            names.append(namespace + entry.name)
    return names


@pytest.fixture
def world(tmp_path):
    """One of each object the routes name, plus a user per role; the annotator holds a lease and
    one judgment (and ``other`` annotator is the one outside a lease)."""
    users = {ANN: make_user("m-annotator", "annotator"), CUR: make_user("m-curator", "curator"),
             SCI: make_user("m-scientist", "scientist")}
    users[ADMIN] = make_user("m-admin")
    users[ADMIN].is_superuser = users[ADMIN].is_staff = True
    users[ADMIN].save()
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    done = lease_next(campaign=campaign, annotator=users[ANN])
    a, _b = done.item.slots.order_by("position").values_list("candidate_id", flat=True)
    judgment_submit(lease_uid=done.uid, annotator=users[ANN], idempotency_key=str(done.uid), active_ms=2000,
                    answers={"structure": a})
    lease = lease_next(campaign=campaign, annotator=users[ANN])
    snapshot = snapshot_create(name="matrix", filter={"campaign_ids": [campaign.pk]}, enqueue=False)
    reward_job = job_create(kind=JobKind.REWARD, name="rm", config={})
    reward_run = RewardRun.objects.create(job=reward_job, snapshot=snapshot, base_model="tiny", preset="tiny",
                                          output_dir=str(tmp_path / "rm"), config={})
    model = RewardModel.objects.create(run=reward_run, name="rm", path=str(tmp_path / "rm"), base_model="tiny",
                                       template_version="onereward-query-v2", snapshot=snapshot)
    policy_job = job_create(kind=JobKind.POLICY, name="rl", config={})
    policy_run = PolicyRun.objects.create(job=policy_job, reward_model=model, algorithm=2, output_dir=str(tmp_path / "rl"),
                                          config={})
    checkpoint = PolicyCheckpoint.objects.create(name="ck", base_policy="tiny", weights_dir=str(tmp_path / "w"),
                                                 run=policy_run, reward_model=model, algorithm=2)
    export_job = job_create(kind=JobKind.EXPORT, name="export", config={})
    judgment = Judgment.objects.filter(annotator=users[ANN]).first()
    item = lease.item
    sample_file = item.sample.source_image.name
    return {
        "users": users, "campaign": campaign, "lease": lease, "judgment": judgment, "item": item,
        "snapshot": DatasetSnapshot.objects.get(pk=snapshot.pk), "reward_run": reward_run, "model": model,
        "policy_run": policy_run, "checkpoint": checkpoint, "export_job": export_job, "reward_job": reward_job,
        "media": sample_file,
    }


def route_kwargs(name: str, w: dict) -> dict:
    """URL kwargs for ``name``: real objects where the world has one, dummy ids where 404 is fine."""
    missing = 999_999
    table = {
        "api-task-type": {"slug": "fill"}, "api-criterion": {"slug": "structure"},
        "api-guideline-publish": {"slug": "structure"},
        "api-user": {"pk": w["users"][ANN].pk}, "api-user-reset-password": {"pk": w["users"][ANN].pk},
        "api-campaign-action": {"pk": w["campaign"].pk, "action": "pause"},
        "api-item": {"pk": w["item"].pk}, "api-item-adjudicate": {"pk": w["item"].pk},
        "api-item-gold": {"pk": w["item"].pk},
        "api-submit": {"uid": w["lease"].uid}, "api-skip": {"uid": w["lease"].uid},
        "api-release": {"uid": w["lease"].uid},
        "api-judgment": {"pk": w["judgment"].pk},
        "api-export": {"fmt": "jsonl"},
        "api-export-job": {"pk": w["export_job"].pk}, "api-export-cancel": {"pk": w["export_job"].pk},
        "api-export-download": {"pk": w["export_job"].pk},
        "api-snapshot": {"pk": w["snapshot"].pk},
        "reward-run": {"pk": w["reward_run"].pk}, "reward-run-action": {"pk": w["reward_run"].pk, "action": "nothing"},
        "reward-model": {"pk": w["model"].pk}, "reward-model-score": {"pk": w["model"].pk},
        "reward-model-evaluations": {"pk": w["model"].pk}, "reward-score": {"job_id": missing},
        "reward-baseline": {"pk": missing}, "reward-baseline-cancel": {"pk": missing},
        "api-policy-run": {"pk": w["policy_run"].pk},
        "api-policy-run-artifact": {"pk": w["policy_run"].pk, "path": "nothing.txt"},
        "api-policy-run-action": {"pk": w["policy_run"].pk, "action": "nothing"},
        "api-policy-checkpoint": {"pk": w["checkpoint"].pk},
        "api-policy-promotion-gate": {"pk": w["checkpoint"].pk},
        "api-policy-promote": {"pk": w["checkpoint"].pk},
        "api-policy-generation": {"pk": missing}, "api-import": {"pk": missing},
        # A missing job: the roles let in get 404, so the world's jobs stay as they are for the others.
        "api-job-cancel": {"pk": missing}, "api-job-resume": {"pk": missing},
        "dash-api-job": {"pk": w["reward_job"].pk}, "dash-api-job-tags": {"pk": w["reward_job"].pk},
        "dash-api-artifact": {"pk": w["reward_job"].pk, "path": "nothing.txt"},
        "dash-api-lineage": {"kind": "reward", "pk": w["model"].pk},
        "dash-api-campaign": {"pk": w["campaign"].pk},
        "media": {"path": w["media"]},
        "annotate": {"pk": w["campaign"].pk},
        "dash-run": {"pk": w["reward_job"].pk},
        "dash-reward-model": {"pk": w["model"].pk}, "dash-checkpoint": {"pk": w["checkpoint"].pk},
        "dash-snapshot": {"pk": w["snapshot"].pk},
        "dash-campaign": {"pk": w["campaign"].pk}, "dash-campaign-items": {"pk": w["campaign"].pk},
        "dash-item": {"pk": w["item"].pk},
        "dash-criterion": {"slug": "structure"}, "dash-guideline": {"slug": "structure"},
        "dash-task-type": {"slug": "fill"},
        "password_reset_confirm": {"uidb64": "MQ", "token": "set-password"},
    }
    for campaign_route in ("api-campaign", "api-campaign-progress", "api-campaign-quality", "api-next", "api-last",
                           "api-campaign-items"):
        table[campaign_route] = {"pk": w["campaign"].pk}
    return table.get(name, {})


def _client(role: str, users: dict) -> Client:
    client = Client()
    if role != ANON:
        client.force_login(users[role])
    return client


def _request(client: Client, method: str, url: str):
    if method == "GET":
        return client.get(url)
    return client.generic(method, url, "{}", content_type="application/json")


def _refused(response) -> bool:
    """401/403, or a redirect to a login page (Django's or the admin's)."""
    if response.status_code in (401, 403):
        return True
    location = response.get("Location", "") if response.status_code in (301, 302) else ""
    return "/login/" in location


def _check(name: str, policy: Policy, w: dict, clients: dict) -> list[str]:
    url = reverse(name, kwargs=route_kwargs(name, w))
    problems = []
    for role in policy.asked or ROLES:
        client = _client(role, w["users"]) if policy.logs_out else clients[role]
        response = _request(client, policy.method, url)
        code = response.status_code
        if code >= 500:
            problems.append(f"{name} {policy.method} {url} as {role}: {code}")
        elif policy.logs_out and role in policy.roles and code in (200, 204, 302):
            continue
        elif role in policy.roles and _refused(response):
            problems.append(f"{name} {policy.method} {url} as {role}: refused ({code}) but the policy allows it")
        elif role not in policy.roles and not (_refused(response) or (policy.hides and code == 404)):
            problems.append(f"{name} {policy.method} {url} as {role}: {code} but the policy refuses it "
                            f"(allowed: {sorted(policy.roles)})")
    return problems


def undeclared(names: list[str]) -> list[str]:
    """Route names (outside the admin) with no entry in ``POLICY``."""
    return sorted(n for n in set(names) - set(POLICY) if not n.startswith("admin:"))


def test_every_route_answers_each_role_as_its_declared_policy(world):
    names = [n for n in walk() if not n.startswith("admin:")]
    undeclared_names = undeclared(names)
    assert not undeclared_names, \
        f"routes without a declared policy in tests/test_permission_matrix.py: {undeclared_names}"
    stale = sorted(set(POLICY) - set(names))
    assert not stale, f"POLICY names routes that no longer exist: {stale}"
    stale_writes = sorted(n for n, _ in WRITE_POLICY if n not in POLICY)
    assert not stale_writes, stale_writes

    clients = {role: _client(role, world["users"]) for role in ROLES}
    problems = []
    for name in names:
        problems += _check(name, POLICY[name], world, clients)
    for (name, _method), policy in WRITE_POLICY.items():
        problems += _check(name, policy, world, clients)
    assert not problems, "\n".join(problems)


def test_admin_is_sampled_and_closed_to_non_staff(world):
    """The admin (every ``admin:`` route) is Django's, model-permission checked; its index must
    send anyone who is not staff to the admin login and let the superuser in."""
    url = reverse("admin:index")
    for role in (ANON, ANN, SCI):
        response = _client(role, world["users"]).get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], (role, response.status_code)
    assert _client(ADMIN, world["users"]).get(url).status_code == 200


def test_a_route_without_a_policy_is_named_by_the_check():
    """The guard itself: ``walk`` finds routes by name, and a name that is not declared is what the
    matrix test reports (here: a route that only exists in this check)."""
    names = walk()
    assert "api-submit" in names and "dash-item" in names and "admin:index" in names
    fake = "api-brand-new-route"
    assert fake in undeclared([*names, fake]) and "admin:index" not in undeclared(names)
    assert "api-submit" not in undeclared(names)


def test_a_dummy_lease_is_not_found_for_its_own_role(world):
    """Allowed roles reaching a missing object get 404, not 403 (the matrix counts 404 as 'let in')."""
    client = _client(ANN, world["users"])
    url = reverse("api-release", kwargs={"uid": uuid.uuid4()})
    assert client.post(url, "{}", content_type="application/json").status_code == 404
    assert Job.objects.filter(kind=JobKind.EXPORT).count() == 1
