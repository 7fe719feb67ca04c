// One trace: the span tree as a waterfall (parents before children, siblings by start time),
// and the selected span's details: provider, model, tokens by class, cost and its price source,
// PII counts, the redacted input and output, attributes and events.
import { api } from "../api.js";
import { count, exact, h, ms, statusPill, usd, when } from "../format.js";

// Depth-first order of the tree; spans whose parent is not in the trace are roots.
export function treeOrder(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parent_span_id && ids.has(s.parent_span_id)) {
      if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
      children.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const byStart = (a, b) => Date.parse(a.start_time) - Date.parse(b.start_time) || a.span_id.localeCompare(b.span_id);
  const out = [];
  const visit = (span, depth) => {
    out.push({ span, depth });
    for (const child of (children.get(span.span_id) || []).sort(byStart)) visit(child, depth + 1);
  };
  roots.sort(byStart).forEach((r) => visit(r, 0));
  return out;
}


function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value === "" || value === null || value === undefined ? h("span", { class: "muted" }, "—") : value)];
}

function details(span) {
  const tokens = h("table", { class: "table compact tokens" },
    h("thead", {}, h("tr", {}, ["Input", "Cached input", "Cache write", "Output", "Reasoning"].map((c) => h("th", { class: "num" }, c)))),
    h("tbody", {}, h("tr", {}, [span.input_tokens, span.cached_input_tokens, span.cache_write_tokens, span.output_tokens, span.reasoning_tokens]
      .map((n) => h("td", { class: "num" }, exact(n))))));
  const pii = Object.entries(span.pii_counts || {});
  const attrs = Object.entries(span.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  return h("div", { class: "span-details", "data-span-id": span.span_id },
    h("div", { class: "details-head" }, h("h2", {}, span.name), statusPill(span.status)),
    span.status_message ? h("p", { class: "error" }, span.status_message) : null,
    h("dl", { class: "fields" },
      field("Service", span.service), field("Kind", span.kind), field("Operation", span.operation),
      field("Provider", span.provider), field("Model", span.model ? `${span.model}${span.model_version ? ` (${span.model_version})` : ""}` : ""),
      field("Started", when(span.start_time)), field("Duration", ms(span.duration_ms)),
      field("Cost", span.cost_usd === null ? h("span", { class: "muted" }, span.input_tokens || span.output_tokens ? "unknown price" : "—") : usd(span.cost_usd)),
      field("Price source", span.price_source), field("User", span.user_id), field("Session", span.session_id),
      field("PII found", pii.length ? pii.map(([k, n]) => h("span", { class: "pill pill-pii" }, `${k} × ${n}`)) : "none"),
      field("Span id", h("span", { class: "mono" }, span.span_id))),
    span.input_tokens || span.output_tokens || span.model ? [h("h3", {}, "Tokens"), tokens] : null,
    h("h3", {}, "Input"), h("pre", { class: "content", "data-content": "input" }, span.input || "(none recorded)"),
    h("h3", {}, "Output"), h("pre", { class: "content", "data-content": "output" }, span.output || "(none recorded)"),
    h("details", {}, h("summary", {}, `Attributes (${attrs.length})`),
      h("table", { class: "table compact" }, h("tbody", {}, attrs.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "wrap" }, v)))))),
    span.events.length ? h("details", {}, h("summary", {}, `Events (${span.events.length})`),
      h("ul", { class: "events" }, span.events.map((e) => h("li", {}, h("strong", {}, e.name), " ", h("span", { class: "muted" }, when(e.time)))))) : null);
}

// The duration beside its bar: after it, before it, or inside it when the bar spans the track.
function timeLabel(span, left, width) {
  if (left + width <= 82) return h("span", { class: "wf-time", style: { left: `${left + width}%` } }, ms(span.duration_ms));
  if (left >= 18) return h("span", { class: "wf-time before", style: { right: `${100 - left}%` } }, ms(span.duration_ms));
  return h("span", { class: "wf-time inside", style: { right: `${100 - left - width}%` } }, ms(span.duration_ms));
}

export async function render(ctx) {
  const id = (ctx.args[0] || "").toLowerCase();
  ctx.setTitle("Trace");
  const { data } = await api(`/traces/${encodeURIComponent(id)}`, {}, { signal: ctx.signal });
  const rows = treeOrder(data.spans);
  const t0 = Math.min(...data.spans.map((s) => Date.parse(s.start_time)));
  const t1 = Math.max(...data.spans.map((s) => Date.parse(s.start_time) + s.duration_ms));
  const total = Math.max(t1 - t0, 0.001);
  const cost = data.spans.some((s) => s.cost_usd !== null) ? data.spans.reduce((a, s) => a + (s.cost_usd || 0), 0) : null;
  const errors = data.spans.filter((s) => s.status === "error").length;
  const panel = h("aside", { class: "panel details-panel", id: "span-details" });
  const select = (span, row) => {
    for (const r of document.querySelectorAll(".waterfall .wf-row")) r.classList.remove("selected");
    row.classList.add("selected");
    panel.replaceChildren(details(span));
  };
  const waterfall = h("div", { class: "waterfall", id: "waterfall" },
    h("div", { class: "wf-head" }, h("div", {}, "Span"), h("div", { class: "wf-scale" },
      [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, ms(total * f))))),
    rows.map(({ span, depth }) => {
      const left = ((Date.parse(span.start_time) - t0) / total) * 100;
      const width = Math.max((span.duration_ms / total) * 100, 0.3);
      const row = h("div", { class: `wf-row${span.status === "error" ? " is-error" : ""}`, "data-span-id": span.span_id, "data-depth": depth, tabindex: 0 },
        h("div", { class: "wf-name", style: { paddingLeft: `${depth * 18 + 8}px` } },
          depth ? h("span", { class: "wf-elbow" }, "└") : null,
          h("span", { class: "strong" }, span.name),
          span.model ? h("span", { class: "tag" }, span.model) : null,
          span.service !== data.spans[0].service ? h("span", { class: "tag tag-muted" }, span.service) : null),
        h("div", { class: "wf-track" },
          h("div", { class: `wf-bar ${span.provider ? "llm" : ""}`, style: { left: `${left}%`, width: `${width}%` } }),
          timeLabel(span, left, width)));
      row.addEventListener("click", () => select(span, row));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") select(span, row); });
      return row;
    }));
  ctx.el.replaceChildren(
    h("div", { class: "trace-head" },
      h("a", { href: "#/traces", class: "back" }, "← Traces"),
      h("div", { class: "mono", id: "trace-id" }, data.trace_id),
      h("div", { class: "trace-stats" },
        h("span", {}, when(data.spans.length ? rows[0].span.start_time : null)),
        h("span", {}, `${ms(total)} total`), h("span", {}, `${data.spans.length} spans`),
        h("span", {}, `${count(data.spans.reduce((a, s) => a + s.input_tokens, 0))} in / ${count(data.spans.reduce((a, s) => a + s.output_tokens, 0))} out tokens`),
        h("span", {}, usd(cost)), errors ? h("span", { class: "pill pill-error" }, `${errors} error${errors > 1 ? "s" : ""}`) : null)),
    h("div", { class: "trace-layout" }, h("section", { class: "panel flush" }, waterfall), panel));
  ctx.setTitle(`Trace · ${rows[0].span.name}`);
  const first = rows.find((r) => r.span.provider) || rows[0];
  select(first.span, waterfall.querySelector(`[data-span-id="${first.span.span_id}"]`));
}
