// Anomalies: the episodes the detectors found in the chosen range, open ones first to catch the eye,
// with the series, the metric, and the peak against what was expected. Cursor paging like traces.
import { api, window_ } from "../api.js";
import { count, h, ms, percent, usd, when } from "../format.js";
import { cursorPages } from "../paging.js";

const METRICS = {
  requests: ["Requests / min", count],
  error_rate: ["Error rate", percent],
  latency_p95_ms: ["Latency p95", ms],
  cost_usd: ["Cost / min", usd],
  tokens_per_request: ["Tokens / request", count],
};
const FILTERS = [["service", "Service"], ["provider", "Provider"], ["model", "Model"]];
const PAGE = 50;

function select(name, options, value) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: value === v }, label)));
}

function filterForm(ctx) {
  const p = ctx.params;
  const field = ([name, label]) => h("label", {}, label, h("input", { name, value: p.get(name) || "", placeholder: "any" }));
  const form = h("form", { class: "filters", id: "anomaly-filters" },
    FILTERS.map(field),
    h("label", {}, "Metric", select("metric", [["", "any"], ...Object.entries(METRICS).map(([k, [label]]) => [k, label])], p.get("metric") || "")),
    h("label", {}, "Status", select("status", [["", "any"], ["open", "open"], ["closed", "closed"]], p.get("status") || "")),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", class: "ghost", onclick: () => ctx.navigate("anomalies") }, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate("anomalies", Object.fromEntries([...new FormData(form)].filter(([, v]) => v)));
  });
  return form;
}

const series = (a) => (a.overall ? "All traffic" : [a.service, a.provider, a.model].map((x) => x || "—").join(" · "));

function row(a) {
  const [label, show] = METRICS[a.metric] || [a.metric, String];
  return h("tr", { "data-episode-id": a.episode_id, class: a.status === "open" ? "open" : "" },
    h("td", { class: "nowrap" }, when(a.started_at)),
    h("td", {}, h("div", { class: "strong" }, series(a))),
    h("td", {}, `${label} ${a.direction === "up" ? "↑" : "↓"}`),
    h("td", { class: "num" }, show(a.peak_observed)),
    h("td", { class: "num" }, show(a.peak_expected)),
    h("td", { class: "num" }, `${a.peak_score.toFixed(1)} σ`),
    h("td", {}, h("span", { class: `pill pill-${a.status}` }, a.status)),
    h("td", { class: "nowrap" }, a.ended_at ? when(a.ended_at) : "—"));
}

export async function render(ctx) {
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  ctx.el.replaceChildren(
    filterForm(ctx),
    h("section", { class: "panel flush" },
      h("table", { class: "table", id: "anomalies-table" },
        h("thead", {}, h("tr", {}, ["Started", "Series", "Metric", "Peak", "Expected", "Score", "Status", "Ended"]
          .map((c, i) => h("th", { class: i >= 3 && i <= 5 ? "num" : "" }, c)))),
        tbody),
      pager));
  const filters = Object.fromEntries(["service", "provider", "model", "metric", "status"]
    .map((k) => [k, ctx.params.get(k)]).filter(([, v]) => v));
  const range = window_(ctx.range);
  await cursorPages({
    tbody, pager, columns: 8, what: "anomalies", row,
    fetchPage: (cursor) => api("/anomalies", { ...range, ...filters, limit: PAGE, cursor }, { signal: ctx.signal }),
  })();
}
