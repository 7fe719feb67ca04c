// Overview: totals, charts over time and the split by model and provider for the chosen range.
// Render time (API answers parsed → charts drawn) is recorded as the performance measure
// "overview:render" and in window.llmscopePerf.overview, for the benchmark and the tests.
import { api, window_ } from "../api.js";
import { lineChart } from "../charts.js";
import { count, h, ms, percent, usd } from "../format.js";

export function card(metric, label, value, text, sub) {
  return h("div", { class: "card", "data-metric": metric, "data-value": value ?? "" },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, text),
    h("div", { class: "card-sub" }, sub || ""));
}

export function chartBox(title, id) {
  return h("section", { class: "panel" }, h("h2", {}, title), h("div", { class: "chart", id }));
}

function seriesOf(ts, metric) {
  return ts.series.map((s) => ({ label: s.group === null ? metric : s.group || "(none)", values: s.values[metric] }));
}

export function breakdownTable(title, dimension, items, { valueLabel } = {}) {
  const head = ["", "Requests", "Errors", "Tokens in / out", "Cost", "p95"];
  return h("section", { class: "panel" },
    h("h2", {}, title),
    h("table", { class: "table", "data-breakdown": dimension },
      h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { class: i ? "num" : "" }, i ? c : valueLabel || dimension)))),
      h("tbody", {}, items.length ? items.map((it) => h("tr", {},
        h("td", { class: "key" }, it.key || h("span", { class: "muted" }, "(none)")),
        h("td", { class: "num" }, count(it.requests)),
        h("td", { class: "num" }, percent(it.error_rate)),
        h("td", { class: "num" }, `${count(it.input_tokens)} / ${count(it.output_tokens)}`),
        h("td", { class: "num" }, usd(it.cost_usd)),
        h("td", { class: "num" }, ms(it.latency_p95_ms)))) : h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No data in this range.")))));
}

export async function render(ctx) {
  const range = window_(ctx.range);
  const opts = { signal: ctx.signal };
  const [summary, byModel, byProvider, latency, models, providers] = await Promise.all([
    api("/metrics/summary", range, opts),
    api("/metrics/timeseries", { ...range, metric: ["requests", "cost_usd"], group_by: "model", limit: 6 }, opts),
    api("/metrics/timeseries", { ...range, metric: ["requests", "input_tokens", "output_tokens"], group_by: "provider", limit: 6 }, opts),
    api("/metrics/timeseries", { ...range, metric: ["latency_p50", "latency_p95", "error_rate"] }, opts),
    api("/metrics/breakdown", { ...range, dimension: "model", metric: "requests", limit: 10 }, opts),
    api("/metrics/breakdown", { ...range, dimension: "provider", metric: "requests", limit: 10 }, opts),
  ]);
  performance.mark("overview:data");
  const s = summary.data;
  const tokens = s.input_tokens + s.output_tokens;
  const unpriced = s.requests - s.cost_known_requests;
  ctx.el.replaceChildren(
    h("div", { class: "cards" },
      card("requests", "Requests", s.requests, count(s.requests), `${count(s.errors)} errors`),
      card("error_rate", "Error rate", s.error_rate, percent(s.error_rate), `${count(s.errors)} of ${count(s.requests)}`),
      card("cost_usd", "Cost", s.cost_usd, usd(s.cost_usd), unpriced > 0 ? `${count(unpriced)} without a cost` : "every request priced"),
      card("tokens", "Tokens", tokens, count(tokens), `${count(s.input_tokens)} in · ${count(s.output_tokens)} out`),
      card("latency_p95_ms", "p95 latency", s.latency_p95_ms, ms(s.latency_p95_ms), `p50 ${ms(s.latency_p50_ms)} · p99 ${ms(s.latency_p99_ms)}`)),
    h("div", { class: "grid-2" },
      chartBox("Requests by model", "chart-requests"),
      chartBox("Cost by model", "chart-cost"),
      chartBox("Requests by provider", "chart-provider-requests"),
      chartBox("Tokens (in + out) by provider", "chart-provider-tokens"),
      chartBox("Latency", "chart-latency"),
      chartBox("Error rate", "chart-errors")),
    h("div", { class: "grid-2" },
      breakdownTable("By model", "model", models.data.items),
      breakdownTable("By provider", "provider", providers.data.items)),
    h("p", { class: "muted small" },
      `Source: ${s.source}. Latency percentiles within ${(s.latency_relative_error * 100).toFixed(0)} %. `,
      `Buckets of ${byModel.data.interval_seconds / 60} min.`),
  );
  const t = byModel.data.timestamps;
  lineChart(document.getElementById("chart-requests"), { timestamps: t, series: seriesOf(byModel.data, "requests"), format: count });
  lineChart(document.getElementById("chart-cost"), { timestamps: t, series: seriesOf(byModel.data, "cost_usd"), format: usd });
  const p = byProvider.data;
  lineChart(document.getElementById("chart-provider-requests"), { timestamps: p.timestamps, series: seriesOf(p, "requests"), format: count });
  lineChart(document.getElementById("chart-provider-tokens"), {
    timestamps: p.timestamps,
    series: p.series.map((x) => ({ label: x.group || "(none)", values: x.values.input_tokens.map((v, i) => v + x.values.output_tokens[i]) })),
    format: count,
  });
  const l = latency.data;
  lineChart(document.getElementById("chart-latency"), {
    timestamps: l.timestamps,
    series: [{ label: "p50", values: l.series[0].values.latency_p50 }, { label: "p95", values: l.series[0].values.latency_p95 }],
    format: ms,
  });
  lineChart(document.getElementById("chart-errors"), {
    timestamps: l.timestamps, series: [{ label: "error rate", values: l.series[0].values.error_rate, color: "#ef4444" }],
    format: percent, fill: true,
  });
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  performance.mark("overview:drawn");
  const measure = performance.measure("overview:render", "overview:data", "overview:drawn");
  window.llmscopePerf = { ...(window.llmscopePerf || {}), overview: measure.duration };
  ctx.el.dataset.renderMs = measure.duration.toFixed(1);
}
