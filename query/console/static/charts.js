// Time-series charts on uPlot (vendored; window.uPlot). Times on the x axis in the browser's zone.
export const PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899", "#64748b", "#84cc16"];

const live = new Set();
const observer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = entry.target.__chart;
    if (chart) chart.setSize({ width: Math.max(200, entry.contentRect.width), height: chart.height });
  }
});

// Charts of a page that was left are destroyed before the next page draws.
export function destroyCharts() {
  for (const chart of live) {
    observer.unobserve(chart.root.parentElement);
    chart.destroy();
  }
  live.clear();
}

// timestamps: ISO strings; series: [{label, values, color?}]; format: value -> text.
export function lineChart(el, { timestamps, series, format = String, height = 220, fill = false }) {
  const xs = timestamps.map((t) => Date.parse(t) / 1000);
  const opts = {
    width: Math.max(200, el.clientWidth || 600),
    height,
    legend: { live: true },
    cursor: { points: { size: 6 } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" } },
      { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" }, size: 64,
        values: (u, values) => values.map((v) => format(v)) },
    ],
    series: [
      {},
      ...series.map((s, i) => {
        const color = s.color || PALETTE[i % PALETTE.length];
        // A few busy buckets in a long range draw almost nothing as lines: mark them with points.
        const busy = s.values.flatMap((v, i) => (v !== null && v !== 0 ? [i] : []));
        const points = busy.length < 40 ? { show: true, size: 6, fill: color, filter: () => busy } : { show: false };
        return { label: s.label, stroke: color, width: 2, fill: fill ? `${color}22` : undefined, points,
                 value: (u, v) => (v === null || v === undefined ? "—" : format(v)) };
      }),
    ],
  };
  const chart = new window.uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  el.__chart = chart;
  observer.observe(el);
  live.add(chart);
  return chart;
}
