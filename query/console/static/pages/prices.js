// Prices: the bundled price table in use, this tenant's overrides, and the models seen in the
// last 30 days that have no known price (their spans' cost is unknown, never counted as 0).
import { api } from "../api.js";
import { count, emptyRow, h, when } from "../format.js";

const perM = (v) => (v === null || v === undefined ? h("span", { class: "muted" }, "default") : `$${v}`);

export async function render(ctx) {
  const opts = { signal: ctx.signal };
  const [prices, unknown] = await Promise.all([api("/prices", {}, opts), api("/prices/unknown-models", { limit: 200 }, opts)]);
  const overrides = prices.data.overrides;
  ctx.el.replaceChildren(
    h("p", { class: "muted" }, "Spans are costed from the bundled table ", h("code", {}, prices.data.price_table),
      " unless this tenant overrides the model's price. Overrides apply to spans processed after they are set; ",
      "set them with ", h("code", {}, "PUT /api/v1/prices"), " (admin key) — see ", h("a", { href: "/docs#/prices", target: "_blank" }, "API docs"), "."),
    h("section", { class: "panel flush" },
      h("h2", { class: "pad" }, `Overrides (${overrides.length})`),
      h("table", { class: "table", id: "price-overrides" },
        h("thead", {}, h("tr", {}, ["Provider", "Model", "Input", "Output", "Cached input", "Cache write", "Reasoning", "Updated"]
          .map((c, i) => h("th", { class: i >= 2 && i <= 6 ? "num" : "" }, c)))),
        h("tbody", {}, overrides.length ? overrides.map((o) => h("tr", {},
          h("td", {}, o.provider || h("span", { class: "muted" }, "any")), h("td", { class: "strong" }, o.model),
          [o.input_mtok, o.output_mtok, o.cached_input_mtok, o.cache_write_mtok, o.reasoning_mtok].map((v) => h("td", { class: "num" }, perM(v))),
          h("td", { class: "nowrap" }, when(o.updated_at)))) : [emptyRow(8, "No overrides: every price comes from the bundled table.")])),
      h("p", { class: "muted small pad" }, "Prices in USD per million tokens. Cache prices default to the input price, reasoning to the output price.")),
    h("section", { class: "panel flush" },
      h("h2", { class: "pad" }, `Models without a known price (${unknown.data.length})`),
      h("table", { class: "table", id: "unknown-models" },
        h("thead", {}, h("tr", {}, ["Provider", "Model", "Spans", "First seen", "Last seen"].map((c, i) => h("th", { class: i === 2 ? "num" : "" }, c)))),
        h("tbody", {}, unknown.data.length ? unknown.data.map((m) => h("tr", {},
          h("td", {}, m.provider || h("span", { class: "muted" }, "(none)")), h("td", { class: "strong" }, m.model),
          h("td", { class: "num" }, count(m.spans)), h("td", { class: "nowrap" }, when(m.first_seen)), h("td", { class: "nowrap" }, when(m.last_seen))))
          : [emptyRow(5, "Every model seen in the last 30 days has a price.")]))));
}
