// The console's pages, in menu order. A page is a module exporting `render(ctx)`; adding one is
// one entry here. `path` is the hash route;
// `hidden` pages have no menu entry; `range` says whether the top bar's time range applies.
export const PAGES = [
  { path: "overview", title: "Overview", icon: "◎", module: "./pages/overview.js", range: true },
  { path: "traces", title: "Traces", icon: "≡", module: "./pages/traces.js", range: true },
  { path: "trace", title: "Trace", module: "./pages/trace.js", hidden: true },
  { path: "anomalies", title: "Anomalies", icon: "⚠", module: "./pages/anomalies.js", range: true },
  { path: "alerts", title: "Alerts", icon: "!", module: "./pages/alerts.js", range: true },
  { path: "live", title: "Live tail", icon: "◉", module: "./pages/live.js" },
  { path: "cost", title: "Cost", icon: "$", module: "./pages/cost.js", range: true },
  { path: "prices", title: "Prices", icon: "¤", module: "./pages/prices.js" },
];
export const HOME = "overview";
