// Traces: the API's filters, cursor paging (50 a page, never everything), search by trace id.
import { api, window_ } from "../api.js";
import { count, emptyRow, h, ms, statusPill, usd, when } from "../format.js";

const FILTERS = [
  ["service", "Service"], ["model", "Model"], ["provider", "Provider"], ["operation", "Operation"],
  ["user_id", "User"], ["session_id", "Session"],
];
const PAGE = 50;
const pageSize = (params) => Math.min(Math.max(Number(params.get("limit")) || PAGE, 1), 500);

function filterForm(ctx) {
  const p = ctx.params;
  const field = ([name, label]) => h("label", {}, label, h("input", { name, value: p.get(name) || "", placeholder: "any" }));
  const status = h("select", { name: "status" }, ["", "ok", "error", "unset"].map((v) =>
    h("option", { value: v, selected: p.get("status") === v }, v || "any")));
  const form = h("form", { class: "filters", id: "trace-filters" },
    FILTERS.map(field), h("label", {}, "Status", status),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", class: "ghost", onclick: () => ctx.navigate("traces") }, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate("traces", Object.fromEntries([...new FormData(form)].filter(([, v]) => v)));
  });
  return form;
}

function searchBox(ctx) {
  const input = h("input", { name: "trace_id", placeholder: "Go to trace id (32 hex characters)", spellcheck: "false", class: "search" });
  const error = h("span", { class: "error small", hidden: true });
  const form = h("form", { class: "trace-search", id: "trace-search" }, input, h("button", { type: "submit" }, "Open"), error);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = input.value.trim().toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) {
      error.textContent = "A trace id is 32 hexadecimal characters.";
      error.hidden = false;
      return;
    }
    ctx.navigate(`trace/${id}`);
  });
  return form;
}

export async function render(ctx) {
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  const cursors = [null]; // cursor of each page visited; the last is the current page's
  ctx.el.replaceChildren(
    h("div", { class: "toolbar" }, searchBox(ctx)),
    filterForm(ctx),
    h("section", { class: "panel flush" },
      h("table", { class: "table clickable", id: "traces-table" },
        h("thead", {}, h("tr", {}, ["Started", "Root span", "Service", "Duration", "Spans", "Tokens in / out", "Cost", "Status"]
          .map((c, i) => h("th", { class: i >= 3 && i <= 6 ? "num" : "" }, c)))),
        tbody),
      pager));

  const filters = Object.fromEntries(["service", "model", "provider", "operation", "user_id", "session_id", "status"]
    .map((k) => [k, ctx.params.get(k)]).filter(([, v]) => v));
  const range = window_(ctx.range);

  const failed = (err) => { if (err.name !== "AbortError") tbody.replaceChildren(emptyRow(8, `Could not load traces: ${err.message}`)); };

  async function load() {
    tbody.replaceChildren(emptyRow(8, "Loading…"));
    const cursor = cursors[cursors.length - 1];
    const page = await api("/traces", { ...range, ...filters, limit: pageSize(ctx.params), cursor }, { signal: ctx.signal });
    tbody.replaceChildren(...(page.data.length ? page.data.map((t) => h("tr", {
      "data-trace-id": t.trace_id, tabindex: 0,
      onclick: () => ctx.navigate(`trace/${t.trace_id}`),
      onkeydown: (e) => { if (e.key === "Enter") ctx.navigate(`trace/${t.trace_id}`); },
    },
    h("td", { class: "nowrap" }, when(t.start_time)),
    h("td", {}, h("div", { class: "strong" }, t.root_span_name), h("div", { class: "mono muted small" }, t.trace_id)),
    h("td", {}, t.service),
    h("td", { class: "num" }, ms(t.duration_ms)),
    h("td", { class: "num" }, count(t.span_count)),
    h("td", { class: "num" }, `${count(t.input_tokens)} / ${count(t.output_tokens)}`),
    h("td", { class: "num" }, usd(t.cost_usd)),
    h("td", {}, statusPill(t.status)))) : [emptyRow(8, "No traces match in this range.")]));
    pager.replaceChildren(
      h("span", { class: "muted small" }, `Page ${cursors.length}`),
      h("button", { class: "ghost", id: "prev-page", disabled: cursors.length === 1, onclick: () => { cursors.pop(); load().catch(failed); } }, "← Newer"),
      h("button", { class: "ghost", id: "next-page", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load().catch(failed); } }, "Older →"));
  }
  await load();
}
