/* Scientist / curator dashboard. Every page is a shell; data comes from the JSON APIs
 * (/api/dashboard/, /api/reward/, /api/policy/) and live pages poll them about once a second. */
(function () {
  "use strict";

  const root = document.getElementById("dash");
  if (!root) return;
  const PAGE = root.dataset.page;
  const POLL_MS = 1000;

  // ---------------------------------------------------------------- helpers
  const $ = (sel, scope) => (scope || document).querySelector(sel);
  const $$ = (sel, scope) => Array.from((scope || document).querySelectorAll(sel));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") node.setAttribute("style", v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(url, opts) {
    opts = opts || {};
    const init = { method: opts.method || "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    if (init.method !== "GET") init.headers["X-CSRFToken"] = cookie("csrftoken");
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      return { ok: false, status: 0, data: { message: "Network error — retrying." } };
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data: data || {} };
  }

  function debounce(fn, ms) {
    let t = null;
    return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(sec).padStart(2, "0")}s`;
    return `${sec}s`;
  }

  function fmtAgo(iso) {
    if (!iso) return "—";
    const secs = (Date.now() - new Date(iso).getTime()) / 1000;
    if (secs < 45) return "just now";
    if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
    return new Date(iso).toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }

  function fmtTime(iso) {
    return iso ? new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "—";
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 0.001 && v !== 0 ? v.toExponential(2) : v.toFixed(digits === undefined ? 4 : digits);
  }

  // "lo–hi" with enough decimals that the ends differ: an interval never reads "100–100".
  function fmtInterval(lo, hi, digits) {
    let a = "", b = "";
    for (let d = digits; d < digits + 3; d++) { a = lo.toFixed(d); b = hi.toFixed(d); if (a !== b) break; }
    return `${a}–${b}`;
  }

  // A rate with its count and 95 % interval, e.g. "82.0 (n=412, 78.0–85.4)" (the template tag rate_ci writes the same).
  function rateCI(value, n, ci, digits, unit) {
    if (value === null || value === undefined) return [el("span", { class: "muted", text: "n/a" })];
    unit = unit || "";
    const text = `${value.toFixed(digits)}${unit}`;
    if (!n) return [text];
    return [text, " ", el("span", { class: "ci", text: ci ? `(n=${n}, ${fmtInterval(ci[0], ci[1], digits)}${unit})` : `(n=${n})` })];
  }

  function pct(x) { return `${Math.round((x || 0) * 100)}%`; }

  function badge(status) { return el("span", { class: `badge status-${status}`, "data-status": status, text: status }); }

  function progressBar(fraction, status, label) {
    const p = Math.round((fraction || 0) * 1000) / 10;
    return el("div", { class: `progress is-${status || ""}`, role: "progressbar", "aria-label": label, "aria-valuemin": "0",
                       "aria-valuemax": "100", "aria-valuenow": String(p) },
              el("span", { style: `width:${p}%` }));
  }

  function confirmAction(text, yesLabel) {
    const dialog = $("#confirm-dialog");
    if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(text));
    $("#confirm-text").textContent = text;
    $("#confirm-yes").textContent = yesLabel || "Yes";
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-yes").focus();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  async function jobAction(job, action, after) {
    const text = action === "cancel"
      ? `Cancel “${job.name}”? A running job stops before its next step and keeps a checkpoint to resume from.`
      : `Resume “${job.name}” from its newest checkpoint?`;
    if (!(await confirmAction(text, action === "cancel" ? "Cancel run" : "Resume"))) return;
    const r = await api(`/api/jobs/${job.id}/${action}/`, { method: "POST" });
    if (!r.ok) window.alert(r.data.message || `Could not ${action} the job.`);
    if (after) after();
  }

  // Field errors: {"message", "fields": {name: [msg] | {nested}}} → the [data-error-for] slots of the form.
  function flattenErrors(fields, prefix, out) {
    out = out || {};
    for (const [k, v] of Object.entries(fields || {})) {
      if (Array.isArray(v)) {
        const msgs = v.map((x) => (typeof x === "string" ? x : JSON.stringify(x)));
        out[k] = (out[k] || []).concat(msgs);
        if (prefix) out[prefix] = (out[prefix] || []).concat(msgs.map((m) => `${k}: ${m}`));
      } else if (v && typeof v === "object") {
        flattenErrors(v, k, out);
      } else if (v) {
        out[k] = [String(v)];
      }
    }
    return out;
  }

  function clearErrors(form) {
    $$("[data-error-for]", form).forEach((n) => { n.textContent = ""; });
    $$("[aria-invalid]", form).forEach((n) => n.removeAttribute("aria-invalid"));
    const top = $("#form-error", form);
    if (top) { top.hidden = true; top.textContent = ""; }
  }

  function showErrors(form, data) {
    clearErrors(form);
    const flat = flattenErrors(data.fields || {});
    const unplaced = [];
    let first = null;
    for (const [name, msgs] of Object.entries(flat)) {
      const slot = $(`[data-error-for="${name}"]`, form);
      if (slot) {
        slot.textContent = msgs.join(" ");
        const input = form.querySelector(`[name="${name}"]`);
        if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
      } else if (!name.includes(".") && !/^\d+$/.test(name)) {
        unplaced.push(`${name}: ${msgs.join(" ")}`);
      }
    }
    const top = $("#form-error", form);
    if (top) {
      top.hidden = false;
      const msg = !data.message || data.message === "Invalid input." ? "Please fix the highlighted fields." : data.message;
      top.replaceChildren(el("strong", { text: msg }),
                          unplaced.length ? el("ul", {}, unplaced.map((u) => el("li", { text: u }))) : "");
    }
    if (first) first.focus();
  }

  function numOrNull(v) { v = (v || "").trim(); return v === "" ? null : v; }

  function parseJsonField(form, name) {
    const raw = (form.elements[name].value || "").trim();
    if (!raw) return {};
    try {
      const v = JSON.parse(raw);
      if (v && typeof v === "object" && !Array.isArray(v)) return v;
    } catch (e) { /* reported below */ }
    throw { fields: { [name]: ["Not a JSON object, e.g. {\"key\": 1}."] }, message: "Please fix the highlighted fields." };
  }

  function checked(scope, name) { return $$(`input[name="${name}"]:checked`, scope).map((i) => i.value); }

  // ---------------------------------------------------------------- tables shared by pages
  function accuracyTable(table) {
    const head1 = el("tr", {}, el("th", { rowspan: "2", text: "Accuracy (%)" }),
      table.columns.map((c) => el("th", { colspan: "2", class: "col-group", text: c.name })));
    const head2 = el("tr", {}, table.columns.map(() => [el("th", { class: "sub", text: "RM" }), el("th", { class: "sub ceiling", text: "Human" })]));
    const body = table.rows.map((row) => el("tr", {}, el("th", { scope: "row", text: row.name }), row.cells.map((c) => {
      if (!c.applicable) return [el("td", { class: "na", text: "–" }), el("td", { class: "na ceiling", text: "–" })];
      const meets = c.accuracy !== null && c.ceiling !== null && c.accuracy >= c.ceiling;
      return [el("td", { class: `num${meets ? " meets" : ""}`, "data-testid": "accuracy-cell", title: `${c.n} held-out pairs, 95 % Wilson interval${c.paper === null || c.paper === undefined ? "" : ` · paper ${c.paper}`}` },
                 rateCI(c.accuracy, c.n, c.ci95, 1)),
              el("td", { class: "num ceiling" }, c.ceiling === null ? el("span", { class: "muted", text: "n/a" }) : c.ceiling.toFixed(1))];
    })));
    return el("div", {},
      el("div", { class: "table-wrap" }, el("table", { class: "acc-table", "data-testid": "accuracy-table" },
        el("thead", {}, head1, head2), el("tbody", {}, body))),
      el("p", { class: "muted small" }, "Overall ", el("span", { "data-testid": "accuracy-cell" }, rateCI(table.overall, table.pairs, table.overall_ci95, 1)),
        ` % on ${table.pairs || 0} ${table.split || ""} pairs` +
        (table.position_consistency !== null && table.position_consistency !== undefined ? ` · position consistency ${fmtNum(table.position_consistency, 3)}` : "") +
        (table.ece !== null && table.ece !== undefined ? ` · ECE ${fmtNum(table.ece, 3)}` : "") +
        ". Each accuracy reads “value (n = pairs, 95 % Wilson interval)”; “Human” is the snapshot's annotator-agreement ceiling."));
  }

  function rlTable(t) {
    return el("div", { class: "table-wrap" }, el("table", { class: "acc-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "P(Yes) vs reference" }), t.columns.map((c) => el("th", { text: c.name })))),
      el("tbody", {}, t.rows.map((row) => el("tr", {}, el("th", { scope: "row", text: row.name }), row.cells.map((c) => {
        if (!c.applicable) return el("td", { class: "na", text: "–" });
        if (c.latest === null || c.latest === undefined) return el("td", { class: "num muted", text: "n/a" });
        return el("td", { class: `num${c.latest > 0.5 ? " meets" : ""}`, title: `first ${c.first.toFixed(3)} → latest ${c.latest.toFixed(3)}`, text: c.latest.toFixed(3) });
      }))))));
  }

  // ---------------------------------------------------------------- runs list
  // The server filters (kind, status, who, name); the page itself sorts, filters by tag or
  // parameter, edits tags and collects runs for the overlay.
  const RUN_COLUMNS = [
    { key: "id", label: "#", sort: (j) => j.id },
    { key: "name", label: "Run", sort: (j) => j.name.toLowerCase() },
    { key: "tags", label: "Tags", sort: (j) => (j.tags || []).join(",").toLowerCase() },
    { key: "status", label: "Status", sort: (j) => j.status },
    { key: "progress", label: "Progress", sort: (j) => j.progress, cls: "w-progress" },
    { key: "step", label: "Step · ETA", sort: (j) => j.step },
  ];

  function matchesLocal(job, tokens) {
    return tokens.every((t) => {
      const eq = t.indexOf("=");
      if (eq > 0) {
        const k = t.slice(0, eq), v = t.slice(eq + 1);
        const have = (job.params || {})[k];
        return have !== undefined && (String(have).toLowerCase() === v || (v !== "" && Number(v) === Number(have)));
      }
      return (job.tags || []).some((tag) => tag.toLowerCase().includes(t)) || job.name.toLowerCase().includes(t) ||
        Object.entries(job.params || {}).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(t));
    });
  }

  function pageRuns() {
    const form = $("#run-filters");
    const head = $("#runs-head");
    const body = $("#runs-body");
    const chips = $("#status-chips");
    const local = $("#runs-local-filter");
    const overlayBtn = $("#overlay-selected");
    const selected = new Set();
    let jobs = [];
    let last = "";
    let sort = { key: "id", dir: -1 };
    let editing = null;  // the job whose tags are being edited: polling leaves the table alone meanwhile
    const params = new URLSearchParams(location.search);
    for (const [k, v] of params) { if (form.elements[k]) { if (form.elements[k].type === "checkbox") form.elements[k].checked = true; else form.elements[k].value = v; } }
    if (params.get("filter")) local.value = params.get("filter");

    function query() {
      const q = new URLSearchParams();
      for (const name of ["kind", "status", "started_by", "q"]) if (form.elements[name].value) q.set(name, form.elements[name].value);
      if (form.elements.mine.checked) q.set("mine", "1");
      if (local.value.trim()) q.set("filter", local.value.trim());
      return q;
    }

    function paramKeys() {
      return Array.from(new Set(jobs.flatMap((j) => Object.keys(j.params || {})))).sort();
    }

    function columns() {
      return [...RUN_COLUMNS, ...paramKeys().map((k) => ({ key: `param:${k}`, label: k, param: k, cls: "num",
                                                           sort: (j) => { const v = (j.params || {})[k]; return v === undefined ? null : v; } })),
              { key: "started", label: "Started", sort: (j) => j.created_at }];
    }

    function sortButton(col) {
      const on = sort.key === col.key;
      return el("th", { scope: "col", class: col.cls || "", "aria-sort": on ? (sort.dir > 0 ? "ascending" : "descending") : null },
        el("button", { type: "button", class: "sort-btn", "data-sort": col.key,
                       onclick: () => { sort = { key: col.key, dir: on ? -sort.dir : (col.key === "id" || col.key === "started" ? -1 : 1) }; render(); } },
          col.label, el("span", { class: "sort-mark", "aria-hidden": "true", text: on ? (sort.dir > 0 ? " ▲" : " ▼") : "" })));
    }

    function tagCell(job) {
      if (job.tags === null || job.tags === undefined) return el("td", { class: "muted small", text: "—" });
      if (editing === job.id) {
        const input = el("input", { type: "text", class: "tag-input", value: job.tags.join(", "), "aria-label": `Tags of #${job.id}, comma-separated` });
        const msg = el("span", { class: "field-error", role: "alert" });
        const done = () => { editing = null; render(); };
        const save = async () => {
          const tags = input.value.split(",").map((t) => t.trim()).filter(Boolean);
          const r = await api(`/api/dashboard/jobs/${job.id}/tags/`, { method: "PUT", body: { tags } });
          if (!r.ok) { msg.textContent = Object.values(r.data.fields || {}).flat().join(" ") || r.data.message; input.setAttribute("aria-invalid", "true"); input.focus(); return; }
          job.tags = r.data.tags;
          last = "";
          done();
        };
        input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); save(); } else if (e.key === "Escape") done(); });
        setTimeout(() => input.focus(), 0);
        return el("td", { class: "tag-cell editing" }, el("div", { class: "tag-editor" }, input,
          el("button", { type: "button", class: "btn btn-sm btn-primary", "data-action": "save-tags", onclick: save }, "Save"),
          el("button", { type: "button", class: "btn btn-sm", onclick: done }, "Cancel")), msg);
      }
      return el("td", { class: "tag-cell" }, job.tags.map((t) => el("span", { class: "tag", text: t })),
        el("button", { type: "button", class: "btn btn-sm btn-ghost", "data-action": "edit-tags", "aria-label": `Edit the tags of #${job.id}`,
                       onclick: () => { editing = job.id; render(); } }, job.tags.length ? "Edit" : "Add tag"));
    }

    function row(job, keys) {
      const stepText = job.total_steps ? `${job.step} / ${job.total_steps}` : (job.step ? String(job.step) : "—");
      const eta = job.status === "running" && job.eta_seconds !== null ? ` · ETA ${fmtDuration(job.eta_seconds)}` : "";
      const metric = job.last_metrics && typeof job.last_metrics.loss === "number" ? `loss ${fmtNum(job.last_metrics.loss, 3)}` : "";
      const actions = el("div", { class: "row-actions" },
        job.can_cancel ? el("button", { class: "btn btn-sm", "data-action": "cancel", onclick: () => jobAction(job, "cancel", refresh) }, "Cancel") : null,
        job.can_resume ? el("button", { class: "btn btn-sm", "data-action": "resume", onclick: () => jobAction(job, "resume", refresh) }, "Resume") : null);
      const pick = el("input", { type: "checkbox", class: "pick", "aria-label": `Overlay #${job.id}`, checked: selected.has(job.id),
                                 onchange: (e) => { if (e.target.checked) selected.add(job.id); else selected.delete(job.id); syncOverlay(); } });
      return el("tr", { "data-job": job.id, "data-status": job.status },
        el("td", { class: "pick-col" }, pick),
        el("td", { class: "muted", text: job.id }),
        el("td", { class: "run-cell" }, el("a", { href: job.url, class: "run-name", text: job.name }),
          el("div", { class: "muted small" }, el("span", { class: `kind kind-${job.kind}`, text: job.kind_label }),
            job.error ? el("span", { class: "error-snippet", title: job.error, text: ` · ${job.error}` }) : "")),
        tagCell(job),
        el("td", {}, badge(job.status), job.cancel_requested && !["cancelled", "failed", "succeeded"].includes(job.status) ? el("div", { class: "muted small", text: "cancelling…" }) : ""),
        el("td", {}, el("div", { class: "progress-cell" }, progressBar(job.progress, job.status, `Progress of #${job.id}`), el("span", { class: "small muted", text: pct(job.progress) }))),
        el("td", { class: "small" }, el("div", { text: stepText + eta }), metric ? el("div", { class: "muted", text: metric }) : ""),
        keys.map((k) => el("td", { class: "num small", "data-param": k, text: (job.params || {})[k] === undefined ? "—" : fmtNum((job.params || {})[k], 6) })),
        el("td", { class: "small" }, el("div", { text: job.started_by || "—" }), el("div", { class: "muted", title: fmtTime(job.created_at), text: fmtAgo(job.created_at) })),
        el("td", { class: "actions-col" }, actions));
    }

    function syncOverlay() {
      const q = new URLSearchParams();
      selected.forEach((id) => q.append("job", id));
      overlayBtn.textContent = `Overlay selected (${selected.size})`;
      overlayBtn.href = `/dashboard/runs/overlay/?${q}`;
      overlayBtn.setAttribute("aria-disabled", selected.size ? "false" : "true");
      overlayBtn.classList.toggle("is-disabled", !selected.size);
    }

    function render() {
      const cols = columns();
      const keys = paramKeys();
      const col = cols.find((c) => c.key === sort.key) || cols[0];
      const tokens = local.value.toLowerCase().split(/\s+/).filter(Boolean);
      const shown = jobs.filter((j) => matchesLocal(j, tokens)).sort((a, b) => {
        const x = col.sort(a), y = col.sort(b);
        if (x === y) return b.id - a.id;
        if (x === null || x === undefined) return 1;  // runs without the value go last either way
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sort.dir;
      });
      const span = cols.length + 2;
      head.replaceChildren(el("tr", {}, el("th", { scope: "col", class: "pick-col" }, el("span", { class: "sr-only", text: "Overlay" })),
        cols.map(sortButton), el("th", { scope: "col", class: "actions-col" }, el("span", { class: "sr-only", text: "Actions" }))));
      body.replaceChildren(...(shown.length ? shown.map((j) => row(j, keys)) : [el("tr", {}, el("td", { colspan: String(span), class: "muted center" },
        jobs.length ? "No run has these tags or parameters." : ["No runs match. ", el("a", { href: "/dashboard/new/reward/", text: "Start a reward run" }), "."]))]));
    }

    async function refresh() {
      const q = query();
      q.delete("filter");
      const r = await api(`/api/dashboard/jobs/?${q}`);
      if (!r.ok) return;
      const text = JSON.stringify(r.data);
      if (text === last || editing !== null) return;
      last = text;
      jobs = r.data.jobs;
      render();
      chips.replaceChildren(...Object.entries(r.data.counts).map(([s, n]) => el("button", {
        type: "button", class: `chip${form.elements.status.value === s ? " is-on" : ""}`, "data-status": s, "aria-pressed": form.elements.status.value === s ? "true" : "false",
        onclick: () => { form.elements.status.value = form.elements.status.value === s ? "" : s; changed(); },
      }, badge(s), el("span", { class: "chip-n", text: n }))));
    }

    const changed = () => { history.replaceState(null, "", `?${query()}`); last = ""; refresh(); };
    form.addEventListener("change", changed);
    form.addEventListener("input", debounce(changed, 300));
    form.addEventListener("submit", (e) => { e.preventDefault(); changed(); });
    local.addEventListener("input", debounce(() => { history.replaceState(null, "", `?${query()}`); render(); }, 150));
    overlayBtn.addEventListener("click", (e) => { if (!selected.size) e.preventDefault(); });
    syncOverlay();
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
    queuePanel();
  }

  // The Runs page's queues panel: workers per queue and jobs waiting (GET /api/dashboard/jobs/queues/,
  // which asks the workers at most every few seconds, so polling faster would show nothing new).
  const QUEUE_POLL_MS = 5000;

  function queuePanel() {
    const body = $("#queue-body");
    const alert = $("#queue-alert");
    if (!body) return;
    let last = "";

    function workersCell(q) {
      if (q.workers === null) return el("td", { class: "muted", text: "unknown" });
      if (!q.workers.length) {
        return el("td", {}, el("strong", { text: "0" }), q.waiting ? " — no worker takes these jobs" : "");
      }
      return el("td", {}, el("strong", { text: q.workers.length }), " ", el("span", { class: "muted small", text: q.workers.join(", ") }));
    }

    async function refresh() {
      const r = await api("/api/dashboard/jobs/queues/");
      if (!r.ok) return;
      const text = JSON.stringify(r.data);
      if (text === last) return;
      last = text;
      alert.hidden = r.data.broker_reachable;
      body.replaceChildren(...r.data.queues.map((q) => el("tr", { "data-queue": q.name },
        el("th", { scope: "row", class: "no-caps", text: q.name }),
        el("td", { text: q.kinds.join(", ") || "—" }),
        workersCell(q),
        el("td", { class: "num", text: q.waiting }),
        el("td", { class: "num", text: q.running }))));
    }

    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, QUEUE_POLL_MS);
  }

  // ---------------------------------------------------------------- charts
  // Curves are kept raw ({label, color, dashed, points: [[step, value]]}); drawing applies the
  // viewer's smoothing and scale, and a <details> "Data" table under each chart lists the raw points.
  const PALETTE = ["#2f5bd3", "#d9822b", "#17804a", "#c2352b", "#7a4fd1", "#0f8b8d", "#9a6200", "#5f6b7a", "#d6409f"];
  const MAX_TABLE_ROWS = 400;

  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function makeChart(canvas, yTitle) {
    if (!window.Chart || !canvas) return null;
    const ink = cssVar("--muted", "#5f6b7a"), grid = cssVar("--border", "#dfe2e8");
    return new window.Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
        interaction: { mode: "nearest", intersect: false },
        scales: { x: { type: "linear", title: { display: true, text: "step", color: ink }, ticks: { precision: 0, color: ink }, grid: { color: grid } },
                  y: { title: { display: true, text: yTitle, color: ink }, ticks: { color: ink }, grid: { color: grid } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true, color: ink, font: { size: 13 },
                                                           filter: (item, data) => !data.datasets[item.datasetIndex].isRaw } } },
        // Straight segments between logged points: a spline would invent values between sparse evaluations.
        elements: { point: { radius: (ctx) => (ctx.dataset.data.length < 30 ? 2.5 : 0), hoverRadius: 3 }, line: { borderWidth: 2, tension: 0 } },
      },
    });
  }

  // Exponential moving average with the start-up bias removed (as TensorBoard and W&B draw it):
  // weight 0 = the raw curve, 0.99 = very smooth.
  function smoothEMA(points, weight) {
    if (!weight) return points;
    let avg = 0, norm = 0;
    return points.map(([x, y]) => {
      avg = avg * weight + (1 - weight) * y;
      norm = norm * weight + (1 - weight);
      return [x, avg / norm];
    });
  }

  function faint(color) { return `${color}40`; }

  // Draw raw curves on a chart with the given smoothing and y scale; raw points stay faint behind a smoothed line.
  function drawCurves(chart, curves, view) {
    if (!chart) return;
    const usable = (pts) => (view.log ? pts.filter(([, y]) => y > 0) : pts);
    const datasets = [];
    for (const c of curves) {
      const pts = usable(c.points);
      const dash = c.dashed ? [5, 4] : undefined;
      if (view.smoothing > 0) {
        datasets.push({ label: `${c.label} (raw)`, isRaw: true, data: pts.map(([x, y]) => ({ x, y })), borderColor: faint(c.color),
                        backgroundColor: faint(c.color), borderWidth: 1, pointRadius: 0, borderDash: dash });
      }
      datasets.push({ label: c.label, data: smoothEMA(pts, view.smoothing).map(([x, y]) => ({ x, y })), borderColor: c.color,
                      backgroundColor: c.color, borderDash: dash });
    }
    chart.data.datasets = datasets;
    chart.options.scales.y.type = view.log ? "logarithmic" : "linear";
    chart.update("none");
  }

  // The chart's data as a table (steps down, curves across), for screen readers and exact values.
  function curvesTable(curves, caption) {
    const steps = Array.from(new Set(curves.flatMap((c) => c.points.map(([x]) => x)))).sort((a, b) => a - b);
    const byCurve = curves.map((c) => new Map(c.points.map(([x, y]) => [x, y])));
    const shown = steps.length > MAX_TABLE_ROWS ? steps.filter((_, i) => i % Math.ceil(steps.length / MAX_TABLE_ROWS) === 0 || i === steps.length - 1) : steps;
    return el("div", { class: "table-wrap chart-table" },
      el("table", { class: "data-table compact" },
        el("caption", { class: "sr-only", text: caption }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "num", text: "step" }), curves.map((c) => el("th", { scope: "col", class: "num", text: c.label })))),
        el("tbody", {}, shown.map((x) => el("tr", {}, el("th", { scope: "row", class: "num", text: x }),
          byCurve.map((m) => el("td", { class: "num", text: m.has(x) ? fmtNum(m.get(x), 4) : "—" })))))),
      shown.length < steps.length ? el("p", { class: "muted small", text: `Every ${Math.ceil(steps.length / MAX_TABLE_ROWS)}th of ${steps.length} steps.` }) : "");
  }

  function renderDataTable(details, curves, caption) {
    if (!details) return;
    details.hidden = !curves.length;
    const body = details.querySelector(".chart-data-body");
    // Built only while open: a long run's table is large and the page polls every second.
    if (details.open) body.replaceChildren(curvesTable(curves, caption));
    else body.replaceChildren();
  }

  // The smoothing slider and log toggle of a page (#smoothing, #log-scale); calls onChange on input.
  function chartView(onChange) {
    const slider = $("#smoothing"), log = $("#log-scale"), out = $("#smoothing-value");
    const params = new URLSearchParams(location.search);
    if (params.has("smoothing")) slider.value = params.get("smoothing");
    if (params.get("log") === "1") log.checked = true;
    const view = {};
    const read = () => {
      view.smoothing = Math.min(0.99, Math.max(0, Number(slider.value) || 0));
      view.log = log.checked;
      out.textContent = view.smoothing.toFixed(2);
    };
    read();
    const changed = () => {
      read();
      const q = new URLSearchParams(location.search);
      q.set("smoothing", String(view.smoothing));
      if (view.log) q.set("log", "1"); else q.delete("log");
      history.replaceState(null, "", `?${q}`);
      onChange();
    };
    slider.addEventListener("input", changed);
    log.addEventListener("change", changed);
    return view;
  }

  function pageRun() {
    const jobId = root.dataset.job;
    const kind = root.dataset.kind;
    let after = 0;
    let job = null;
    let timer = null;
    const seen = {};
    const charts = { c1: makeChart($("#chart-1"), kind === "policy" ? "hinge loss" : "loss"),
                     c2: makeChart($("#chart-2"), kind === "policy" ? "P(Yes) vs reference" : "accuracy") };
    if (kind === "policy") { $("#chart1-title").textContent = "Loss"; $("#chart2-title").textContent = "Reward per task × criterion"; }
    const curves = { c1: new Map(), c2: new Map() };
    const view = chartView(redraw);
    ["#data-1", "#data-2"].forEach((id) => $(id).addEventListener("toggle", redraw));

    function curve(which, label, index, dashed) {
      if (!curves[which].has(label)) curves[which].set(label, { label, color: PALETTE[index % PALETTE.length], dashed, points: [] });
      return curves[which].get(label);
    }

    function addMetrics(points) {
      for (const p of points) {
        after = Math.max(after, p.id);
        const suffix = p.kind === "train" ? "train" : (p.kind === "eval" ? `eval${p.split ? " (" + p.split + ")" : ""}` : null);
        if (!suffix) continue;
        if (typeof p.loss === "number") curve("c1", `loss · ${suffix}`, p.kind === "train" ? 0 : 1, p.kind !== "train").points.push([p.step, p.loss]);
        if (kind !== "policy" && typeof p.accuracy === "number") curve("c2", `accuracy · ${suffix}`, p.kind === "train" ? 2 : 3, p.kind !== "train").points.push([p.step, p.accuracy]);
        if (kind !== "policy" && typeof p.overall_accuracy === "number") curve("c2", "held-out accuracy", 4, true).points.push([p.step, p.overall_accuracy]);
      }
    }

    function policySeries(rl) {
      if (!rl) return;
      curves.c2 = new Map(Object.keys(rl.series || {}).sort().map((k, i) => [k, { label: k.replace("reward/", ""), color: PALETTE[i % PALETTE.length],
                                                                                   points: rl.series[k] }]));
    }

    function redraw() {
      const c1 = Array.from(curves.c1.values()), c2 = Array.from(curves.c2.values());
      $("#charts").hidden = !(c1.length || c2.length);
      drawCurves(charts.c1, c1, view);
      drawCurves(charts.c2, c2, view);
      renderDataTable($("#data-1"), c1, $("#chart1-title").textContent);
      renderDataTable($("#data-2"), c2, $("#chart2-title").textContent);
    }

    function renderOnce(key, value, fn) {
      const text = JSON.stringify(value);
      if (seen[key] === text) return;
      seen[key] = text;
      fn(value);
    }

    function renderKind(d) {
      const box = $("#kind-section");
      if (d.reward) {
        renderOnce("reward", d.reward, (rw) => {
          box.hidden = false;
          const lin = el("p", { class: "lineage-links" }, "Trained on ",
            el("a", { href: `/dashboard/snapshots/${rw.snapshot.id}/`, "data-lineage": "snapshot", text: `snapshot #${rw.snapshot.id} ${rw.snapshot.name}` }),
            rw.reward_model ? [" → ", el("a", { href: `/dashboard/reward-models/${rw.reward_model.id}/`, "data-lineage": "reward_model", text: `reward model #${rw.reward_model.id}` })] : "",
            el("span", { class: "muted", text: ` · preset ${rw.preset} · base ${rw.base_model.split("/").slice(-1)[0]}` }));
          box.replaceChildren(el("h2", { text: "Accuracy per task × criterion" }), lin,
            rw.table ? accuracyTable(rw.table) : el("p", { class: "muted", text: "The table (paper Table 1 layout, with the human ceiling beside every cell) appears when training and evaluation have finished." }));
        });
      } else if (d.policy) {
        policySeries(d.policy.rl_table);
        renderOnce("policy", [d.policy.rl_table.rows, d.policy.sample_grids, d.policy.checkpoint], () => {
          box.hidden = false;
          const pol = d.policy;
          box.replaceChildren(el("h2", { text: "Policy vs reference per task × criterion" }),
            el("p", { class: "lineage-links" }, "Reward model ",
              el("a", { href: `/dashboard/reward-models/${pol.reward_model.id}/`, text: `#${pol.reward_model.id} ${pol.reward_model.name}` }),
              pol.checkpoint ? [" → checkpoint ", el("a", { href: `/dashboard/checkpoints/${pol.checkpoint.id}/`, text: pol.checkpoint.name })] : "",
              el("span", { class: "muted", text: ` · Algorithm ${pol.algorithm} · base ${pol.base_policy}` })),
            rlTable(pol.rl_table),
            el("p", { class: "muted small", text: "Mean P(Yes) that the policy's one-step image beats the reference (last logged windows); above 0.5 the policy wins." }),
            el("h2", { class: "mt", text: "Sample grids" }),
            pol.sample_grids.length ? el("div", { class: "grid-gallery" }, pol.sample_grids.map((u) => sampleGrid(u, u.split("/").slice(-1)[0])))
              : el("p", { class: "muted", text: "Grids (condition · mask · reference · policy) appear every sample_grid_every steps." }));
        });
      } else if (d.generation) {
        renderOnce("gen", d.generation, (g) => {
          box.hidden = false;
          box.replaceChildren(el("h2", { text: "Generated candidates" }),
            el("p", { class: "lineage-links" }, "Checkpoint ", el("a", { href: `/dashboard/checkpoints/${g.checkpoint.id}/`, text: g.checkpoint.name }),
              " vs ", g.opponent ? el("a", { href: `/dashboard/checkpoints/${g.opponent.id}/`, text: g.opponent.name }) : "its base policy",
              " → ", g.campaign ? el("a", { href: `/dashboard/campaigns/${g.campaign.id}/`, text: `campaign ${g.campaign.name}` }) : el("span", { class: "muted", text: `campaign “${g.campaign_name}” (created on success)` }),
              el("span", { class: "muted", text: ` · ${g.samples} samples × ${g.seeds.length} seeds · ${g.candidates_created} new candidates` })),
            g.pairs.length ? el("div", { class: "pair-rows" },
              el("div", { class: "pair-row pair-head", "aria-hidden": "true" }, el("span", { text: "Sample" }), el("span", { text: `Checkpoint: ${g.checkpoint.name}` }),
                el("span", { text: `Opponent: ${g.opponent ? g.opponent.name : "base policy"}` })),
              g.pairs.map((p) => el("div", { class: "pair-row" },
              el("div", { class: "pair-meta" }, el("strong", { text: p.sample }), el("span", { class: "muted small", text: `seed ${p.seed} · ${p.prompt}` })),
              p.a ? el("img", { src: p.a, alt: `checkpoint output for ${p.sample}` }) : el("span"), p.b ? el("img", { src: p.b, alt: `opponent output for ${p.sample}` }) : el("span"))))
              : el("p", { class: "muted", text: "Outputs appear when the job succeeds." }));
        });
      } else if (d.snapshot) {
        renderOnce("snap", d.snapshot, (s) => {
          box.hidden = false;
          const c = s.counts || {};
          box.replaceChildren(el("h2", { text: "Snapshot" }),
            el("p", {}, el("a", { href: `/dashboard/snapshots/${s.id}/`, "data-lineage": "snapshot", text: `#${s.id} ${s.name}` }), el("span", { class: "muted mono small", text: ` ${s.content_hash || ""}` })),
            el("dl", { class: "kv" }, el("dt", { text: "Pairs" }), el("dd", { text: c.pairs ?? "—" }),
              el("dt", { text: "Per split" }), el("dd", { text: Object.entries(c.per_split || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "—" }),
              el("dt", { text: "Judgments" }), el("dd", { text: c.judgments ?? "—" })));
        });
      } else if (d.scores && d.scores.length) {
        renderOnce("scores", d.scores, (sc) => {
          box.hidden = false;
          box.replaceChildren(el("h2", { text: "Scores" }), el("table", { class: "data-table compact" },
            el("thead", {}, el("tr", {}, ["first", "second", "task", "criterion", "P(Yes)"].map((h) => el("th", { text: h })))),
            el("tbody", {}, sc.map((s) => el("tr", {}, el("td", { text: s.first }), el("td", { text: s.second }), el("td", { text: s.task }), el("td", { text: s.criterion }), el("td", { class: "num", text: fmtNum(s.p_yes, 3) }))))));
        });
      }
    }

    function render(d) {
      job = d;
      const st = $("#run-status");
      st.className = `badge status-${d.status}`; st.textContent = d.status; st.dataset.status = d.status;
      root.dataset.status = d.status;
      $("#run-who").textContent = ` · started by ${d.started_by || "—"} · ${fmtTime(d.created_at)}${d.attempts > 1 ? ` · attempt ${d.attempts}` : ""}`;
      const bar = $("#run-progress");
      const p = Math.round(d.progress * 1000) / 10;
      bar.setAttribute("aria-valuenow", String(p)); bar.className = `progress big is-${d.status}`;
      bar.firstElementChild.style.width = `${p}%`;
      $("#run-pct").textContent = `${p.toFixed(p % 1 ? 1 : 0)}%`;
      const elapsed = d.started_at ? ((d.finished_at ? new Date(d.finished_at) : new Date()) - new Date(d.started_at)) / 1000 : null;
      const lm = d.last_metrics || {};
      const stats = [["Step", d.total_steps ? `${d.step} / ${d.total_steps}` : d.step || "—"],
                     ["ETA", d.status === "running" ? fmtDuration(d.eta_seconds) : "—"], ["Elapsed", fmtDuration(elapsed)]];
      for (const k of ["loss", "accuracy", "grad_norm", "lr"]) if (typeof lm[k] === "number") stats.push([k.replace("_", " "), fmtNum(lm[k], 4)]);
      $("#run-stats").replaceChildren(...stats.map(([k, v]) => el("div", { class: "stat" }, el("span", { class: "stat-k", text: k }), el("span", { class: "stat-v", text: v }))));
      renderOnce("links", d.links, (links) => $("#run-links").replaceChildren(...links.map((l) =>
        el("a", { class: `link-chip ${l.role}`, href: l.url }, el("span", { class: "muted", text: l.role === "input" ? "input" : "output" }), l.label))));
      $("#btn-cancel").hidden = !d.can_cancel || d.cancel_requested;
      $("#btn-resume").hidden = !d.can_resume;
      const err = $("#run-error");
      err.hidden = !d.error_full;
      if (d.error_full) { $("#run-error-text").textContent = d.error_full; $("#run-traceback").textContent = d.traceback || "(no traceback)"; }
      renderOnce("config", d.config, (c) => { $("#run-config").textContent = JSON.stringify(c, null, 2); });
      renderOnce("log", d.log_tail, (t) => { const pre = $("#run-log"); if (t) { pre.textContent = t; pre.scrollTop = pre.scrollHeight; } });
      renderOnce("artifacts", d.artifacts, (arts) => {
        const box = $("#run-artifacts");
        if (!arts.length) return;
        box.classList.remove("muted");
        box.replaceChildren(el("ul", { class: "artifact-list" }, arts.map((a) => el("li", {},
          el("a", { href: a.url, text: a.path }), el("span", { class: "muted small", text: humanBytes(a.size) })))));
      });
      const fresh = (d.metrics || []).length > 0 || d.policy;
      addMetrics(d.metrics || []);
      renderKind(d);
      if (fresh) redraw();
    }

    async function poll() {
      const r = await api(`/api/dashboard/jobs/${jobId}/?after=${after}`);
      if (r.ok) render(r.data);
      const finished = job && ["succeeded", "failed", "cancelled"].includes(job.status);
      timer = setTimeout(poll, finished ? 5000 : POLL_MS);
    }

    $("#btn-cancel").addEventListener("click", () => job && jobAction(job, "cancel", () => { clearTimeout(timer); poll(); }));
    $("#btn-resume").addEventListener("click", () => job && jobAction(job, "resume", () => { clearTimeout(timer); poll(); }));
    $("#charts").hidden = true;
    poll();
  }

  // One RL sample grid (a row per sample: condition | mask | reference | policy) under its column labels.
  function sampleGrid(url, name) {
    return el("figure", { class: "sample-grid" },
      el("div", { class: "grid-cols", "aria-hidden": "true" }, ["Condition", "Mask", "Reference", "Policy"].map((t) => el("span", { text: t }))),
      el("img", { src: url, alt: `Sample grid ${name}: one sample per row, columns condition, mask, reference and policy output`, loading: "lazy" }),
      el("figcaption", { text: name }));
  }

  // ---------------------------------------------------------------- overlay of several runs
  function pageOverlay() {
    let ids = (root.dataset.jobs || "").split(",").filter(Boolean).map(Number);
    let runs = [];
    const metricSel = $("#overlay-metric");
    const chart = makeChart($("#overlay-chart"), "value");
    const view = chartView(draw);
    const wanted = new URLSearchParams(location.search).get("metric");
    $("#overlay-data").addEventListener("toggle", draw);

    function syncUrl() {
      const q = new URLSearchParams(location.search);
      q.delete("job");
      ids.forEach((id) => q.append("job", id));
      if (metricSel.value) q.set("metric", metricSel.value);
      history.replaceState(null, "", `?${q}`);
    }

    function curvesFor(metric) {
      return runs.map((r, i) => ({ label: `#${r.id} ${r.name}`, color: PALETTE[i % PALETTE.length], points: (r.curves || {})[metric] || [] }))
        .filter((c) => c.points.length);
    }

    function draw() {
      const metric = metricSel.value;
      const curves = metric ? curvesFor(metric) : [];
      $("#overlay-empty").hidden = curves.length > 0 || !runs.length;
      if (chart) chart.options.scales.y.title.text = metric || "value";
      drawCurves(chart, curves, view);
      renderDataTable($("#overlay-data"), curves, `${metric} per step`);
      syncUrl();
    }

    function renderRuns() {
      $("#overlay-runs").replaceChildren(...runs.map((r, i) => el("li", { "data-job": r.id },
        el("span", { class: "swatch", style: `background:${PALETTE[i % PALETTE.length]}`, "aria-hidden": "true" }),
        el("a", { href: r.url, text: `#${r.id} ${r.name}` }), el("span", { class: "muted small", text: ` ${r.kind_label} · ${r.status}` }),
        (r.tags || []).map((t) => el("span", { class: "tag", text: t })),
        el("button", { type: "button", class: "btn btn-sm btn-ghost", "aria-label": `Remove #${r.id} from the overlay`,
                       onclick: () => { ids = ids.filter((x) => x !== r.id); load(); } }, "Remove"))));
      const metrics = Array.from(new Set(runs.flatMap((r) => Object.keys(r.curves || {})))).sort();
      const keep = metricSel.value || wanted;
      metricSel.replaceChildren(...metrics.map((m) => el("option", { value: m, text: m })));
      const fallback = metrics.find((m) => m.startsWith("loss · train")) || metrics[0] || "";
      metricSel.value = metrics.includes(keep) ? keep : fallback;
    }

    async function load() {
      const err = $("#overlay-error");
      err.hidden = true;
      if (!ids.length) { runs = []; renderRuns(); draw(); return; }
      const q = new URLSearchParams();
      ids.forEach((id) => q.append("job", id));
      const r = await api(`/api/dashboard/runs/overlay/?${q}`);
      if (!r.ok) {
        err.hidden = false;
        err.textContent = `${r.data.message || "Could not load the runs."} ${Object.values(r.data.fields || {}).flat().join(" ")}`;
        return;
      }
      runs = r.data.runs;
      renderRuns();
      draw();
    }

    metricSel.addEventListener("change", draw);
    $("#overlay-add").addEventListener("submit", (e) => {
      e.preventDefault();
      const id = Number($("#overlay-run").value);
      if (id && !ids.includes(id)) { ids.push(id); load(); }
    });
    load();
  }

  function humanBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  // ---------------------------------------------------------------- start forms
  function submitting(form, busy) {
    const btn = $("#btn-start", form);
    if (btn) { btn.disabled = busy; btn.dataset.busy = busy ? "1" : ""; }
  }

  // The domain APIs answer the run they started; its dashboard page is its job's.
  function runPage(run) { return `/dashboard/runs/${run.job.id}/`; }

  function prefill(form) {
    for (const [k, v] of new URLSearchParams(location.search)) if (form.elements[k]) form.elements[k].value = v;
  }

  function pageNewReward() {
    const form = $("#reward-form");
    const presets = JSON.parse($("#preset-configs").textContent);
    const builder = $("#snapshot-builder");
    prefill(form);

    function payload() {
      return { snapshot: form.elements.snapshot.value || null, preset: form.elements.preset.value, base_model: form.elements.base_model.value,
               name: form.elements.name.value, max_steps: numOrNull(form.elements.max_steps.value), batch_size: numOrNull(form.elements.batch_size.value),
               lr: numOrNull(form.elements.lr.value), overrides: parseJsonField(form, "overrides") };
    }

    const previewNow = async () => {
      const out = $("#config-preview"), note = $("#config-note");
      let body;
      try { body = payload(); } catch (e) { note.textContent = "The overrides are not a JSON object."; return; }
      if (!body.snapshot) {
        const merged = { ...(presets[body.preset] || {}), ...body.overrides };
        for (const k of ["max_steps", "batch_size", "lr"]) if (body[k] !== null) merged[k] = Number(body[k]);
        note.textContent = "Preset ← your overrides. Pick a snapshot to resolve the platform fields.";
        out.textContent = JSON.stringify(merged, null, 2);
        return;
      }
      const r = await api("/api/reward/runs/preview/", { method: "POST", body });
      if (r.ok) { note.textContent = "Preset ← your overrides ← platform fields, exactly as the run will get it."; out.textContent = JSON.stringify(r.data.config, null, 2); }
      else { note.textContent = `Not valid yet: ${Object.entries(flattenErrors(r.data.fields)).map(([k, v]) => `${k}: ${v.join(" ")}`).join("; ") || r.data.message}`; }
    };
    const preview = debounce(previewNow, 300);
    form.addEventListener("input", (e) => { if (!builder.contains(e.target)) preview(); });
    form.addEventListener("change", (e) => { if (!builder.contains(e.target)) preview(); });
    previewNow();

    function filterOf() {
      const rate = (id) => ($(id).value === "" ? null : Number($(id).value));
      return { campaign_ids: checked(builder, "campaign").map(Number), criteria: checked(builder, "criterion"), task_types: checked(builder, "task"),
               date_from: $("#b-from").value || null, date_to: $("#b-to").value || null,
               min_peer_agreement_ratio: rate("#b-min-peer"), min_gold_accuracy: rate("#b-min-gold") };
    }
    const count = debounce(async () => {
      const f = filterOf();
      const q = new URLSearchParams();
      f.campaign_ids.forEach((c) => q.append("campaign", c)); f.criteria.forEach((c) => q.append("criterion", c)); f.task_types.forEach((t) => q.append("task", t));
      if (f.date_from) q.set("date_from", f.date_from); if (f.date_to) q.set("date_to", f.date_to);
      if (f.min_peer_agreement_ratio !== null) q.set("min_peer_agreement_ratio", f.min_peer_agreement_ratio);
      if (f.min_gold_accuracy !== null) q.set("min_gold_accuracy", f.min_gold_accuracy);
      q.set("aggregation", aggregation.value);
      const box = $("#pair-count");
      const r = await api(`/api/snapshots/preview/?${q}`);
      if (!r.ok) { box.replaceChildren(el("span", { class: "field-error", text: r.data.message || "Invalid filter." })); return; }
      const d = r.data;
      const splits = Object.entries(d.per_split || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
      const left = d.excluded_annotators || [];
      box.replaceChildren(el("strong", { class: "count-n", "data-testid": "pair-count", text: d.pairs }), ` preference pairs`,
        el("span", { class: "muted", text: `${splits ? " — " + splits : ""} · ${d.judgments || 0} judgments read, ${(d.tie_judgments_excluded || 0) + (d.tied_excluded || 0)} ties excluded` }),
        // Tie-aware rules count tie votes against a preference instead of dropping them.
        aggregation.value.startsWith("tie-aware") ? el("span", { class: "muted", id: "tie-counts", text: ` · tie votes ${d.tie_votes || 0}, outvoted by ties ${d.tie_outvoted || 0}, adjudicated ${d.adjudicated || 0}` }) : "",
        left.length ? el("p", { class: "small", id: "excluded-annotators", text: `Left out: ${left.map((e) => `${e.annotator} (${e.reasons.join("; ")}, ${e.judgments} judgments)`).join(", ")}` }) : "");
    }, 250);
    // The aggregation decides how best–worst judgments become pairs, so it changes the count too.
    const aggregation = $("#b-aggregation"), aggregationHelp = $("#b-aggregation-help");
    const describeAggregation = () => { aggregationHelp.textContent = aggregation.selectedOptions[0].dataset.summary; };
    aggregation.addEventListener("change", describeAggregation);
    describeAggregation();
    builder.addEventListener("change", count);
    builder.addEventListener("toggle", () => { if (builder.open) count(); });
    if (builder.open) count();

    $("#btn-build").addEventListener("click", async () => {
      const status = $("#build-status");
      clearErrors(builder);
      const body = { name: $("#b-name").value.trim(), filter: filterOf(), aggregation: aggregation.value };
      const r = await api("/api/snapshots/", { method: "POST", body });
      if (!r.ok) { showErrors(builder, r.data); const top = $("#form-error"); if (top) { top.hidden = false; top.textContent = r.data.message || "The snapshot could not be created."; } return; }
      const snap = r.data;
      status.textContent = `Building snapshot #${snap.id}…`;
      const poll = async () => {
        const s = await api(`/api/snapshots/${snap.id}/`);
        const st = s.ok ? s.data.status : "queued";
        if (st === "succeeded") {
          const sel = form.elements.snapshot;
          sel.append(el("option", { value: snap.id, text: `#${snap.id} ${s.data.name} · ${(s.data.counts || {}).pairs || 0} pairs` }));
          sel.value = String(snap.id);
          status.textContent = `Snapshot #${snap.id} is ready and selected.`;
          preview();
        } else if (st === "failed") {
          status.textContent = `Snapshot #${snap.id} failed: ${s.data.error || (s.data.job || {}).error || "see its job"}`;
        } else {
          status.textContent = `Building snapshot #${snap.id}… (${st})`;
          setTimeout(poll, POLL_MS);
        }
      };
      poll();
    });

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      let body;
      try { body = payload(); } catch (err) { showErrors(form, err); return; }
      submitting(form, true);
      const r = await api("/api/reward/runs/", { method: "POST", body });
      submitting(form, false);
      if (r.ok) location.assign(runPage(r.data));
      else showErrors(form, r.data);
    });
  }

  function pageNewPolicy() {
    const form = $("#policy-form");
    prefill(form);
    const tau = () => { const alg2 = form.elements.algorithm.value === "2"; $("#p-tau").disabled = !alg2; $("#tau-field").classList.toggle("is-off", !alg2); };
    function payload() {
      const b = { reward_model: form.elements.reward_model.value || null, base_policy: form.elements.base_policy.value, algorithm: Number(form.elements.algorithm.value),
                  conditions_split: form.elements.conditions_split.value, name: form.elements.name.value, overrides: parseJsonField(form, "overrides"),
                  init_checkpoint: Number(form.elements.init_checkpoint.value) || null };
      for (const k of ["task_fill", "task_extend", "task_removal", "hinge_lambda", "max_steps", "batch_size", "learning_rate"]) b[k] = numOrNull(form.elements[k].value);
      b.ema_decay = b.algorithm === 2 ? numOrNull(form.elements.ema_decay.value) : null;
      return b;
    }
    const preview = debounce(async () => {
      const out = $("#config-preview"), note = $("#config-note");
      let body;
      try { body = payload(); } catch (e) { note.textContent = "The overrides are not a JSON object."; return; }
      if (!body.reward_model) { note.textContent = "Pick a reward model to resolve the configuration."; out.textContent = ""; return; }
      const r = await api("/api/policy/runs/preview/", { method: "POST", body });
      if (r.ok) { note.textContent = "Platform defaults ← tiny preset (for the tiny policy) ← your settings."; out.textContent = JSON.stringify(r.data.config, null, 2); }
      else note.textContent = `Not valid yet: ${Object.entries(flattenErrors(r.data.fields)).map(([k, v]) => `${k}: ${v.join(" ")}`).join("; ") || r.data.message}`;
    }, 350);
    form.addEventListener("input", preview);
    form.addEventListener("change", () => { tau(); preview(); });
    tau(); preview();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      let body;
      try { body = payload(); } catch (err) { showErrors(form, err); return; }
      submitting(form, true);
      const r = await api("/api/policy/runs/", { method: "POST", body });
      submitting(form, false);
      if (r.ok) location.assign(runPage(r.data)); else showErrors(form, r.data);
    });
  }

  function filterCriteria(form, listSel, task) {
    $$(`${listSel} [data-task]`, form).forEach((l) => {
      const on = l.dataset.task === task;
      l.hidden = !on;
      if (!on) l.querySelector("input").checked = false;
    });
  }

  function pageNewGeneration() {
    const form = $("#generation-form");
    prefill(form);
    const sync = () => filterCriteria(form, "#g-criteria", form.elements.task.value);
    form.elements.task.addEventListener("change", sync);
    sync();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      let params;
      try { params = parseJsonField(form, "params"); } catch (err) { showErrors(form, err); return; }
      const ids = form.elements.sample_ids.value.split(/[\s,]+/).filter(Boolean);
      const body = { checkpoint: form.elements.checkpoint.value || null, opponent: form.elements.opponent.value || null,
                     seeds: form.elements.seeds.value.split(/[\s,]+/).filter(Boolean), campaign_name: form.elements.campaign_name.value,
                     criteria: checked(form, "criteria"), overlap: form.elements.overlap.value || 3, params };
      if (ids.length) body.sample_ids = ids;
      else { body.tasks = [form.elements.task.value]; if (form.elements.split.value) body.split = form.elements.split.value; }
      if (!body.checkpoint) { showErrors(form, { message: "Please fix the highlighted fields.", fields: { checkpoint: ["Pick a checkpoint."] } }); return; }
      submitting(form, true);
      const r = await api("/api/policy/generations/", { method: "POST", body });
      submitting(form, false);
      if (r.ok) location.assign(`/dashboard/runs/${r.data.job.id}/`); else showErrors(form, r.data);
    });
  }

  // ---------------------------------------------------------------- curator pages
  function pageCampaign() {
    const id = root.dataset.campaign;
    let last = "";
    const fmtRate = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);
    function card(label, value, sub) {
      return el("div", { class: "card stat-card" }, el("span", { class: "stat-k", text: label }), el("span", { class: "stat-big", text: value }), sub ? el("span", { class: "muted small", text: sub }) : "");
    }
    // A node without a url is a page this role cannot open (the API left the link out): plain text.
    function nodeLinks(nodes) { return nodes.length ? nodes.map((n) => el(n.url ? "a" : "span", n.url ? { class: "node-link", href: n.url } : { class: "node-link node-plain" }, n.label, el("span", { class: "muted small", text: ` ${n.extra || ""}` }))) : [el("p", { class: "muted", text: "—" })]; }
    // A-versus-B campaigns only: how often annotators preferred A, per criterion and overall.
    function renderGsb(g) {
      $("#c-gsb-card").hidden = !g;
      if (!g) return;
      const win = (r) => (r.win_rate === null ? "—" : rateCI(r.win_rate * 100, r.judgments, r.ci95 && r.ci95.map((x) => x * 100), 1, "%"));
      const row = (label, r, cls) => el("tr", { class: cls || "" }, el("td", { text: label }), el("td", { class: "num", text: fmtRate(r.good_rate) }),
        el("td", { class: "num", text: fmtRate(r.same_rate) }), el("td", { class: "num", text: fmtRate(r.bad_rate) }),
        el("td", { class: "num", "data-testid": "win-rate-cell" }, win(r)), el("td", { class: "num", text: r.judgments }),
        el("td", { class: "gsb-verdict", text: (r.verdict || "no judgments yet") + (r.items_to_decide ? ` (≈${r.items_to_decide} more items to tell)` : "") }));
      $("#c-gsb").replaceChildren(
        el("p", { class: "muted small", text: `A = ${g.a}, B = ${g.b}. Good: annotators preferred A; Same: tie or no clear difference; Bad: they preferred B. Win rate = (Good + Same/2) / judgments, with n judgments and a 95 % interval clustered by item (Wilson when every item came out alike).` }),
        el("div", { class: "table-wrap" }, el("table", { class: "data-table compact", id: "c-gsb-table" },
          el("thead", {}, el("tr", {}, ["Criterion", "Good", "Same", "Bad", "A win rate (n, 95 %)", "Judgments", "Verdict"].map((h, i) => el("th", { scope: "col", class: i && i < 6 ? "num" : "", text: h })))),
          el("tbody", {}, ...g.criteria.map((r) => row(r.name, r)), row("All criteria", g.overall, "total-row")))));
    }
    async function refresh() {
      const r = await api(`/api/dashboard/campaigns/${id}/`);
      if (!r.ok) return;
      const text = JSON.stringify(r.data);
      if (text === last) return;
      last = text;
      const d = r.data, p = d.progress;
      $("#c-cards").replaceChildren(
        card("Items done", `${p.items_done} / ${p.items_total}`, `${pct(p.fraction_done)} of judgments collected`),
        card("Being judged", p.items_full, `${p.leases_active} active leases`),
        card("Left", p.items_open, "open items"),
        card("Judgments", Object.values(p.judgments_per_criterion).reduce((a, b) => a + b, 0), `${d.annotators.length} annotators`));
      $("#c-criteria").classList.remove("muted");
      $("#c-criteria").replaceChildren(el("div", { class: "table-wrap" }, el("table", { class: "data-table compact" },
        el("thead", {}, el("tr", {}, ["Criterion", "Done", "Judging", "Left", "", "Ties", "α"].map((h, i) => el("th", { class: i === 6 ? "num no-caps" : (i && i !== 4 ? "num" : ""), title: i === 6 ? "Krippendorff's alpha" : null, text: h })))),
        el("tbody", {}, d.criteria.map((c) => el("tr", {}, el("td", { text: c.name }), el("td", { class: "num", text: c.items_done }), el("td", { class: "num", text: c.items_in_progress }),
          el("td", { class: "num", text: c.items_left }), el("td", { class: "w-bar" }, progressBar(c.items_total ? c.items_done / c.items_total : 0, "succeeded", `${c.name}: items done`)),
          el("td", { class: "num", text: fmtRate(c.tie_rate) }), el("td", { class: "num", title: "Krippendorff's alpha", text: c.agreement === null || c.agreement === undefined ? "—" : c.agreement.toFixed(2) })))))));
      renderGsb(d.gsb);
      const lin = d.lineage;
      $("#c-lineage").classList.remove("muted");
      $("#c-lineage").replaceChildren(
        el("h3", { text: "Upstream: made by" }), ...(lin.upstream.length ? nodeLinks(lin.upstream) : [el("p", { class: "muted", text: "Imported candidates (no generation job)." })]),
        lin.generation_job ? el(lin.generation_job.url ? "a" : "span", { class: lin.generation_job.url ? "node-link" : "node-link node-plain", href: lin.generation_job.url || null, text: `generation job #${lin.generation_job.id}` }) : "",
        el("h3", { text: "Downstream: snapshots" }), ...nodeLinks(lin.downstream.snapshots),
        el("h3", { text: "… and reward models" }), ...nodeLinks(lin.downstream.reward_models));
      const box = $("#c-annotators");
      box.classList.remove("muted", "pad");
      // Agreement with peers needs no gold. Raw agreement depends on how hard the work is, so the
      // mark goes by the ratio to how often the others agree with each other: an annotator at
      // under 0.85 of it (with enough comparisons) is worth a look, and a snapshot filter can leave them out.
      const peerLow = (a) => a.peer_agreement_ratio !== null && a.peer_compared >= 10 && a.peer_agreement_ratio < 0.85;
      const peerTitle = (a) => a.peer_agreement === null ? "No other annotator judged the same items yet."
        : `${a.peer_compared} comparisons with other annotators' judgments of the same items` +
          (a.peer_expected === null ? "" : `; the others agree with each other ${fmtRate(a.peer_expected)} of the time on the same campaigns and criteria`) +
          (peerLow(a) ? "; well below them" : "");
      box.replaceChildren(d.annotators.length ? el("div", { class: "table-wrap" }, el("table", { class: "data-table", id: "annotator-table" },
        el("thead", {}, el("tr", {}, ["Annotator", "Judgments", "Last hour", "Last day", "Per hour", "Median s", "Tie rate", "Left picks", "Gold acc.", "Peer agr.", "× peers", "Leases", "Last active"].map((h, i) => el("th", { class: i && i < 12 ? "num" : "", text: h })))),
        el("tbody", {}, d.annotators.map((a) => el("tr", {}, el("td", { text: a.annotator }), el("td", { class: "num", text: a.judgments }), el("td", { class: "num", text: a.judgments_last_hour }),
          el("td", { class: "num", text: a.judgments_last_day }), el("td", { class: "num", text: a.per_hour === null ? "—" : a.per_hour.toFixed(0) }),
          el("td", { class: "num", text: a.median_seconds === null ? "—" : `${a.median_seconds.toFixed(1)} s` }), el("td", { class: `num${a.tie_rate > 0.4 ? " warn" : ""}`, text: fmtRate(a.tie_rate) }),
          el("td", { class: "num", text: fmtRate(a.left_rate) }), el("td", { class: "num", text: fmtRate(a.gold_accuracy) }),
          el("td", { class: "num", "data-annotator": a.annotator, "data-testid": "peer-agreement", text: fmtRate(a.peer_agreement), title: peerTitle(a) }),
          el("td", { class: `num${peerLow(a) ? " warn" : ""}`, "data-annotator": a.annotator, "data-testid": "peer-ratio", title: peerTitle(a),
                     text: a.peer_agreement_ratio === null ? "—" : `${a.peer_agreement_ratio.toFixed(2)}×` }),
          el("td", { class: "num", text: a.leases_active }),
          el("td", { class: "muted", text: fmtAgo(a.last_active) }))))))
        : el("p", { class: "muted pad", text: "No judgments yet." }));
    }
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, 2000);
  }

  function pageNewCampaign() {
    const form = $("#campaign-form");
    const tbody = $("#c-sources tbody");
    const sideA = $("#c-side-a"), sideB = $("#c-side-b");
    let ticked = [];
    let names = [];
    const versus = () => form.elements.pairing.value === "opponents";
    // A vs B names its sides in two selects (never tick order); "every pair" ticks any number of sources.
    const picked = () => (versus() ? [sideA.value, sideB.value].filter(Boolean) : ticked);
    function query(withSources) {
      const q = new URLSearchParams({ task: form.elements.task.value });
      if (form.elements.split.value) q.set("split", form.elements.split.value);
      if (withSources) { picked().forEach((s) => q.append("source", s)); q.set("pairing", form.elements.pairing.value); }
      return q;
    }
    function fillSides() {
      for (const [sel, label] of [[sideA, "Pick source A"], [sideB, "Pick source B"]]) {
        const keep = names.includes(sel.value) ? sel.value : "";
        sel.replaceChildren(el("option", { value: "", text: label }), ...names.map((n) => el("option", { value: n, text: n })));
        sel.value = keep;
      }
    }
    function syncMode() {
      $("#c-ab").hidden = !versus();
      $$("#c-sources .pick-col", form).forEach((c) => { c.hidden = versus(); });
    }
    async function loadSources() {
      filterCriteria(form, "#c-criteria-list", form.elements.task.value);
      const r = await api(`/api/candidate-sources/?${query(false)}`);
      if (!r.ok) return;
      names = r.data.sources.map((s) => s.source_name);
      ticked = ticked.filter((p) => names.includes(p));
      tbody.replaceChildren(...(r.data.sources.length ? r.data.sources.map((s) => el("tr", {},
        el("td", { class: "pick-col" }, el("input", { type: "checkbox", name: "sources", value: s.source_name, "aria-label": s.source_name, checked: ticked.includes(s.source_name) })),
        el("td", { class: "mono small", text: s.source_name }), el("td", { text: s.provenance }),
        el("td", { class: "num", text: s.samples }), el("td", { class: "num", text: s.candidates })))
        : [el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No candidates for this task yet." }))]));
      fillSides();
      syncMode();
      loadPreview();
    }
    async function loadPreview() {
      const box = $("#c-preview");
      const chosen = picked();
      if (versus() && sideA.value && sideA.value === sideB.value) { box.replaceChildren(el("span", { class: "field-error", text: "A and B must be two different sources." })); return; }
      if (chosen.length < (versus() ? 2 : 1)) { box.replaceChildren(el("span", { class: "muted", text: versus() ? "Pick source A and source B." : "Tick the sources to pair." })); return; }
      const r = await api(`/api/candidate-sources/?${query(true)}`);
      if (!r.ok || !r.data.preview) return;
      const pv = r.data.preview;
      box.replaceChildren(el("strong", { class: "count-n", text: pv.items }), " items from ", el("strong", { text: pv.samples }), " samples",
        versus() ? el("span", { class: "muted", text: ` — A = ${chosen[0]}, B = ${chosen[1]}` }) : "");
      if (!form.elements.name.value) form.elements.name.placeholder = `${chosen.join(" vs ")}`.slice(0, 120);
    }
    tbody.addEventListener("change", (e) => {
      const v = e.target.value;
      if (e.target.checked) ticked.push(v); else ticked = ticked.filter((p) => p !== v);
      loadPreview();
    });
    sideA.addEventListener("change", loadPreview);
    sideB.addEventListener("change", loadPreview);
    form.elements.task.addEventListener("change", () => { ticked = []; loadSources(); });
    form.elements.split.addEventListener("change", loadSources);
    $$('input[name="pairing"]', form).forEach((r) => r.addEventListener("change", () => { syncMode(); loadPreview(); }));
    loadSources();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { name: form.elements.name.value || form.elements.name.placeholder, task: form.elements.task.value, split: form.elements.split.value,
                     pairing: form.elements.pairing.value, sources: picked(), criteria: checked(form, "criteria"), overlap: form.elements.overlap.value || 3,
                     annotators: checked(form, "annotators"), start: form.elements.start.value !== "false" };
      if (versus() && (!sideA.value || !sideB.value || sideA.value === sideB.value)) {
        const fields = {};
        if (!sideA.value) fields.side_a = ["Pick source A."];
        if (!sideB.value) fields.side_b = ["Pick source B."];
        if (sideA.value && sideA.value === sideB.value) fields.side_b = ["B must differ from A."];
        showErrors(form, { message: "Please fix the highlighted fields.", fields });
        return;
      }
      submitting(form, true);
      const r = await api("/api/campaigns/from-candidates/", { method: "POST", body });
      submitting(form, false);
      if (r.ok) location.assign(`/dashboard/campaigns/${r.data.id}/`); else showErrors(form, r.data);
    });
  }

  // Reward model page: start an evaluation on a snapshot; reload while one is queued or running.
  function pageRewardModel() {
    const form = $("#evaluation-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      submitting(form, true);
      const body = { snapshot: Number(form.elements.snapshot.value) || null, split: form.elements.split.value };
      const r = await api(`/api/reward/models/${form.dataset.model}/evaluations/`, { method: "POST", body });
      submitting(form, false);
      if (r.ok) location.reload(); else showErrors(form, r.data);
    });
    const baseline = $("#baseline-form");
    baseline.addEventListener("submit", async (e) => {
      e.preventDefault();
      submitting(baseline, true);
      const r = await api("/api/reward/baselines/", { method: "POST", body: { snapshot: Number($("#rm-baseline").dataset.snapshot) } });
      submitting(baseline, false);
      if (r.ok) location.reload(); else showErrors(baseline, r.data);
    });
    if ($("#rm-evaluations").dataset.pending || $("#rm-baseline").dataset.pending) {
      setInterval(() => { if (!document.hidden && !form.contains(document.activeElement)) location.reload(); }, 2000);
    }
  }

  // Checkpoint page: promote to production through the gate, or past it with a written reason.
  function pageCheckpoint() {
    const form = $("#promote-form");
    if (!form) return;
    const card = $("#promotion-card");
    async function promote(force) {
      const reason = form.elements.reason.value.trim();
      const text = force ? `Override the gate and make this checkpoint the production policy? Reason: "${reason || "(none given)"}"`
                         : "Make this checkpoint the production policy?";
      if (!(await confirmAction(text, force ? "Promote anyway" : "Promote"))) return;
      submitting(form, true);
      const r = await api(`/api/policy/checkpoints/${card.dataset.checkpoint}/promote/`, { method: "POST", body: { reason, force } });
      submitting(form, false);
      if (r.ok) location.reload(); else showErrors(form, r.data);
    }
    form.addEventListener("submit", (e) => { e.preventDefault(); promote(false); });
    $("#btn-force").addEventListener("click", () => promote(true));
  }

  // A table wider than its box scrolls inside it; keyboard users need to reach that box too, so a
  // scrolling .table-wrap becomes a named, focusable region (re-checked as pages render and resize).
  function keyboardScroll() {
    $$(".table-wrap, .table-card, .chart-table, pre.code").forEach((box) => {
      const scrolls = box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.dataset.scrollRegion = "1";
        if (!box.hasAttribute("aria-label") && box.tagName !== "PRE") {
          const heading = box.closest("section, .card, details, form");
          const title = heading && heading.querySelector("h2, summary, caption");
          box.setAttribute("role", "region");
          box.setAttribute("aria-label", title ? `${title.textContent.trim()} (scrolls)` : "Table (scrolls)");
        }
      } else if (!scrolls && box.dataset.scrollRegion) {
        box.removeAttribute("tabindex"); box.removeAttribute("role"); box.removeAttribute("aria-label");
        delete box.dataset.scrollRegion;
      }
    });
  }
  const recheck = debounce(keyboardScroll, 100);
  new MutationObserver(recheck).observe(document.body, { childList: true, subtree: true });
  window.addEventListener("resize", recheck);
  keyboardScroll();

  const pages = { checkpoint: pageCheckpoint, runs: pageRuns, run: pageRun, overlay: pageOverlay, "new-reward": pageNewReward, "new-policy": pageNewPolicy,
                  "new-generation": pageNewGeneration, campaign: pageCampaign, "new-campaign": pageNewCampaign,
                  "reward-model": pageRewardModel };
  if (pages[PAGE]) pages[PAGE]();
  // The curator pages (curation.js) share these helpers rather than keeping copies.
  window.OneRewardDash = { $, $$, el, api, showErrors, clearErrors, confirmAction };
})();
