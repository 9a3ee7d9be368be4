"""Simulated annotators that work through the real HTTP API, like people at the workspace.

Each annotator is a thread with its own ``requests.Session``: it logs in
(``POST /api/auth/token/``), then for every campaign it was given it leases items
(``POST /api/campaigns/<id>/next/``) and submits one answer per criterion
(``POST /api/leases/<uid>/submit/`` with an idempotency key) until the campaign returns 204.

The choice comes from ``synthetic.annotators.SimulatedAnnotator`` applied to the *oracle scores* of
the candidates in the order the server displayed them, so an annotator's left bias falls on the
screen's left (first) slot, exactly where a person's would. The oracle scores ("what the annotator
perceives") are looked up by candidate id in a table the demo computed when it stored the
candidates. Only loopback targets are accepted, and every loop is bounded.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import requests

from synthetic.annotators import SimulatedAnnotator

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_S = 60
#: How long one POST keeps retrying connection errors and 5xx (a database restart answers 503
#: with Retry-After for a few seconds; a busy SQLite file, a 5xx for a moment).
RETRY_PATIENCE_S = 60.0


def check_loopback(base_url: str) -> str:
    """The base URL without a trailing slash; refuses anything but http(s)://loopback."""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"simulated annotators only talk to a local server (127.0.0.1), not {base_url!r}")
    return base_url.rstrip("/")


@dataclass
class AnnotatorStats:
    username: str
    submitted: int = 0
    judgments: int = 0
    replays: int = 0
    errors: int = 0
    left_choices: int = 0
    decisive_pairwise: int = 0
    by_campaign: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class AnnotatorAccount:
    username: str
    password: str
    profile: SimulatedAnnotator


def _answer(mode: str, candidates: Sequence[dict], criteria: Sequence[str],
            scores: Mapping[int, Mapping[str, float]], profile: SimulatedAnnotator,
            rng: np.random.Generator, stats: AnnotatorStats) -> dict:
    """One answer per criterion for the candidates as displayed (index 0 = left / first)."""
    ids = [int(c["id"]) for c in candidates]
    answers: dict = {}
    for crit in criteria:
        shown = [scores.get(i, {}).get(crit) for i in ids]
        if any(s is None for s in shown):  # criterion not applicable (e.g. prompt-free extend)
            answers[crit] = "tie" if mode == "pairwise" else "no_difference"
            continue
        if mode == "pairwise":
            choice = profile.choose_pairwise(float(shown[0]), float(shown[1]), rng)
            if choice == "tie":
                answers[crit] = "tie"
            else:
                stats.decisive_pairwise += 1
                stats.left_choices += choice == "left"
                answers[crit] = ids[0] if choice == "left" else ids[1]
        else:
            picked = profile.choose_best_worst([float(s) for s in shown], rng)
            answers[crit] = "no_difference" if picked is None else {"best": ids[picked[0]], "worst": ids[picked[1]]}
    return answers


class _Client:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.session = requests.Session()

    def post(self, path: str, json: dict | None = None, data: dict | None = None) -> requests.Response:
        """POST, retrying connection errors and 5xx for up to ``RETRY_PATIENCE_S`` (waiting what a
        ``Retry-After`` asks, capped); a retried submit is safe because it carries its idempotency key."""
        last: Exception | None = None
        deadline = time.monotonic() + RETRY_PATIENCE_S
        attempt = 0
        while True:
            attempt += 1
            wait = min(0.2 * attempt, 2.0)
            try:
                resp = self.session.post(self.base + path, json=json, data=data, timeout=TIMEOUT_S)
            except requests.ConnectionError as exc:
                last = exc
            else:
                if resp.status_code < 500:
                    return resp
                last = RuntimeError(f"{path}: HTTP {resp.status_code} {resp.text[:200]}")
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 5.0)
            if time.monotonic() + wait > deadline:
                raise RuntimeError(f"POST {path} failed after {attempt} tries: {last}")
            time.sleep(wait)


def annotate_campaign(client: _Client, campaign_id: int, account: AnnotatorAccount,
                      scores: Mapping[int, Mapping[str, float]], rng: np.random.Generator,
                      stats: AnnotatorStats, max_items: int) -> None:
    for _ in range(max_items):
        resp = client.post(f"/api/campaigns/{campaign_id}/next/", json={"exclude": []})
        if resp.status_code == 204:
            return
        if resp.status_code != 200:
            stats.errors += 1
            raise RuntimeError(f"next item for campaign {campaign_id}: HTTP {resp.status_code} {resp.text[:300]}")
        payload = resp.json()
        criteria = [c["slug"] for c in payload["criteria"]]
        answers = _answer(payload["campaign"]["mode"], payload["candidates"], criteria, scores, account.profile, rng,
                          stats)
        key = uuid.uuid4().hex
        body = {"answers": answers, "idempotency_key": key, "active_ms": int(rng.integers(1500, 9000))}
        sub = client.post(f"/api/leases/{payload['lease']}/submit/", json=body)
        if sub.status_code not in (200, 201):
            stats.errors += 1
            raise RuntimeError(f"submit lease {payload['lease']}: HTTP {sub.status_code} {sub.text[:300]}")
        stats.replays += sub.status_code == 200
        stats.submitted += 1
        stats.judgments += len(sub.json())
        stats.by_campaign[campaign_id] += 1
    raise RuntimeError(f"{account.username}: campaign {campaign_id} still had work after {max_items} items")


def run_annotators(base_url: str, accounts: Sequence[AnnotatorAccount], campaign_ids: Sequence[int],
                   scores: Mapping[int, Mapping[str, float]], seed: int = 0, max_items: int = 20_000,
                   progress=None) -> list[AnnotatorStats]:
    """Run every account in its own thread over every campaign (each starts at a different campaign
    so they spread out); returns per-annotator stats. Raises if any thread failed."""
    base = check_loopback(base_url)
    results: list[AnnotatorStats] = [AnnotatorStats(a.username) for a in accounts]
    failures: list[str] = []

    def work(k: int, account: AnnotatorAccount) -> None:
        stats = results[k]
        try:
            client = _Client(base)
            resp = client.post("/api/auth/token/", data={"username": account.username, "password": account.password})
            if resp.status_code != 200:
                raise RuntimeError(f"login of {account.username}: HTTP {resp.status_code} {resp.text[:200]}")
            client.session.headers["Authorization"] = f"Token {resp.json()['token']}"
            rng = np.random.default_rng([seed, k])
            order = list(campaign_ids[k % len(campaign_ids):]) + list(campaign_ids[:k % len(campaign_ids)])
            for cid in order:
                annotate_campaign(client, cid, account, scores, rng, stats, max_items)
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            failures.append(f"{account.username}: {exc}")

    threads = [threading.Thread(target=work, args=(k, a), name=f"annotator-{a.username}", daemon=True)
               for k, a in enumerate(accounts)]
    for t in threads:
        t.start()
    started = time.time()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=5)
        if progress is not None and any(t.is_alive() for t in threads):
            done = sum(s.submitted for s in results)
            progress(f"  annotating over HTTP: {done} items submitted ({time.time() - started:.0f}s)")
    if failures:
        raise RuntimeError("simulated annotators failed: " + "; ".join(failures[:5]))
    return results
