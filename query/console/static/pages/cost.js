// Cost: the range's spend over time and who and what it went to (users, models, prompts).
import { api, window_ } from "../api.js";
import { lineChart } from "../charts.js";
import { count, h, percent, usd } from "../format.js";
import { card, chartBox } from "./overview.js";

function costTable(title, dimension, label, items, total) {
  return h("section", { class: "panel" },
    h("h2", {}, title),
    h("table", { class: "table", "data-breakdown": dimension },
      h("thead", {}, h("tr", {}, [label, "Cost", "Share", "Requests"].map((c, i) => h("th", { class: i ? "num" : "" }, c)))),
      h("tbody", {}, items.length ? items.map((it) => h("tr", {},
        h("td", { class: "key" }, it.key || h("span", { class: "muted" }, "(none)"),
          h("div", { class: "share-track" }, h("div", { class: "share-bar", style: { width: `${total && it.cost_usd ? (it.cost_usd / total) * 100 : 0}%` } }))),
        h("td", { class: "num" }, usd(it.cost_usd)),
        h("td", { class: "num" }, total && it.cost_usd !== null ? percent(it.cost_usd / total) : "—"),
        h("td", { class: "num" }, count(it.requests))))
        : h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No spend in this range.")))));
}

export async function render(ctx) {
  const range = window_(ctx.range);
  const opts = { signal: ctx.signal };
  const top = (dimension) => api("/metrics/breakdown", { ...range, dimension, metric: "cost_usd", limit: 15 }, opts);
  const [summary, series, users, models, prompts] = await Promise.all([
    api("/metrics/summary", range, opts),
    api("/metrics/timeseries", { ...range, metric: "cost_usd", group_by: "model", limit: 6 }, opts),
    top("user"), top("model"), top("prompt"),
  ]);
  const s = summary.data;
  const perRequest = s.cost_usd !== null && s.cost_known_requests ? s.cost_usd / s.cost_known_requests : null;
  const unpriced = s.requests - s.cost_known_requests;
  ctx.el.replaceChildren(
    h("div", { class: "cards" },
      card("cost_usd", "Total cost", s.cost_usd, usd(s.cost_usd), `${count(s.cost_known_requests)} priced requests`),
      card("cost_per_request", "Per priced request", perRequest, usd(perRequest), "average"),
      card("unpriced", "Requests without a cost", unpriced, count(unpriced), unpriced ? h("a", { href: "#/prices" }, "no model, or a model without a price") : "every request priced")),
    chartBox("Cost by model", "chart-cost-models"),
    h("div", { class: "grid-3" },
      costTable("By user", "user", "User", users.data.items, s.cost_usd),
      costTable("By model", "model", "Model", models.data.items, s.cost_usd),
      costTable("By prompt", "prompt", "Prompt", prompts.data.items, s.cost_usd)));
  lineChart(document.getElementById("chart-cost-models"), {
    timestamps: series.data.timestamps, series: series.data.series.map((x) => ({ label: x.group || "(none)", values: x.values.cost_usd })), format: usd,
  });
}
