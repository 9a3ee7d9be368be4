/* Campaign page: "Export JSONL / Parquet" start an export job (/api/exports/jobs/) and show its live
 * progress, then the download link. Kept apart from dashboard.js: it only needs the export API. */
(function () {
  "use strict";

  const box = document.getElementById("c-export");
  if (!box) return;
  const campaign = Number(box.dataset.campaign);
  const list = document.getElementById("c-export-jobs");
  const POLL_MS = 1000;
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  let timer = null;

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function call(url, method, body) {
    const init = { method: method || "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (init.method !== "GET") init.headers["X-CSRFToken"] = csrf();
    try {
      const resp = await fetch(url, init);
      let data = {};
      try { data = await resp.json(); } catch (e) { data = {}; }
      return { ok: resp.ok, status: resp.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: { message: "Network error — retrying." } };
    }
  }

  function node(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) el.append(c);
    return el;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i += 1; }
    return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function row(job) {
    const p = Math.round((job.progress || 0) * 1000) / 10;
    const bar = node("div", { class: `progress is-${job.status}`, role: "progressbar", "aria-label": `Export #${job.id}`,
                              "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(p) },
                     node("span", { style: `width:${p}%` }));
    let detail;
    if (job.status === "succeeded") {
      detail = node("span", {}, node("a", { href: job.download_url, "data-testid": "export-download", text: `Download ${job.format}` }),
                    node("span", { class: "muted small", text: ` ${job.rows} rows · ${size(job.size)} · sha256 ${job.sha256.slice(0, 12)}…` }));
    } else if (job.status === "failed" || job.status === "cancelled") {
      detail = node("span", { class: "muted small", text: job.error || job.status });
    } else {
      detail = node("span", { class: "muted small", text: `${job.rows_done} / ${job.rows_total || "?"} rows` },
                    node("button", { type: "button", class: "btn btn-sm btn-ghost", text: "Cancel",
                                     onclick: () => call(`/api/exports/jobs/${job.id}/cancel/`, "POST").then(refresh) }));
    }
    return node("div", { class: "progress-cell", "data-export-job": String(job.id), "data-status": job.status },
                node("span", { class: "badge", text: `#${job.id} ${job.format} ${job.status}` }), bar, detail);
  }

  async function refresh() {
    clearTimeout(timer);
    const r = await call(`/api/exports/jobs/?campaign=${campaign}`);
    if (r.ok) {
      const jobs = r.data.results.slice(0, 5);
      list.replaceChildren(...jobs.map(row));
      if (jobs.some((j) => !FINISHED.has(j.status))) timer = setTimeout(refresh, POLL_MS);
    } else {
      timer = setTimeout(refresh, 3 * POLL_MS);
    }
  }

  async function start(format, button) {
    button.disabled = true;
    const r = await call("/api/exports/jobs/", "POST", { format, campaign_ids: [campaign] });
    button.disabled = false;
    if (!r.ok) {
      list.prepend(node("p", { class: "form-error", role: "alert", text: r.data.message || "Could not start the export." }));
      return;
    }
    refresh();
  }

  box.querySelectorAll("[data-export-format]").forEach((button) => {
    button.addEventListener("click", () => start(button.dataset.exportFormat, button));
  });
  refresh();
})();
