/* Curator pages of the dashboard: People (/api/users/) and the taxonomy forms and guideline
 * editor (/api/criteria/, /api/task-types/, /api/guidelines/preview/). Loaded after dashboard.js,
 * whose helpers it uses. */
(function () {
  "use strict";

  const D = window.OneRewardDash;
  const root = document.getElementById("dash");
  if (!D || !root) return;
  const { $, $$, el, api, showErrors, clearErrors, confirmAction } = D;

  function formBody(form) {
    const body = {};
    for (const input of form.elements) {
      if (!input.name) continue;
      if (input.type === "checkbox" && input.value === "on") body[input.name] = input.checked;
      else if (input.type === "checkbox") (body[input.name] = body[input.name] || []).push(...(input.checked ? [input.value] : []));
      else body[input.name] = input.value;
    }
    return body;
  }

  function busy(form, on) {
    $$("button", form).forEach((b) => { b.disabled = on; });
  }

  // ------------------------------------------------------------- people
  function fmtWhen(iso) {
    return iso ? new Date(iso).toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "never";
  }

  function showLink(result, text, data) {
    result.hidden = false;
    result.replaceChildren(el("p", { text }),
      el("p", {}, "Set-password link (works once): ", el("a", { href: data.set_password_url, "data-testid": "set-password-link", text: data.set_password_url })),
      el("p", { class: "muted small", text: data.emailed ? "Also e-mailed to the account's address." : "The account has no e-mail address: hand the link over yourself." }));
  }

  function pagePeople() {
    const table = $("#people-table tbody"), result = $("#people-result"), form = $("#person-form");
    const filterRole = $("#p-filter-role"), filterActive = $("#p-filter-active");

    async function act(user, label, call) {
      const r = await call();
      if (!r.ok) {
        result.hidden = false;
        result.replaceChildren(el("strong", { text: `${label} ${user.username}: ${r.data.message || "refused."}` }));
        return null;
      }
      return r.data;
    }

    function row(u) {
      const actions = el("td", { class: "actions" });
      if (u.can_manage) {
        actions.append(
          el("button", { type: "button", class: "btn btn-sm", "data-action": u.is_active ? "deactivate" : "reactivate",
            onclick: async () => {
              if (u.is_active && !(await confirmAction(`Deactivate ${u.username}? They are signed out and cannot sign in until reactivated.`, "Deactivate"))) return;
              if (await act(u, u.is_active ? "Deactivate" : "Reactivate", () => api(`/api/users/${u.id}/`, { method: "PATCH", body: { is_active: !u.is_active } }))) load();
            } }, u.is_active ? "Deactivate" : "Reactivate", el("span", { class: "sr-only", text: ` ${u.username}` })),
          " ",
          el("button", { type: "button", class: "btn btn-sm", "data-action": "reset", disabled: !u.is_active,
            onclick: async () => {
              const data = await act(u, "Reset the password of", () => api(`/api/users/${u.id}/reset-password/`, { method: "POST" }));
              if (data) showLink(result, `New set-password link for ${u.username}.`, data);
            } }, "Reset password", el("span", { class: "sr-only", text: ` of ${u.username}` })));
      }
      const name = [u.first_name, u.last_name].filter(Boolean).join(" ");
      return el("tr", { "data-user": u.username },
        el("td", {}, el("strong", { text: u.username }), name ? el("span", { class: "muted small", text: ` ${name}` }) : "",
           u.email ? el("div", { class: "muted small", text: u.email }) : ""),
        el("td", {}, el("span", { class: "badge", text: u.role || "no role" })),
        el("td", {}, el("span", { class: `badge ${u.is_active ? "badge-active" : "badge-paused"}`, "data-testid": "active", text: u.is_active ? "active" : "deactivated" })),
        el("td", { class: "muted", text: fmtWhen(u.last_login) }),
        el("td", {}, u.campaigns.length ? u.campaigns.map((c, i) => [i ? ", " : "", el("a", { href: `/dashboard/campaigns/${c.id}/`, text: c.name })])
                                        : el("span", { class: "muted", text: "all open campaigns" })),
        actions);
    }

    async function load() {
      const q = new URLSearchParams();
      if (filterRole.value) q.set("role", filterRole.value);
      if (filterActive.value) q.set("active", filterActive.value);
      const r = await api(`/api/users/?${q}`);
      if (!r.ok) { table.replaceChildren(el("tr", {}, el("td", { colspan: "6", text: r.data.message || "Could not load the accounts." }))); return; }
      table.replaceChildren(...(r.data.users.length ? r.data.users.map(row)
                                                    : [el("tr", {}, el("td", { colspan: "6", class: "muted center", text: "No accounts match." }))]));
    }

    $("#people-filters").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    filterRole.addEventListener("change", load);
    filterActive.addEventListener("change", load);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      busy(form, true);
      const r = await api("/api/users/", { method: "POST", body: formBody(form) });
      busy(form, false);
      if (!r.ok) { showErrors(form, r.data); return; }
      form.reset();
      if (r.data.set_password_url) showLink(result, `Invited ${r.data.username} (${r.data.role}).`, r.data);
      else { result.hidden = false; result.replaceChildren(el("p", { text: `Created ${r.data.username} (${r.data.role}).` })); }
      load();
    });
    load();
  }

  // ------------------------------------------------------------- taxonomy forms
  function pageTaxonomyForm() {
    const form = $("#taxonomy-form");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      busy(form, true);
      const slug = form.dataset.slug;
      const url = slug ? `${form.dataset.api}${encodeURIComponent(slug)}/` : form.dataset.api;
      const r = await api(url, { method: slug ? "PATCH" : "POST", body: formBody(form) });
      busy(form, false);
      if (r.ok) location.assign(form.dataset.next); else showErrors(form, r.data);
    });
  }

  // ------------------------------------------------------------- guideline editor
  function pageGuideline() {
    const form = $("#guideline-form"), preview = $("#guideline-preview"), body = $("#g-body");
    async function render() {
      const r = await api("/api/guidelines/preview/", { method: "POST", body: { body_markdown: body.value } });
      if (!r.ok) { showErrors(form, r.data); return; }
      clearErrors(form);
      preview.innerHTML = r.data.html; // sanitised server-side (annotation.guidelines.render_guideline)
    }
    $("#btn-preview").addEventListener("click", render);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      busy(form, true);
      const r = await api(`/api/criteria/${encodeURIComponent(form.dataset.slug)}/guidelines/`, { method: "POST", body: { body_markdown: body.value } });
      busy(form, false);
      if (r.ok) location.reload(); else showErrors(form, r.data);
    });
  }

  const pages = { people: pagePeople, "criterion-form": pageTaxonomyForm, "task-type-form": pageTaxonomyForm, guideline: pageGuideline };
  if (pages[root.dataset.page]) pages[root.dataset.page]();
})();
