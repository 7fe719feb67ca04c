// Live tail: spans as they are stored, filtered in the server, with pause/resume, and anomaly
// episodes and alerts as they open and close (never filtered). The key goes in the socket's first message
// (browsers cannot set headers on a WebSocket; a URL would be logged).
import { session } from "../api.js";
import { clock, count, h, ms, statusPill, usd } from "../format.js";

const MAX_ROWS = 300;
const MAX_PAUSED = 2000;
const TEXT = [["service", "Service"], ["model", "Model"], ["provider", "Provider"], ["operation", "Operation"],
  ["user_id", "User"], ["session_id", "Session"]];

function readFilters(form) {
  const out = {};
  for (const [name, value] of new FormData(form)) {
    if (value === "") continue;
    out[name] = name.startsWith("min_") ? Number(value) : value;
  }
  return out;
}

export async function render(ctx) {
  const state = { socket: null, paused: false, held: [], pending: [], closed: false, retry: 500, frame: 0, received: 0 };
  const status = h("span", { class: "conn conn-connecting", id: "live-status" }, "connecting…");
  const heldNote = h("span", { class: "muted small", id: "live-held" });
  const notice = h("div", { class: "notice", hidden: true, id: "live-notice" });
  const notices = h("ul", { class: "notice live-events", hidden: true, id: "live-events" });
  const tbody = h("tbody", { id: "live-rows" });
  const pause = h("button", { type: "button", id: "live-pause", onclick: () => togglePause() }, "Pause");
  const form = h("form", { class: "filters", id: "live-filters" },
    TEXT.map(([name, label]) => h("label", {}, label, h("input", { name, placeholder: "any" }))),
    h("label", {}, "Status", h("select", { name: "status" }, ["", "ok", "error", "unset"].map((v) => h("option", { value: v }, v || "any")))),
    h("label", {}, "Min latency (ms)", h("input", { name: "min_latency_ms", type: "number", min: 0, step: "any", placeholder: "0" })),
    h("label", {}, "Min cost ($)", h("input", { name: "min_cost_usd", type: "number", min: 0, step: "any", placeholder: "0" })),
    h("div", { class: "filter-actions" }, h("button", { type: "submit", class: "primary" }, "Apply"), pause));
  const empty = h("tr", { class: "placeholder" }, h("td", { colspan: 10, class: "empty" }, "Waiting for spans… send one to the ingest endpoint and it appears here once stored."));
  tbody.append(empty);
  ctx.el.replaceChildren(
    h("div", { class: "toolbar" }, status, heldNote),
    form, notice, notices,
    h("section", { class: "panel flush" },
      h("table", { class: "table clickable live", id: "live-table" },
        h("thead", {}, h("tr", {}, ["Time", "Service", "Model", "Operation", "Status", "Latency", "Tokens in / out", "Cost", "User", "Input → output"]
          .map((c, i) => h("th", { class: i >= 5 && i <= 7 ? "num" : "" }, c)))),
        tbody)));

  const setStatus = (cls, text) => { status.className = `conn conn-${cls}`; status.textContent = text; };
  const showNotice = (text) => { notice.textContent = text; notice.hidden = !text; };

  function row(m) {
    return h("tr", { "data-trace-id": m.trace_id, "data-span-id": m.span_id, onclick: () => ctx.navigate(`trace/${m.trace_id}`) },
      h("td", { class: "nowrap mono small" }, clock(m.time)),
      h("td", {}, m.service), h("td", {}, m.model || h("span", { class: "muted" }, m.name)), h("td", {}, m.operation),
      h("td", {}, statusPill(m.status)), h("td", { class: "num" }, ms(m.latency_ms)),
      h("td", { class: "num" }, `${count(m.input_tokens)} / ${count(m.output_tokens)}`), h("td", { class: "num" }, usd(m.cost_usd)),
      h("td", {}, m.user_id),
      h("td", { class: "preview" }, m.input ? h("span", {}, m.input) : null, m.output ? h("span", { class: "muted" }, ` → ${m.output}`) : null));
  }

  function flush() {
    state.frame = 0;
    if (!state.pending.length) return;
    empty.remove();
    const rows = state.pending.splice(0).reverse().map(row);
    tbody.prepend(...rows);
    while (tbody.rows.length > MAX_ROWS) tbody.lastChild.remove();
  }

  function show(message) {
    state.pending.push(message);
    if (state.pending.length > MAX_ROWS) state.pending.splice(0, state.pending.length - MAX_ROWS);
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  function showAnomaly(m) {
    if (m.change === "updated") return; // the opening and the closing are what a reader acts on
    const series = m.overall ? "all traffic" : [m.service, m.provider, m.model].join(" · ");
    const peak = m.metric === "latency_p95_ms" ? `${ms(m.peak_observed)} vs ${ms(m.peak_expected)} expected`
      : `${m.peak_observed.toPrecision(3)} vs ${m.peak_expected.toPrecision(3)} expected`;
    addNotice(h("li", { "data-episode-id": m.episode_id },
      h("span", { class: `pill pill-${m.status}` }, `anomaly ${m.change}`), " ",
      clock(m.change === "closed" ? m.ended_at : m.started_at), ` ${m.metric} ${m.direction} for ${series}: ${peak} `,
      h("a", { href: "#/anomalies" }, "Anomalies →")));
  }

  function showAlert(m) {
    addNotice(h("li", { "data-alert-id": m.alert_id },
      h("span", { class: `pill pill-${m.status === "firing" ? "open" : "closed"}` }, `alert ${m.status}`), " ",
      clock(m.status === "firing" ? m.fired_at : m.resolved_at), ` ${m.summary} `,
      h("a", { href: "#/alerts" }, "Alerts →")));
  }

  function addNotice(li) {  // the five newest anomaly and alert changes, newest first
    notices.prepend(li);
    while (notices.children.length > 5) notices.lastChild.remove();
    notices.hidden = false;
  }

  function togglePause() {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    pause.classList.toggle("primary", state.paused);
    if (!state.paused) {
      state.held.splice(0).forEach(show);
      heldNote.textContent = "";
    }
  }

  function onMessage(event) {
    const m = JSON.parse(event.data);
    if (m.type === "span") {
      state.received += 1;
      if (state.paused) {
        state.held.push(m);
        if (state.held.length > MAX_PAUSED) state.held.shift();
        heldNote.textContent = `${count(state.held.length)} new while paused`;
      } else show(m);
    } else if (m.type === "anomaly") {
      showAnomaly(m);
    } else if (m.type === "alert") {
      showAlert(m);
    } else if (m.type === "ready") {
      state.retry = 500;
      setStatus("open", "live");
    } else if (m.type === "dropped") {
      showNotice(m.count === null ? "The live feed was interrupted; some spans may be missing here (they are all in Traces)."
        : `${count(m.count)} spans were skipped because this page could not keep up. They are all in Traces.`);
    } else if (m.type === "error") {
      showNotice(m.error.message);
    } else if (m.type === "filters") {
      showNotice("");
    }
  }

  function connect() {
    if (state.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/stream`);
    state.socket = socket;
    setStatus("connecting", "connecting…");
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", api_key: session.key(), filters: readFilters(form) })));
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      if (state.closed || state.socket !== socket) return;
      if (event.code === 4401 || event.code === 4403) {
        setStatus("closed", "disconnected");
        showNotice(`The server refused this key: ${event.reason}`);
        return;
      }
      if (event.code === 4400) { setStatus("closed", "disconnected"); showNotice(event.reason); return; }
      setStatus("connecting", `reconnecting in ${(state.retry / 1000).toFixed(1)} s…`);
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 10000);
    });
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify({ type: "filters", filters: readFilters(form) }));
    } else connect();
  });
  connect();
  return () => {
    state.closed = true;
    if (state.frame) cancelAnimationFrame(state.frame);
    if (state.socket) state.socket.close(1000, "page left");
  };
}
