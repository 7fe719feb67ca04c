// Alerts: what the tenant's rules fired in the chosen range (firing ones stay listed until they
// resolve), with the value that fired them, the worst value seen and how they ended; and the rules
// themselves. Rules are written through the API (/api/v1/alert-rules, the alerts or admin scope).
import { api, window_ } from "../api.js";
import { emptyRow, h, when } from "../format.js";
import { cursorPages } from "../paging.js";

const PAGE = 50;
const number = (x) => (x === null || x === undefined ? "—" : Number(x).toLocaleString(undefined, { maximumFractionDigits: 4 }));
const condition = (a) => `${a.metric || a.rule.kind} ${a.comparison} ${number(a.threshold)}${a.window ? ` over ${a.window}` : ""}`;

function filterForm(ctx) {
  const status = ctx.params.get("status") || "";
  const form = h("form", { class: "filters", id: "alert-filters" },
    h("label", {}, "Status", h("select", { name: "status" },
      [["", "any"], ["firing", "firing"], ["resolved", "resolved"]].map(([v, label]) => h("option", { value: v, selected: status === v }, label)))),
    h("label", {}, "Rule id", h("input", { name: "rule_id", value: ctx.params.get("rule_id") || "", placeholder: "any" })),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", class: "ghost", onclick: () => ctx.navigate("alerts") }, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate("alerts", Object.fromEntries([...new FormData(form)].filter(([, v]) => v)));
  });
  return form;
}

function row(a) {
  return h("tr", { "data-alert-id": a.alert_id, class: a.status === "firing" ? "open" : "" },
    h("td", { class: "nowrap" }, when(a.fired_at)),
    h("td", {}, h("div", { class: "strong" }, a.rule.name), h("div", { class: "muted small" }, a.summary)),
    h("td", {}, a.rule.severity),
    h("td", {}, a.group || "—"),
    h("td", {}, condition(a)),
    h("td", { class: "num" }, number(a.peak)),
    h("td", {}, h("span", { class: `pill pill-${a.status === "firing" ? "open" : "closed"}` }, a.status)),
    h("td", { class: "nowrap" }, a.resolved_at ? `${when(a.resolved_at)}${a.reason ? ` (${a.reason.replace("_", " ")})` : ""}` : "—"));
}

function ruleRow(r) {
  const c = r.condition;
  const what = c.kind === "threshold" ? `${c.metric} ${c.comparison} ${number(c.value)} over ${c.window}`
    : c.kind === "anomaly" ? `anomaly score ≥ ${number(c.min_score)}` : `no data for ${c.minutes} min`;
  return h("tr", { "data-rule-id": r.id },
    h("td", {}, h("div", { class: "strong" }, r.name), h("div", { class: "muted small" }, r.id)),
    h("td", {}, c.kind), h("td", {}, what), h("td", {}, r.severity),
    h("td", {}, h("span", { class: `pill pill-${r.enabled ? "ok" : "closed"}` }, r.enabled ? "enabled" : "disabled")));
}

export async function render(ctx) {
  const tbody = h("tbody");
  const rules = h("tbody", {}, emptyRow(5, "Loading…"));
  const pager = h("div", { class: "pager" });
  ctx.el.replaceChildren(
    filterForm(ctx),
    h("section", { class: "panel flush" },
      h("table", { class: "table", id: "alerts-table" },
        h("thead", {}, h("tr", {}, ["Fired", "Rule", "Severity", "Group", "Condition", "Peak", "Status", "Resolved"]
          .map((c) => h("th", { class: c === "Peak" ? "num" : "" }, c)))),
        tbody),
      pager),
    h("section", { class: "panel flush" },
      h("h3", {}, "Rules"),
      h("table", { class: "table", id: "rules-table" },
        h("thead", {}, h("tr", {}, ["Rule", "Kind", "Condition", "Severity", "State"].map((c) => h("th", {}, c)))),
        rules)));
  const filters = Object.fromEntries(["status", "rule_id"].map((k) => [k, ctx.params.get(k)]).filter(([, v]) => v));
  const range = window_(ctx.range);
  const listRules = api("/alert-rules", {}, { signal: ctx.signal }).then((page) => {
    rules.replaceChildren(...(page.data.length ? page.data.map(ruleRow) : [emptyRow(5, "No rules yet: create one with POST /api/v1/alert-rules.")]));
  }, (err) => { if (err.name !== "AbortError") rules.replaceChildren(emptyRow(5, `Could not load rules: ${err.message}`)); });
  await Promise.all([
    cursorPages({
      tbody, pager, columns: 8, what: "alerts", row,
      fetchPage: (cursor) => api("/alerts", { ...range, ...filters, limit: PAGE, cursor }, { signal: ctx.signal }),
    })(),
    listRules,
  ]);
}
