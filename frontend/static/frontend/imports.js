/* Import page: while an import's job runs, poll the dashboard's job API (/api/dashboard/jobs/<id>/)
 * and move the progress bar (rows checked, then rows written); once the job has finished, reload
 * the import's view, which the server renders with the counts per split or every row error. */
(function () {
  "use strict";

  const box = document.getElementById("import-progress");
  if (!box) return;
  const bar = document.getElementById("import-progress-bar");
  const text = document.getElementById("import-progress-text");
  const POLL_MS = 700;
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  let after = 0; // only new metric points: the bar needs the job's own fields, not its history

  function describe(job) {
    const m = job.last_metrics || {};
    if (job.status === "queued") return "Waiting for a worker…" + (job.error ? ` ${job.error}` : "");
    if (m.phase === "write") return `Writing rows: ${m.rows_done} of ${m.rows_total}`;
    if (m.rows_total) return `Checking rows: ${m.rows_done} of ${m.rows_total}`;
    return "Starting…";
  }

  function show(job) {
    const pct = Math.round((job.progress || 0) * 100);
    bar.className = `progress big is-${job.status}`;
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = `${pct}%`;
    text.textContent = describe(job);
    box.dataset.status = job.status;
  }

  async function poll() {
    let job = null;
    try {
      const resp = await fetch(`${box.dataset.jobUrl}?after=${after}`, { credentials: "same-origin",
                                                                          headers: { Accept: "application/json" } });
      if (resp.ok) job = await resp.json();
    } catch (e) {
      job = null; // a network blip: ask again at the next tick
    }
    if (job) {
      for (const point of job.metrics || []) after = Math.max(after, point.id);
      show(job);
      if (FINISHED.has(job.status)) {
        window.location.replace(box.dataset.resultUrl);
        return;
      }
    }
    window.setTimeout(poll, POLL_MS);
  }

  poll();
})();
