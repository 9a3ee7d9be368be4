/* Curator item tools on the dashboard: the campaign page's controls (start / pause / resume /
 * complete, who may annotate), the item browser (/api/campaigns/<id>/items/, filters kept in the
 * address bar) and the item page's adjudication and gold forms (/api/items/<id>/…). Loaded after
 * dashboard.js, whose helpers it uses. */
(function () {
  "use strict";

  const D = window.OneRewardDash;
  const root = document.getElementById("dash");
  if (!D || !root) return;
  const { $, $$, el, api, showErrors, clearErrors, confirmAction } = D;
  const PAGE = root.dataset.page;

  /* Field messages next to their inputs, the request's message in the form's status line. */
  function fail(form, data) {
    showErrors(form, data);
    const box = $("[data-form-status]", form);
    if (box) {
      box.hidden = false;
      box.textContent = data.message || "Something went wrong.";
    }
  }

  // ------------------------------------------------------------- campaign page
  function campaignControls() {
    const box = $("#c-controls");
    if (!box) return;  // curators only
    const id = box.dataset.campaign;
    const error = $("#c-controls-error");
    $$("[data-campaign-action]", box).forEach((button) => button.addEventListener("click", async () => {
      const action = button.dataset.campaignAction;
      if (action === "complete" && !(await confirmAction(
        "Complete this campaign? Annotators get no more items from it and it cannot be started again.", "Complete"))) return;
      button.disabled = true;
      const r = await api(`/api/campaigns/${id}/${action}/`, { method: "POST" });
      if (r.ok) { location.reload(); return; }
      button.disabled = false;
      error.hidden = false;
      error.textContent = r.data.message || `Could not ${action} the campaign.`;
    }));
    const form = $("#c-annotators-form");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      const annotators = $$("input[name=annotators]:checked", form).map((i) => i.value);
      const r = await api(`/api/campaigns/${id}/`, { method: "PATCH", body: { annotators } });
      if (!r.ok) { showErrors(form, r.data); return; }
      $("#c-annotators-saved").textContent = r.data.annotators.length
        ? `Saved: only ${r.data.annotators.join(", ")} may annotate.` : "Saved: open to every annotator.";
    });
  }

  // ------------------------------------------------------------- item browser
  const FILTERS = ["status", "disputed", "gold", "annotator"];

  function itemBrowser() {
    const campaign = root.dataset.campaign;
    const form = $("#item-filters");
    const tbody = $("#items-table tbody");
    const error = $("#item-filter-error");
    const initial = new URLSearchParams(location.search);
    FILTERS.forEach((name) => { if (initial.get(name)) form.elements[name].value = initial.get(name); });
    let page = Number(initial.get("page")) || 1;
    let seq = 0;

    function agreementCell(c) {
      if (!c || !c.judgments) return el("td", { class: "muted", text: "—" });
      if (c.adjudicated) return el("td", {}, el("strong", { text: c.adjudicated }), el("span", { class: "muted small", text: " adjudicated" }));
      return el("td", { "data-disputed": c.disputed ? "yes" : null }, `${Math.round(c.agreement * 100)} % `,
                c.disputed ? el("span", { class: "badge status-failed", text: c.split ? "split" : "disputed" })
                           : el("span", { class: "muted small", text: c.majority || "" }));
    }

    function row(it, criteria) {
      return el("tr", { "data-item": String(it.id) },
        el("td", {}, el("a", { href: `/dashboard/items/${it.id}/`, text: `#${it.id}` })),
        el("td", { text: it.sample }),
        el("td", {}, el("span", { class: "badge", text: it.status.replace("_", " ") })),
        el("td", { text: it.is_gold ? "gold" : "" }),
        el("td", { class: "num", text: String(it.judgments) }),
        criteria.map((slug) => agreementCell(it.criteria[slug])),
        el("td", { class: "small", text: it.annotators.join(", ") }));
    }

    async function load() {
      const q = new URLSearchParams();
      FILTERS.forEach((name) => { const v = form.elements[name].value.trim(); if (v) q.set(name, v); });
      if (page > 1) q.set("page", String(page));
      history.replaceState(null, "", `${location.pathname}${q.toString() ? `?${q}` : ""}`);
      const mine = ++seq;  // a slower earlier answer must not overwrite a newer one
      const r = await api(`/api/campaigns/${campaign}/items/?${q}`);
      if (mine !== seq) return;
      if (!r.ok) {
        error.hidden = false;
        error.textContent = Object.values(r.data.fields || {}).flat().join(" ") || r.data.message || "Could not load the items.";
        return;
      }
      error.hidden = true;
      const d = r.data;
      page = d.page;
      tbody.replaceChildren(...(d.results.length ? d.results.map((it) => row(it, d.criteria))
        : [el("tr", {}, el("td", { colspan: String(6 + d.criteria.length), class: "muted", text: "No item matches these filters." }))]));
      $("#items-count").textContent = `${d.count} matching`;
      $("#items-page").textContent = `Page ${d.page} of ${d.pages}`;
      $("#items-prev").disabled = d.page <= 1;
      $("#items-next").disabled = d.page >= d.pages;
    }

    form.addEventListener("change", () => { page = 1; load(); });
    form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; load(); });
    $("#items-prev").addEventListener("click", () => { page -= 1; load(); });
    $("#items-next").addEventListener("click", () => { page += 1; load(); });
    load();
  }

  // ------------------------------------------------------------- item page
  /* The answer a form part holds, in the shape the API takes, or null when none is picked. */
  function answerOf(scope, prefix) {
    const pick = (name) => $(`[name="${name}"][data-answer="${prefix}"]`, scope);
    const none = pick("no_difference");
    if (none && none.checked) return "no_difference";
    const best = pick("best"), worst = pick("worst");
    if (best) return best.value && worst.value ? { best: Number(best.value), worst: Number(worst.value) } : null;
    const answer = pick("answer");
    if (!answer || !answer.value) return null;
    return /^\d+$/.test(answer.value) ? Number(answer.value) : answer.value;
  }

  function itemPage() {
    const id = root.dataset.item;
    $("#toggle-mask").addEventListener("change", (e) => $("#sample-figure").classList.toggle("mask-hidden", !e.target.checked));
    const adjudicate = $("#adjudicate-form");
    if (!adjudicate) return;  // curators only from here on
    adjudicate.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(adjudicate);
      const body = { criterion: adjudicate.elements.criterion.value, note: adjudicate.elements.note.value,
                     answer: answerOf(adjudicate, "adj") };
      const r = await api(`/api/items/${id}/adjudicate/`, { method: "POST", body });
      if (r.ok) location.reload(); else fail(adjudicate, r.data);
    });
    const gold = $("#gold-form");
    gold.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(gold);
      const answer = {};
      $$("[data-gold-criterion]", gold).forEach((fs) => {
        const slug = fs.dataset.goldCriterion;
        const value = answerOf(fs, `gold-${slug}`);
        if (value !== null) answer[slug] = value;
      });
      if (!Object.keys(answer).length) {
        fail(gold, { message: "Pick the expected answer for at least one criterion." });
        return;
      }
      const r = await api(`/api/items/${id}/gold/`, { method: "POST", body: { answer } });
      if (r.ok) location.reload(); else fail(gold, r.data);
    });
    const unmark = $("#gold-unmark");
    if (unmark) unmark.addEventListener("click", async () => {
      if (!(await confirmAction("Make this an ordinary item again? Its judgments will count in snapshots.", "Unmark gold"))) return;
      const r = await api(`/api/items/${id}/gold/`, { method: "DELETE" });
      if (r.ok) location.reload(); else fail(gold, r.data);
    });
  }

  if (PAGE === "campaign") campaignControls();
  else if (PAGE === "items") itemBrowser();
  else if (PAGE === "item") itemPage();
})();
