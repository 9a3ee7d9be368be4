/* Annotator workspace. Plain JS, no build step; everything goes through the REST API
 * (session auth + CSRF header). See frontend/templates/frontend/workspace.html for the DOM.
 *
 * Answers are kept in screen terms (left/right, tile index) and turned into the API's
 * candidate ids only when sent: pairwise = the better candidate's id, "tie" or "both_bad";
 * best–worst = {"best": id, "worst": id} or "no_difference". The server stores the
 * displayed order from the lease, so the client never sends it.
 */
(() => {
  "use strict";

  const root = document.getElementById("ws");
  if (!root) return;
  const CAMPAIGN = root.dataset.campaign;
  const MODE = root.dataset.mode === "best_worst" ? "best_worst" : "pairwise";
  const URLS = {
    next: `/api/campaigns/${CAMPAIGN}/next/`,
    last: `/api/campaigns/${CAMPAIGN}/last/`,
    progress: `/api/campaigns/${CAMPAIGN}/progress/`,
    submit: (lease) => `/api/leases/${lease}/submit/`,
    skip: (lease) => `/api/leases/${lease}/skip/`,
    release: (lease) => `/api/leases/${lease}/release/`,
    judgment: (id) => `/api/judgments/${id}/`,
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "html") node.innerHTML = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title" || k === "type") {
        node.setAttribute(k, v === true ? "" : v);
      } else node[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  };

  // ---------------------------------------------------------------- API plumbing
  class ApiError extends Error {
    constructor(status, data, retryAfterMs = null) {
      super((data && data.message) || `The server answered ${status}.`);
      this.status = status;
      this.data = data || {};
      this.code = this.data.code || "";
      this.retryAfterMs = retryAfterMs;  // the server's Retry-After, when it sent one in seconds
    }
  }
  class NetworkError extends Error {}

  let clockOffset = 0; // server time − client time, from the Date header (second resolution)
  const serverNow = () => Date.now() + clockOffset;

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    let resp;
    try {
      resp = await fetch(url, {
        method, headers, credentials: "same-origin",
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new NetworkError(err && err.message ? err.message : "Network error");
    }
    const date = resp.headers.get("Date");
    if (date) {
      const off = Date.parse(date) - Date.now();
      if (Number.isFinite(off) && Math.abs(off - clockOffset) > 2000) clockOffset = off;
    }
    if (resp.status === 204) return null;
    let data = null;
    const text = await resp.text().catch(() => "");
    if (text) {
      try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 200) }; }
    }
    if (!resp.ok) {
      const after = Number(resp.headers.get("Retry-After"));
      throw new ApiError(resp.status, data, resp.headers.has("Retry-After") && Number.isFinite(after) ? after * 1000 : null);
    }
    return data;
  }

  const retryable = (err) => err instanceof NetworkError || (err instanceof ApiError && (err.status >= 500 || err.status === 429));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** Run fn until it succeeds or fails for a non-transient reason (same request each time).
   *  A transient error is retried on the short schedule of ``delays``; an answer that says when to
   *  come back (503 + Retry-After while the database restarts) is waited out as the server asks,
   *  for up to ``patienceMs`` in all, so a restart longer than the short schedule loses nothing. */
  async function withRetry(fn, onRetry, delays = [300, 800, 1600, 3200, 6000], patienceMs = 60000) {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!retryable(err)) throw err;
        const wait = err.retryAfterMs ?? (attempt < delays.length ? delays[attempt] : null);
        if (wait === null || Date.now() - started + wait > patienceMs) throw err;
        onRetry(attempt + 1, err);
        await sleep(wait);
      }
    }
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const storeOn = (area) => ({
    get(key) { try { return JSON.parse(area().getItem(key)); } catch { return null; } },
    set(key, value) { try { area().setItem(key, JSON.stringify(value)); } catch { /* private mode, full */ } },
    del(key) { try { area().removeItem(key); } catch { /* ignore */ } },
  });
  const store = storeOn(() => sessionStorage);

  /** Answers given so far, per lease, in localStorage: a reload (or a crash, or another tab taking
   *  over) gets the same lease back from /next/ while it is unexpired, and with it these answers.
   *  Kept in screen terms, which the lease's stored display order keeps stable. */
  const DRAFT_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
  const drafts = {
    ...storeOn(() => localStorage),
    key: (lease) => `or:draft:${lease}`,
    save(v) {
      if (v.editing) return;
      if (v.rows.every(rowEmpty)) { this.del(this.key(v.payload.lease)); return; }
      this.set(this.key(v.payload.lease), { rows: v.rows, active: v.active, at: Date.now() });
    },
    restore(v) {
      const d = this.get(this.key(v.payload.lease));
      if (!d || !Array.isArray(d.rows) || d.rows.length !== v.rows.length) return false;
      v.rows = d.rows.map((r) => ({ ...emptyRow(), ...r }));
      v.active = Math.min(Math.max(0, Number(d.active) || 0), v.rows.length - 1);
      return !v.rows.every(rowEmpty);
    },
    drop(lease) { this.del(this.key(lease)); },
    prune() {  // drafts of leases long expired would otherwise pile up
      try {
        for (let i = localStorage.length - 1; i >= 0; i--) {
          const k = localStorage.key(i);
          if (!k || !k.startsWith("or:draft:")) continue;
          const d = this.get(k);
          if (!d || !(Date.now() - d.at < DRAFT_MAX_AGE_MS)) localStorage.removeItem(k);
        }
      } catch { /* storage unavailable */ }
    },
  };

  // ---------------------------------------------------------------- active time
  class ActiveTimer {
    constructor() { this.ms = 0; this.since = null; this.sync(); }
    static active() { return document.visibilityState === "visible" && document.hasFocus(); }
    sync() {
      const now = performance.now();
      if (this.since !== null) { this.ms += now - this.since; this.since = null; }
      if (ActiveTimer.active()) this.since = now;
    }
    total() { this.sync(); return Math.round(this.ms); }
  }

  // ---------------------------------------------------------------- state
  const S = {
    view: null,        // what is on screen: {payload, rows, active, key, timer, editing}
    stash: null,       // the current item while the last one is being edited
    upcoming: null,    // the prefetched next payload
    upcomingPromise: null,
    pending: null,     // the submit still on its way while the next item is already on screen
    pendingLease: null,
    parked: null,      // the item that was on screen when a background submit failed and came back
    busy: false,
    finished: false,
    mask: true,
    swipe: false,
    swipePos: 0.5,
    flicker: false,
    zoom: { s: 1, x: 0, y: 0 },
    keptImages: [],
  };

  const criteriaOf = (v) => v.payload.criteria;
  const candsOf = (v) => v.payload.candidates;
  const emptyRow = () => (MODE === "pairwise" ? { value: null } : { best: null, worst: null, nodiff: false });
  const rowDone = (r) => (MODE === "pairwise" ? r.value !== null : r.nodiff || (r.best !== null && r.worst !== null));
  const rowEmpty = (r) => (MODE === "pairwise" ? r.value === null : !r.nodiff && r.best === null && r.worst === null);

  function makeView(payload, { editing = false } = {}) {
    const keyName = `or:key:${payload.lease}`;
    let key = editing ? null : store.get(keyName);
    if (!editing && !key) { key = uuid(); store.set(keyName, key); }
    const view = {
      payload, editing, key,
      rows: payload.criteria.map(emptyRow),
      active: 0,
      timer: new ActiveTimer(),
      openGuide: -1,
    };
    if (!editing) view.restored = drafts.restore(view);
    return view;
  }

  /** Row state → the API's answer for that criterion (null while unanswered). */
  function rowAnswer(v, i) {
    const r = v.rows[i];
    const c = candsOf(v);
    if (MODE === "pairwise") {
      if (r.value === "L") return c[0].id;
      if (r.value === "R") return c[1].id;
      return r.value;
    }
    if (r.nodiff) return "no_difference";
    if (r.best === null || r.worst === null) return null;
    return { best: c[r.best].id, worst: c[r.worst].id };
  }

  /** The API's answer → row state (for editing the last item). */
  function answerToRow(v, answer) {
    const ids = candsOf(v).map((c) => c.id);
    const r = emptyRow();
    if (answer === null || answer === undefined) return r;
    if (MODE === "pairwise") {
      if (answer === "tie" || answer === "both_bad") r.value = answer;
      else if (answer === ids[0]) r.value = "L";
      else if (answer === ids[1]) r.value = "R";
      return r;
    }
    if (answer === "no_difference") { r.nodiff = true; return r; }
    if (answer && typeof answer === "object") {
      const b = ids.indexOf(answer.best), w = ids.indexOf(answer.worst);
      if (b >= 0 && w >= 0) { r.best = b; r.worst = w; }
    }
    return r;
  }

  /** A stored judgment → the API answer; "a"/"b" name canonical positions (candidate.position). */
  function judgmentToAnswer(j, candidates) {
    if (j.choice === "best_worst") return { best: j.best, worst: j.worst };
    if (["tie", "both_bad", "no_difference"].includes(j.choice)) return j.choice;
    const wanted = j.choice === "a" ? 0 : j.choice === "b" ? 1 : -1;
    const hit = (candidates || []).find((c) => c.position === wanted);
    return hit ? hit.id : null;
  }

  // ---------------------------------------------------------------- rendering
  const labelOf = (i) => "ABCDEFGH"[i];

  function setState(state) {
    root.dataset.state = state;
  }

  function showAlert(message, kind = "error", details = []) {
    const box = $("ws-alert");
    box.className = `alert alert-${kind}`;
    box.replaceChildren(el("strong", { text: message }));
    if (details.length) box.append(el("ul", {}, ...details.map((d) => el("li", { text: d }))));
    box.hidden = false;
  }
  const clearAlert = () => { $("ws-alert").hidden = true; };
  const setStatus = (text) => { $("status-line").textContent = text || ""; };

  let toastTimer = null;
  function flash(text) {
    setStatus(text);
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => setStatus(""), 3500);
  }

  function errorDetails(err) {
    const out = [];
    const names = {};
    if (S.view) for (const c of criteriaOf(S.view)) names[c.slug] = c.name;
    const walk = (obj, path) => {
      if (Array.isArray(obj)) { for (const m of obj) if (typeof m !== "object") out.push(path ? `${path}: ${m}` : String(m)); else walk(m, path); return; }
      if (obj && typeof obj === "object") { for (const [k, v] of Object.entries(obj)) walk(v, k === "answers" ? path : (names[k] || k)); return; }
      if (obj !== null && obj !== undefined) out.push(path ? `${path}: ${obj}` : String(obj));
    };
    if (err instanceof ApiError) walk(err.data.fields || {}, "");
    return out;
  }

  function showError(err, prefix = "") {
    if (err instanceof NetworkError) {
      showAlert(`${prefix}Could not reach the server. Nothing is lost — press Enter to try again.`);
    } else if (err instanceof ApiError && err.status === 403 && /credentials|authenticat/i.test(err.message)) {
      showAlert("Your session has ended. Sign in again (your current item is kept).");
    } else {
      showAlert(prefix + (err.message || String(err)), "error", errorDetails(err));
    }
  }

  // The annotator's own standing, in items: what is left for them, and once nothing is, what is
  // left for others. Kept between polls by counting this tab's own submits and skips.
  let mine = null;  // {left, submitted, others, total, done}

  function renderProgress(progress) {
    if (progress) {
      mine = {
        left: progress.mine_left, submitted: progress.mine_submitted,
        others: progress.items_left_for_others, total: progress.items_total, done: progress.items_done,
      };
    }
    if (!mine || mine.left === undefined) return;
    const ofMine = mine.submitted + mine.left;
    const pct = ofMine ? Math.round((mine.submitted / ofMine) * 1000) / 10 : 100;
    $("progress-fill").style.width = `${Math.min(100, pct)}%`;
    $("progress").setAttribute("aria-valuenow", String(pct));
    const campaign = mine.total ? ` · campaign ${mine.done} of ${mine.total} items complete` : "";
    let text;
    if (mine.left > 0) text = `${mine.left} left for you${campaign}`;
    else if (mine.others > 0) text = `Done for you — ${mine.others} item${mine.others === 1 ? "" : "s"} left for others`;
    else text = "Campaign complete";
    $("progress-text").textContent = text;
    $("progress").setAttribute("aria-valuetext", text);
    $("mine-count").textContent = String(mine.submitted);
  }

  function renderSource(v) {
    const s = v.payload.sample;
    const img = $("source-img");
    if (img.getAttribute("src") !== s.source_url) img.src = s.source_url;
    const overlay = $("mask-overlay");
    overlay.style.maskImage = `url("${s.mask_url}")`;
    overlay.hidden = !S.mask;
    $("mask-btn").setAttribute("aria-pressed", String(S.mask));
    const promptCrit = criteriaOf(v).filter((c) => c.uses_prompt).map((c) => c.name);
    const line = $("prompt-line");
    line.replaceChildren(
      el("span", { class: "tag", text: s.task }),
      el("span", { class: "prompt-text", text: s.prompt ? `“${s.prompt}”` : "(no prompt)" }),
    );
    line.append(el("span", {
      class: "prompt-note",
      text: promptCrit.length ? `Prompt counts only for ${promptCrit.join(", ")}.` : "The prompt is shown for context; no criterion judges it.",
    }));
  }

  function renderCandidates(v) {
    const box = $("cands");
    const cands = candsOf(v);
    const n = cands.length;
    box.style.setProperty("--cols", String(n <= 3 ? n : Math.ceil(n / 2)));
    root.style.setProperty("--ar", `${v.payload.sample.width} / ${v.payload.sample.height}`);
    box.dataset.n = String(n);
    box.replaceChildren(...cands.map((c, i) => {
      const side = MODE === "pairwise" ? (i === 0 ? "left" : "right") : null;
      const vp = el("div", { class: "viewport", "data-idx": String(i) },
        el("img", { class: "zimg", src: c.url, alt: `Candidate ${labelOf(i)}`, draggable: false }));
      if (i === 0 && n > 1) {
        vp.append(el("img", { class: "zimg flicker-img", src: cands[1].url, alt: "", draggable: false, "aria-hidden": "true" }));
      }
      return el("figure", { class: "cand", "data-idx": String(i), "data-candidate": String(c.id) },
        el("figcaption", { class: "cand-head" },
          el("span", { class: "cand-label", text: labelOf(i) }),
          MODE === "pairwise"
            ? el("span", { class: "cand-key muted", text: side })
            : el("span", { class: "cand-key" }, el("kbd", { text: String(i + 1) })),
          el("span", { class: "cand-badges" })),
        vp);
    }));
    $("swipe-a").src = cands[0].url;
    $("swipe-b").src = cands[Math.min(1, n - 1)].url;
    applyZoom();
  }

  // Each criterion's answers form a radio group named by the criterion (its heading's id), so a
  // screen reader says "Structure, radio group, A better, 1 of 4" instead of four loose buttons.
  const critNameId = (i) => `crit-name-${i}`;

  function pairwiseButtons(i) {
    const opts = [
      ["L", "1", "A better"], ["tie", "2", "Tie"], ["R", "3", "B better"], ["both_bad", "4", "Both bad"],
    ];
    return el("div", { class: "choices choices-4", role: "radiogroup", "aria-labelledby": critNameId(i) },
      ...opts.map(([val, key, label]) => el("button", {
        type: "button", class: `choice choice-${val}`, "data-row": String(i), "data-value": val,
        role: "radio", "aria-checked": "false",
      }, el("kbd", { text: key }), el("span", { text: label }))));
  }

  function bestWorstButtons(i, n) {
    const grid = el("div", { class: "bw-choices", style: `--n: ${n}`, role: "group", "aria-labelledby": critNameId(i) });
    for (const [kind, title] of [["best", "Best"], ["worst", "Worst"]]) {
      const labelId = `bw-${kind}-${i}`;
      const group = el("div", { class: "bw-group", role: "radiogroup", "aria-labelledby": `${critNameId(i)} ${labelId}` },
        el("span", { class: `bw-label bw-label-${kind}`, id: labelId, text: title }));
      for (let k = 0; k < n; k++) {
        group.append(el("button", {
          type: "button", class: `choice bw-choice bw-${kind}-btn`, "data-row": String(i), "data-kind": kind,
          "data-idx": String(k), role: "radio", "aria-checked": "false",
          title: `${title}: ${labelOf(k)} (${kind === "best" ? "" : "Shift+"}${k + 1})`,
        }, el("span", { text: labelOf(k) })));
      }
      grid.append(group);
      if (kind === "best") {
        grid.append(el("button", {
          type: "button", class: "choice nodiff-btn", "data-row": String(i), "data-kind": "nodiff",
          "aria-pressed": "false", title: "No clear difference: this criterion is dropped for this item (0)",
        }, el("kbd", { text: "0" }), el("span", { text: "No clear difference" })));
      }
    }
    return grid;
  }

  function renderCriteria(v) {
    const box = $("criteria");
    const n = candsOf(v).length;
    box.replaceChildren(...criteriaOf(v).map((c, i) => {
      const plain = (c.guideline_markdown || "").replace(/[*_`#>]/g, "");
      const head = el("div", { class: "crit-head" },
        el("span", { class: "crit-num", text: String(i + 1) }),
        el("span", { class: "crit-name", id: critNameId(i), title: plain, text: c.name }),
        el("span", { class: "crit-meta" },
          c.uses_prompt ? el("span", { class: "tag tag-prompt", title: "This criterion judges against the prompt", text: "prompt" }) : null,
          el("button", {
            type: "button", class: "help-btn", "data-row": String(i), "aria-expanded": "false",
            "aria-label": `Guideline for ${c.name}`, title: plain, text: "?",
          }),
          el("span", { class: "crit-status", "data-status": String(i) })));
      const guide = el("div", { class: "guideline", html: c.guideline_html || "<p>No guideline yet.</p>", hidden: true });
      // The description is what the reward model is asked to judge: annotators read the same words.
      if (c.description) guide.prepend(el("p", { class: "crit-description", text: c.description }));
      if (c.guideline_version) guide.append(el("p", { class: "muted small", text: `Guideline v${c.guideline_version}` }));
      return el("div", { class: "crit-row", role: "listitem", "data-row": String(i), "data-slug": c.slug },
        head, MODE === "pairwise" ? pairwiseButtons(i) : bestWorstButtons(i, n), guide);
    }));
  }

  function statusText(r) {
    if (MODE === "pairwise") {
      return { L: "A", R: "B", tie: "Tie", both_bad: "Both bad" }[r.value] || "";
    }
    if (r.nodiff) return "No difference";
    if (r.best !== null && r.worst !== null) return `${labelOf(r.best)} best · ${labelOf(r.worst)} worst`;
    if (r.best !== null) return `${labelOf(r.best)} best · worst?`;
    if (r.worst !== null) return `best? · ${labelOf(r.worst)} worst`;
    return "";
  }

  function updateRows() {
    const v = S.view;
    if (!v) return;
    const n = candsOf(v).length;
    document.querySelectorAll("#criteria .crit-row").forEach((row, i) => {
      const r = v.rows[i];
      row.classList.toggle("is-active", i === v.active);
      row.classList.toggle("is-done", rowDone(r));
      if (i === v.active) row.setAttribute("aria-current", "true"); else row.removeAttribute("aria-current");
      const st = row.querySelector(".crit-status");
      st.textContent = MODE === "pairwise" ? (rowDone(r) ? `✓ ${statusText(r)}` : "") : (rowDone(r) ? "✓" : "");
      st.title = statusText(r);
      const guide = row.querySelector(".guideline");
      guide.hidden = v.openGuide !== i;
      row.querySelector(".help-btn").setAttribute("aria-expanded", String(v.openGuide === i));
      row.querySelectorAll("button.choice").forEach((b) => {
        let on = false;
        if (MODE === "pairwise") on = b.dataset.value === r.value;
        else if (b.dataset.kind === "nodiff") on = r.nodiff;
        else on = !r.nodiff && r[b.dataset.kind] === Number(b.dataset.idx);
        b.setAttribute(b.getAttribute("role") === "radio" ? "aria-checked" : "aria-pressed", String(on));
      });
    });
    // Candidate badges follow the active row.
    const r = v.rows[v.active];
    document.querySelectorAll("#cands .cand").forEach((fig, i) => {
      const badges = fig.querySelector(".cand-badges");
      badges.replaceChildren();
      fig.classList.remove("is-better", "is-best", "is-worst");
      if (!r) return;
      if (MODE === "pairwise") {
        if ((r.value === "L" && i === 0) || (r.value === "R" && i === 1)) {
          fig.classList.add("is-better"); badges.append(el("span", { class: "pill pill-good", text: "better" }));
        } else if (r.value === "tie") badges.append(el("span", { class: "pill", text: "tie" }));
        else if (r.value === "both_bad") badges.append(el("span", { class: "pill pill-bad", text: "bad" }));
      } else if (!r.nodiff) {
        if (r.best === i) { fig.classList.add("is-best"); badges.append(el("span", { class: "pill pill-good", text: "best" })); }
        if (r.worst === i) { fig.classList.add("is-worst"); badges.append(el("span", { class: "pill pill-bad", text: "worst" })); }
      }
    });
    const all = v.rows.every(rowDone);
    const anyChange = v.editing && v.rows.some((row, i) => !rowEmpty(row) && JSON.stringify(rowAnswer(v, i)) !== JSON.stringify(v.original[i]));
    drafts.save(v);
    const submitBtn = $("submit-btn");
    submitBtn.classList.toggle("is-ready", v.editing ? anyChange : all);
    $("submit-label").textContent = v.editing ? "Save changes" : "Submit";
    $("skip-btn").disabled = v.editing;
    $("undo-btn").disabled = v.editing;
    const hint = $("step-hint");
    const crit = criteriaOf(v)[v.active];
    if (v.editing) hint.textContent = "Change rows, Enter saves";
    else if (all) hint.textContent = "All answered — press Enter";
    else if (MODE === "best_worst" && r && !r.nodiff && r.best !== null && r.worst === null) {
      hint.textContent = `${crit.name}: now pick WORST (1–${n})`;
    } else if (MODE === "best_worst") hint.textContent = `${crit.name}: pick BEST (1–${n}) or 0`;
    else hint.textContent = `Now: ${crit.name}`;
  }

  function render() {
    const v = S.view;
    $("ws-empty").hidden = !S.finished;
    $("ws-elsewhere").hidden = S.tab !== "elsewhere";
    $("ws-body").hidden = S.finished || !v;
    $("edit-banner").hidden = !(v && v.editing);
    root.classList.toggle("is-editing", Boolean(v && v.editing));
    if (S.finished || !v) {
      root.dataset.lease = "";
      return;
    }
    root.dataset.lease = v.payload.lease;
    root.dataset.item = String(v.payload.item);
    root.dataset.order = JSON.stringify(candsOf(v).map((c) => c.id));
    renderSource(v);
    renderCandidates(v);
    renderCriteria(v);
    updateRows();
    renderSwipe();
    tickTimer();
  }

  // ---------------------------------------------------------------- lease countdown
  function tickTimer() {
    const v = S.view;
    const box = $("lease-timer");
    const out = $("lease-left");
    if (!v || S.finished || v.editing) { out.textContent = "--:--"; box.classList.remove("is-warn", "is-expired"); return; }
    const left = Math.round((Date.parse(v.payload.expires_at) - serverNow()) / 1000);
    if (left <= 0) {
      out.textContent = "expired";
      box.title = "Your hold on this item ran out; submitting still works unless someone else took it.";
    } else {
      const m = Math.floor(left / 60), s = left % 60;
      out.textContent = `${m}:${String(s).padStart(2, "0")}`;
      box.title = "Time left on your hold of this item";
    }
    box.classList.toggle("is-warn", left > 0 && left <= 60);
    box.classList.toggle("is-expired", left <= 0);
  }
  setInterval(tickTimer, 1000);

  // ---------------------------------------------------------------- queue flow
  function prefetch(payload) {
    const urls = [payload.sample.source_url, payload.sample.mask_url, ...payload.candidates.map((c) => c.url)];
    S.keptImages = urls.map((u) => {
      const im = new Image();
      im.decoding = "async";
      im.src = u;
      im.decode().catch(() => {}); // decoded while the annotator thinks, not after the key
      return im;
    });
  }

  function fetchUpcoming() {
    const current = S.view && !S.view.editing ? S.view : S.stash;
    if (!current) return Promise.resolve(null);
    const lease = current.payload.lease;
    const exclude = S.pendingLease ? [lease, S.pendingLease] : [lease];
    S.upcoming = null;
    S.upcomingPromise = api("POST", URLS.next, { exclude })
      .then((p) => {
        if (p && !exclude.includes(p.lease)) { S.upcoming = p; prefetch(p); }
        return p;
      })
      .catch(() => null) // prefetch is best-effort; advance() asks again
      .finally(() => { S.upcomingPromise = null; });
    return S.upcomingPromise;
  }

  function show(payload) {
    const view = makeView(payload);
    showView(view);
    if (view.restored) flash("Your answers to this item were restored.");
  }

  function showView(view) {
    S.finished = false;
    S.view = view;
    resetZoom();
    render();
    setState("ready");
  }

  function showFinished(title, text) {
    S.finished = true;
    S.view = null;
    S.upcoming = null;
    $("empty-title").textContent = title || "Done for you — nothing left for you here";
    $("empty-text").textContent = text || "Every item you can judge in this campaign is done, or held by another annotator. Thank you!";
    render();
    setState("finished");
  }

  // Campaign-wide progress is polled slowly (the server caches it); the hand-out never carries
  // it, so the annotator's own count is kept here between polls.
  const PROGRESS_POLL_MS = 30000;
  async function refreshProgress() {
    try { renderProgress(await api("GET", URLS.progress)); } catch { /* cosmetic */ }
  }
  /** One item of this annotator's finished here (submitted, or skipped when ``submitted`` is false). */
  function countMine({ submitted = true } = {}) {
    if (!mine) return;
    if (submitted) mine.submitted += 1;
    mine.left = Math.max(0, mine.left - 1);
    renderProgress(null);
  }
  setInterval(() => { if (!document.hidden) refreshProgress(); }, PROGRESS_POLL_MS);

  async function start() {
    setState("loading");
    try {
      const p = await withRetry(() => api("POST", URLS.next, {}), (n) => setStatus(`Connecting… (retry ${n})`));
      setStatus("");
      if (!p) { showFinished(); refreshProgress(); return; }
      show(p);
      fetchUpcoming();
      refreshProgress();
    } catch (err) {
      if (err instanceof ApiError && err.code === "campaign_not_active") {
        showFinished("This campaign is not open right now", err.message);
      } else {
        showFinished("Could not load an item", err.message);
        showError(err);
      }
    }
  }

  async function advance() {
    setState("loading");
    if (S.upcomingPromise) await S.upcomingPromise;
    let next = S.upcoming;
    S.upcoming = null;
    if (next && Date.parse(next.expires_at) <= serverNow() + 5000) next = null;
    if (!next) {
      try {
        next = await withRetry(() => api("POST", URLS.next, {}), (n) => setStatus(`Loading the next item… (retry ${n})`));
      } catch (err) { showError(err); showFinished("Could not load the next item", err.message); return; }
    }
    if (!next) { showFinished(); refreshProgress(); return; }
    show(next);
    fetchUpcoming();
  }

  function retryStatus(n, err) {
    const why = err.code === "database_unavailable" ? "The server is briefly unavailable" : "Connection problem";
    setStatus(`${why} — retrying with the same submission (${n})…`);
  }

  function saved(v, answers) {
    store.set(`or:answers:${v.payload.lease}`, answers);
    store.set(`or:last:${CAMPAIGN}`, v.payload.lease);
    store.del(`or:key:${v.payload.lease}`);
    drafts.drop(v.payload.lease);
    countMine();
  }

  /** Whether the next item can go on screen at once (prefetched, or parked by a failed submit). */
  function nextReady() {
    if (S.parked) return true;
    return Boolean(S.upcoming && Date.parse(S.upcoming.expires_at) > serverNow() + 5000);
  }

  /** Put the next item on screen now and send this one's answers in the background (same
   * idempotency key on every retry). If they are refused, the item comes back with its answers
   * and the refusal; the item that was showing waits, parked with its own answers. */
  function submitInBackground(v, body) {
    const next = S.parked || makeView(S.upcoming);
    S.parked = null;
    S.upcoming = null;
    S.pendingLease = v.payload.lease;
    showView(next);
    S.pending = withRetry(() => api("POST", URLS.submit(v.payload.lease), body),
      retryStatus)
      .then(() => {
        saved(v, body.answers);
        setStatus("");
        flash("Saved.");
        S.pendingLease = null;
        if (!S.upcoming && !S.upcomingPromise) fetchUpcoming();
      })
      .catch((err) => {
        S.pendingLease = null;
        setStatus("");
        if (S.tab !== "owner") return;  // another tab took over; the lease's draft still has the answers
        if (S.view && !S.view.editing) S.parked = S.view;
        showView(v);
        if (isFinal(err)) showRefusal(err); else showError(err, "Not saved: ");
      })
      .finally(() => { S.pending = null; });
  }

  async function submit() {
    const v = S.view;
    if (!v || S.busy) return;
    if (v.editing) { saveEdit(); return; }
    const missing = v.rows.findIndex((r) => !rowDone(r));
    if (missing >= 0) {
      setActive(missing);
      flash(`Answer “${criteriaOf(v)[missing].name}” first.`);
      return;
    }
    if (S.pending) {
      await S.pending; // one submission in flight at a time
      if (S.view !== v) return; // the previous one was refused and brought its item back
    }
    const answers = {};
    criteriaOf(v).forEach((c, i) => { answers[c.slug] = rowAnswer(v, i); });
    const body = { answers, idempotency_key: v.key, active_ms: v.timer.total() };
    if (nextReady()) { submitInBackground(v, body); return; }
    S.busy = true;
    root.classList.add("is-busy");
    setStatus("Saving…");
    try {
      await withRetry(() => api("POST", URLS.submit(v.payload.lease), body), retryStatus);
      saved(v, answers);
      clearAlert();
      flash("Saved.");
      S.busy = false;
      root.classList.remove("is-busy");
      await advance();
    } catch (err) {
      S.busy = false;
      root.classList.remove("is-busy");
      setStatus("");
      if (isFinal(err)) showRefusal(err); else showError(err, "Not saved: ");
    }
  }

  /** Refusals that sending again cannot change: this item is closed for this annotator. */
  const isFinal = (err) => err instanceof ApiError && ["lease_expired", "skipped", "already_submitted"].includes(err.code);

  /** Say what happened and leave the answers on screen (and in the draft) until the annotator
   *  chooses to move on: nothing they typed disappears behind their back. */
  function showRefusal(err) {
    const why = {
      already_submitted: "This item was already submitted — from another tab, or by an earlier try whose answer got lost. "
        + "The stored answers stand; use Undo last to change them.",
      skipped: "This item was skipped — from another tab, perhaps — so it takes no answers now.",
      lease_expired: "Your hold on this item ran out and it went to another annotator, so these answers cannot be stored.",
    }[err.code] || err.message;
    showAlert(`Not saved: ${why}`, "warn", ["Your answers are still shown below."]);
    $("ws-alert").append(el("button", { type: "button", class: "btn btn-sm btn-primary", id: "move-on-btn", text: "Go to the next item" }));
    $("move-on-btn").addEventListener("click", moveOn);
    $("move-on-btn").focus();
  }

  /** Leave a refused item: its draft goes, and the parked item (if any) or the next one comes. */
  async function moveOn() {
    const v = S.view;
    if (!v || S.busy) return;
    drafts.drop(v.payload.lease);
    store.del(`or:key:${v.payload.lease}`);
    clearAlert();
    if (S.parked) { const p = S.parked; S.parked = null; showView(p); return; }
    await advance();
  }

  function openSkip() {
    if (!S.view || S.view.editing || S.busy) return;
    $("skip-form").hidden = false;
    $("skip-btn").setAttribute("aria-expanded", "true");
    const input = $("skip-reason");
    input.value = "";
    input.focus();
  }
  function closeSkip() {
    $("skip-form").hidden = true;
    $("skip-btn").setAttribute("aria-expanded", "false");
    if (document.activeElement === $("skip-reason")) $("skip-reason").blur();
  }
  /** Skip with a preset reason (``preset``) or the typed "other" one. */
  async function doSkip(preset) {
    const v = S.view;
    if (!v || S.busy) return;
    if (S.pending) {
      await S.pending; // the server must see the last submit before it hands out more
      if (S.view !== v) return;
    }
    const reason = typeof preset === "string" ? preset : $("skip-reason").value.trim();
    closeSkip();
    S.busy = true;
    setStatus("Skipping…");
    try {
      await withRetry(() => api("POST", URLS.skip(v.payload.lease), { reason }), () => setStatus("Skipping… (retry)"));
      store.del(`or:key:${v.payload.lease}`);
      drafts.drop(v.payload.lease);
      countMine({ submitted: false });
      S.busy = false;
      clearAlert();
      flash("Skipped.");
      await advance();
    } catch (err) {
      S.busy = false;
      setStatus("");
      if (err instanceof ApiError && err.status === 409) { showAlert(err.message, "warn"); await advance(); return; }
      showError(err, "Not skipped: ");
    }
  }

  // ---------------------------------------------------------------- undo last / edit
  async function undoLast() {
    if (!S.view || S.view.editing || S.busy) return;
    if (S.pending) await S.pending; // "last" must be the item just submitted
    let p;
    try { p = await api("GET", URLS.last); } catch (err) { showError(err); return; }
    if (!p) { flash("Nothing to undo yet in this campaign."); return; }
    const ed = makeView(p, { editing: true });
    const local = store.get(`or:answers:${p.lease}`) || {};
    ed.judgments = {};
    ed.original = [];
    let unknown = 0;
    criteriaOf(ed).forEach((c, i) => {
      const j = (p.judgments || []).find((x) => x.criterion === c.slug);
      if (j) ed.judgments[c.slug] = j;
      let answer = j ? judgmentToAnswer(j, p.candidates) : null;
      if (answer === null && local[c.slug] !== undefined) answer = local[c.slug];
      if (answer === null && j) unknown++;
      ed.rows[i] = answerToRow(ed, answer);
      ed.original[i] = answer;
    });
    S.stash = S.view;
    S.view = ed;
    resetZoom();
    render();
    setState("editing");
    if (unknown) flash(`${unknown} earlier answer(s) could not be shown here; rows left blank keep their stored answer.`);
  }

  function leaveEdit() {
    if (!S.stash) return;
    S.view = S.stash;
    S.stash = null;
    resetZoom();
    render();
    setState("ready");
  }

  async function saveEdit() {
    const v = S.view;
    const changes = [];
    criteriaOf(v).forEach((c, i) => {
      if (rowEmpty(v.rows[i]) || !rowDone(v.rows[i])) return;
      const answer = rowAnswer(v, i);
      const j = v.judgments[c.slug];
      if (j && JSON.stringify(answer) !== JSON.stringify(v.original[i])) changes.push([c, j, answer]);
    });
    if (!changes.length) { flash("No changes."); leaveEdit(); return; }
    S.busy = true;
    setStatus("Saving changes…");
    const errors = [];
    for (const [c, j, answer] of changes) {
      try {
        await withRetry(() => api("PATCH", URLS.judgment(j.id), { answer }), () => setStatus("Saving changes… (retry)"));
      } catch (err) {
        errors.push(`${c.name}: ${err.message}${errorDetails(err).length ? ` (${errorDetails(err).join("; ")})` : ""}`);
      }
    }
    S.busy = false;
    setStatus("");
    if (errors.length) { showAlert("Some changes were not saved.", "error", errors); return; }
    const local = store.get(`or:answers:${v.payload.lease}`) || {};
    for (const [c, , answer] of changes) local[c.slug] = answer;
    store.set(`or:answers:${v.payload.lease}`, local);
    clearAlert();
    flash(`Updated ${changes.length} answer(s) of your last item.`);
    leaveEdit();
    refreshProgress();
  }

  // ---------------------------------------------------------------- answering
  function setActive(i) {
    const v = S.view;
    if (!v) return;
    v.active = Math.max(0, Math.min(v.rows.length - 1, i));
    if (v.openGuide !== -1) v.openGuide = v.active;
    updateRows();
    const row = document.querySelector(`#criteria .crit-row[data-row="${v.active}"]`);
    if (row && row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
  }

  function nextRowAfter(i) {
    const v = S.view;
    for (let k = i + 1; k < v.rows.length; k++) if (!rowDone(v.rows[k])) return k;
    for (let k = 0; k < i; k++) if (!rowDone(v.rows[k])) return k;
    return Math.min(i + 1, v.rows.length - 1);
  }

  function answered(i) {
    const v = S.view;
    if (rowDone(v.rows[i])) setActive(nextRowAfter(i)); else updateRows();
  }

  function pickPairwise(i, value) {
    S.view.rows[i].value = value;
    S.view.active = i;
    answered(i);
  }

  function pickBestWorst(i, kind, idx, { toggle = false } = {}) {
    const r = S.view.rows[i];
    S.view.active = i;
    if (kind === "nodiff") {
      r.nodiff = toggle ? !r.nodiff : true;
      r.best = null; r.worst = null;
      answered(i);
      return;
    }
    r.nodiff = false;
    const other = kind === "best" ? "worst" : "best";
    r[kind] = idx;
    if (r[other] === idx) r[other] = null;
    answered(i);
  }

  /** A digit pressed on the active best–worst row: first = best, second = worst. */
  function bestWorstDigit(idx, shift) {
    const v = S.view;
    const i = v.active;
    const r = v.rows[i];
    if (shift) { pickBestWorst(i, "worst", idx); return; }
    if (r.nodiff || rowDone(r) || r.best === null) {
      if (rowDone(r) || r.nodiff) { r.best = null; r.worst = null; r.nodiff = false; }
      if (r.worst === idx) r.worst = null;
      r.best = idx;
      answered(i);
      return;
    }
    if (idx === r.best) { flash("Worst must differ from best."); return; }
    pickBestWorst(i, "worst", idx);
  }

  function clearRow() {
    const v = S.view;
    v.rows[v.active] = emptyRow();
    updateRows();
  }

  // ---------------------------------------------------------------- zoom, pan, flicker, swipe
  function applyZoom() {
    const { s, x, y } = S.zoom;
    const t = `translate(${x * 100}%, ${y * 100}%) scale(${s})`;
    document.querySelectorAll(".zimg").forEach((img) => { img.style.transform = t; });
    $("zoom-level").textContent = `${Math.round(s * 100)}%`;
    root.classList.toggle("is-zoomed", s > 1.001);
  }
  function clampZoom() {
    const z = S.zoom;
    z.s = Math.max(1, Math.min(16, z.s));
    z.x = Math.max(1 - z.s, Math.min(0, z.x));
    z.y = Math.max(1 - z.s, Math.min(0, z.y));
  }
  function zoomAt(px, py, factor) {
    const z = S.zoom;
    const cx = (px - z.x) / z.s, cy = (py - z.y) / z.s;
    z.s *= factor;
    z.s = Math.max(1, Math.min(16, z.s));
    z.x = px - cx * z.s;
    z.y = py - cy * z.s;
    clampZoom();
    applyZoom();
  }
  function resetZoom() { S.zoom = { s: 1, x: 0, y: 0 }; applyZoom(); }

  const stage = document.querySelector(".stage");
  stage.addEventListener("wheel", (e) => {
    const vp = e.target.closest(".viewport");
    if (!vp) return;
    e.preventDefault();
    const rect = vp.getBoundingClientRect();
    zoomAt((e.clientX - rect.left) / rect.width, (e.clientY - rect.top) / rect.height, Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });

  let drag = null;
  stage.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    if (e.target.closest("#swipe-divider")) {
      drag = { kind: "swipe", vp: $("swipe-vp") };
    } else {
      const vp = e.target.closest(".viewport");
      if (!vp) return;
      drag = { kind: "pan", vp, x: e.clientX, y: e.clientY };
    }
    e.preventDefault();
    stage.setPointerCapture(e.pointerId);
    stage.classList.add("is-dragging");
  });
  stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const rect = drag.vp.getBoundingClientRect();
    if (drag.kind === "swipe") {
      S.swipePos = Math.max(0, Math.min(1, (e.clientX - rect.left) / rect.width));
      renderSwipe();
      return;
    }
    S.zoom.x += (e.clientX - drag.x) / rect.width;
    S.zoom.y += (e.clientY - drag.y) / rect.height;
    drag.x = e.clientX; drag.y = e.clientY;
    clampZoom();
    applyZoom();
  });
  const endDrag = () => { drag = null; stage.classList.remove("is-dragging"); };
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);
  stage.addEventListener("dblclick", (e) => { if (e.target.closest(".viewport")) resetZoom(); });

  function setFlicker(on) {
    if (S.flicker === on) return;
    S.flicker = on;
    root.classList.toggle("is-flicker", on);
    const a = document.querySelector('#cands .cand[data-idx="0"] .cand-label');
    if (a) a.textContent = on ? "B" : "A";
    if (S.swipe) renderSwipe();
  }

  function renderSwipe() {
    const v = S.view;
    const canSwipe = v && candsOf(v).length >= 2;
    $("swipe").hidden = !(S.swipe && canSwipe);
    $("cands").hidden = Boolean(S.swipe && canSwipe);
    $("swipe-btn").setAttribute("aria-pressed", String(S.swipe));
    const pct = `${(S.swipePos * 100).toFixed(1)}%`;
    $("swipe-vp").style.setProperty("--pos", pct);
    $("swipe-divider").setAttribute("aria-valuenow", String(Math.round(S.swipePos * 100)));
    applyZoom();
  }
  function toggleSwipe() { S.swipe = !S.swipe; renderSwipe(); }

  function toggleMask() {
    S.mask = !S.mask;
    $("mask-overlay").hidden = !S.mask;
    $("mask-btn").setAttribute("aria-pressed", String(S.mask));
  }

  function toggleOverlay(force) {
    const ov = $("shortcuts-overlay");
    ov.hidden = force === undefined ? !ov.hidden : !force;
    if (!ov.hidden) $("overlay-close").focus();
  }

  function toggleGuide(i) {
    const v = S.view;
    if (!v) return;
    v.openGuide = v.openGuide === i ? -1 : i;
    updateRows();
  }

  // ---------------------------------------------------------------- input wiring
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (t && t.closest && t.closest(".topnav, a[href]")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const overlayOpen = !$("shortcuts-overlay").hidden;
    if (e.key === "?") { e.preventDefault(); toggleOverlay(); return; }
    if (overlayOpen) { if (e.key === "Escape") { e.preventDefault(); toggleOverlay(false); } return; }
    if (!$("skip-form").hidden && e.key !== "Escape") return;  // its buttons answer Enter / Space
    if (S.tab !== "owner") return;  // another tab has this campaign
    if (e.key === "Escape") {
      if (!$("skip-form").hidden) closeSkip();
      else if (S.view && S.view.openGuide !== -1) toggleGuide(S.view.openGuide);
      else if (S.view && S.view.editing) leaveEdit();
      return;
    }
    const v = S.view;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    // View controls work whenever an item is on screen.
    if (key === "f") { if (!e.repeat) setFlicker(true); e.preventDefault(); return; }
    if (key === "w") { toggleSwipe(); e.preventDefault(); return; }
    if (key === "m") { toggleMask(); e.preventDefault(); return; }
    if (key === "r") { resetZoom(); e.preventDefault(); return; }
    if (key === "+" || key === "=") { zoomAt(0.5, 0.5, 1.25); e.preventDefault(); return; }
    if (key === "-" || key === "_") { zoomAt(0.5, 0.5, 0.8); e.preventDefault(); return; }
    if (S.swipe && (key === "ArrowLeft" || key === "ArrowRight")) {
      S.swipePos = Math.max(0, Math.min(1, S.swipePos + (key === "ArrowLeft" ? -0.05 : 0.05)));
      renderSwipe(); e.preventDefault(); return;
    }
    if (!v || S.busy) { if (key === "Enter") e.preventDefault(); return; }
    const m = /^(Digit|Numpad)(\d)$/.exec(e.code || "");
    const digit = m ? Number(m[2]) : (/^\d$/.test(e.key) ? Number(e.key) : null);
    if (digit !== null) {
      e.preventDefault();
      if (MODE === "pairwise") {
        const map = { 1: "L", 2: "tie", 3: "R", 4: "both_bad" };
        if (map[digit]) pickPairwise(v.active, map[digit]);
        else if (digit === 0) resetZoom();
      } else if (digit === 0) {
        pickBestWorst(v.active, "nodiff");
      } else if (digit <= candsOf(v).length) {
        bestWorstDigit(digit - 1, e.shiftKey);
      }
      return;
    }
    switch (key) {
      case "ArrowDown": case "j": setActive(v.active + 1); break;
      case "ArrowUp": case "k": setActive(v.active - 1); break;
      case "Enter": submit(); break;
      case "s": openSkip(); break;
      case "u": undoLast(); break;
      case "g": toggleGuide(v.active); break;
      case "Backspace": case "Delete": clearRow(); break;
      default: return;
    }
    e.preventDefault();
  });
  document.addEventListener("keyup", (e) => { if (e.key.toLowerCase() === "f") setFlicker(false); });
  window.addEventListener("blur", () => setFlicker(false));

  $("criteria").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b || !S.view) return;
    const i = Number(b.dataset.row);
    if (b.classList.contains("help-btn")) { toggleGuide(i); return; }
    if (MODE === "pairwise" && b.dataset.value) pickPairwise(i, b.dataset.value);
    else if (b.dataset.kind) pickBestWorst(i, b.dataset.kind, Number(b.dataset.idx), { toggle: true });
  });
  $("criteria").addEventListener("focusin", (e) => {
    const row = e.target.closest(".crit-row");
    if (row && S.view && Number(row.dataset.row) !== S.view.active) setActive(Number(row.dataset.row));
  });
  $("submit-btn").addEventListener("click", submit);
  $("skip-btn").addEventListener("click", openSkip);
  $("undo-btn").addEventListener("click", undoLast);
  $("skip-confirm").addEventListener("click", () => doSkip());
  $("skip-presets").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-reason]");
    if (b) doSkip(b.dataset.reason);
  });
  $("skip-reason").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); doSkip(); }
    else if (e.key === "Escape") { e.preventDefault(); closeSkip(); }
  });
  $("mask-btn").addEventListener("click", toggleMask);
  $("swipe-btn").addEventListener("click", toggleSwipe);
  $("zoom-reset").addEventListener("click", resetZoom);
  const flickerBtn = $("flicker-btn");
  flickerBtn.addEventListener("pointerdown", () => setFlicker(true));
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) flickerBtn.addEventListener(ev, () => setFlicker(false));
  $("help-btn").addEventListener("click", () => toggleOverlay());
  $("overlay-close").addEventListener("click", () => toggleOverlay(false));
  $("shortcuts-overlay").addEventListener("click", (e) => { if (e.target.id === "shortcuts-overlay") toggleOverlay(false); });
  $("recheck-btn").addEventListener("click", start);

  const syncTimers = () => { if (S.view) S.view.timer.sync(); if (S.stash) S.stash.timer.sync(); };
  document.addEventListener("visibilitychange", syncTimers);
  // Leaving while a submission is still on its way could lose it: ask first.
  window.addEventListener("beforeunload", (e) => { if (S.pending) { e.preventDefault(); e.returnValue = ""; } });
  window.addEventListener("focus", syncTimers);
  window.addEventListener("blur", syncTimers);

  // ---------------------------------------------------------------- one tab per campaign
  // Two tabs of one campaign would be handed the same leased item by /next/, and the answers of
  // whichever submits second would be refused. So the first tab owns the campaign; a later tab
  // says so plainly and can take over (answers travel with the lease's draft in localStorage).
  const CHANNEL = typeof BroadcastChannel === "function" ? new BroadcastChannel(`onereward-ws-${CAMPAIGN}`) : null;
  const TAB_ID = uuid();
  const PROBE_MS = 250;
  S.tab = "probing";  // → "owner" | "elsewhere"
  let otherTabAnswered = false;
  const announce = (type) => { if (CHANNEL) CHANNEL.postMessage({ type, id: TAB_ID }); };

  if (CHANNEL) {
    CHANNEL.onmessage = (e) => {
      const m = e.data || {};
      // Two tabs opened together: the one with the smaller id keeps the campaign.
      if (m.type === "hello" && (S.tab === "owner" || (S.tab === "probing" && TAB_ID < m.id))) announce("here");
      else if (m.type === "here" && S.tab === "probing") otherTabAnswered = true;
      else if (m.type === "takeover" && S.tab !== "elsewhere") showElsewhere();
    };
  }

  function showElsewhere() {
    S.tab = "elsewhere";
    // The leases stay with the annotator: the tab that owns the campaign now gets them from /next/.
    Object.assign(S, { view: null, stash: null, upcoming: null, parked: null, finished: false });
    closeSkip();
    clearAlert();
    render();
    setState("elsewhere");
  }

  async function claimTab() {
    announce("hello");
    if (CHANNEL) await sleep(PROBE_MS);
    if (otherTabAnswered) { showElsewhere(); return; }
    S.tab = "owner";
    drafts.prune();
    start();
  }

  $("takeover-btn").addEventListener("click", () => {
    announce("takeover");
    S.tab = "owner";
    render();
    start();
  });

  // Leaving the page gives back the prefetched item the annotator never saw, so it goes to
  // someone else now rather than when its lease expires. A beacon cannot set headers: the CSRF
  // token travels in the form body, with the session cookie, as in any form post.
  function releaseUpcoming() {
    const p = S.upcoming;
    if (S.tab !== "owner" || !p || !navigator.sendBeacon) return;
    const form = new FormData();
    form.append("csrfmiddlewaretoken", csrfToken());
    if (navigator.sendBeacon(URLS.release(p.lease), form)) S.upcoming = null;
  }
  window.addEventListener("pagehide", releaseUpcoming);
  window.addEventListener("pageshow", (e) => {  // back from the back/forward cache: prefetch again
    if (e.persisted && S.tab === "owner" && S.view && !S.upcoming && !S.upcomingPromise) fetchUpcoming();
  });

  claimTab();
})();
