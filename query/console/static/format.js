// Numbers, money, durations and times as people read them; times in the browser's time zone.
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat();

export const when = (iso) => (iso ? dateTime.format(new Date(iso)) : "—");
export const clock = (iso) => (iso ? timeOnly.format(new Date(iso)) : "—");
export const count = (n) => (n === null || n === undefined ? "—" : Math.abs(n) >= 10000 ? compact.format(n) : whole.format(n));
export const exact = (n) => (n === null || n === undefined ? "—" : whole.format(n));
export const percent = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(x < 0.1 ? 2 : 1)}%`);

export function usd(x) {
  if (x === null || x === undefined) return "—";
  if (x === 0) return "$0";
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 1 ? 2 : Math.abs(x) >= 0.01 ? 4 : 6;
  return `$${x.toLocaleString(undefined, { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: digits })}`;
}

export function ms(x) {
  if (x === null || x === undefined) return "—";
  if (x === 0) return "0 ms";
  if (x < 1) return `${(x * 1000).toFixed(0)} µs`;
  if (x < 1000) return `${x.toFixed(x < 10 ? 1 : 0)} ms`;
  if (x < 60000) return `${(x / 1000).toFixed(2)} s`;
  return `${(x / 60000).toFixed(1)} min`;
}

// Build DOM without innerHTML: everything shown comes from users' spans, so it is text, always.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function statusPill(status) {
  return h("span", { class: `pill pill-${status}` }, status);
}

export function emptyRow(columns, text) {
  return h("tr", {}, h("td", { colspan: columns, class: "empty" }, text));
}
