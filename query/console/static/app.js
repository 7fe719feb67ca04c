// The console shell: sign-in, the menu, the time range, and a hash router that loads one page
// module at a time (see nav.js). No build step: plain ES modules served from the package.
import { api, ApiError, session, whenUnauthorized } from "./api.js";
import { destroyCharts } from "./charts.js";
import { h, timeZone } from "./format.js";
import { HOME, PAGES } from "./nav.js";

const $ = (id) => document.getElementById(id);
const RANGE_KEY = "llmscope.range";
let current = { cleanup: null, controller: null };

function parseHash() {
  const [pathPart, queryPart = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [path = HOME, ...args] = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return { path: path || HOME, args, params: new URLSearchParams(queryPart) };
}

export function navigate(path, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  const text = q.toString();
  location.hash = `#/${path}${text ? `?${text}` : ""}`;
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

function buildNav() {
  const list = $("nav");
  list.replaceChildren(
    ...PAGES.filter((p) => !p.hidden).map((p) =>
      h("li", {}, h("a", { href: `#/${p.path}`, "data-page": p.path }, h("span", { class: "icon" }, p.icon || "•"), p.title)),
    ),
  );
}

async function route() {
  const { path, args, params } = parseHash();
  const page = PAGES.find((p) => p.path === path) || PAGES.find((p) => p.path === HOME);
  if (current.cleanup) { try { current.cleanup(); } catch { /* page already gone */ } }
  if (current.controller) current.controller.abort();
  destroyCharts();
  showBanner("");
  const controller = new AbortController();
  current = { cleanup: null, controller };
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === (page.path === "trace" ? "traces" : page.path));
  }
  $("range-control").hidden = !page.range;
  $("page-title").textContent = page.title;
  document.title = `${page.title} · LLMScope`;
  const el = $("page");
  el.replaceChildren(h("div", { class: "loading" }, "Loading…"));
  el.dataset.page = page.path;
  const module = await import(page.module);
  if (controller.signal.aborted) return;
  const ctx = {
    el, args, params, signal: controller.signal, range: $("range").value, navigate,
    setTitle: (text) => { $("page-title").textContent = text; document.title = `${text} · LLMScope`; },
    banner: showBanner,
  };
  try {
    const cleanup = (await module.render(ctx)) || null;
    // A page left while it was still rendering must not leave its cleanup on the page that replaced it.
    if (controller.signal.aborted) { if (cleanup) cleanup(); return; }
    current.cleanup = cleanup;
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) return; // signed out already
    el.replaceChildren(h("div", { class: "error-box" }, h("strong", {}, "Could not load this page. "), err.message || String(err)));
  }
}

function signedOut(message) {
  session.clear();
  if (current.cleanup) { try { current.cleanup(); } catch { /* ignore */ } }
  if (current.controller) current.controller.abort();
  current = { cleanup: null, controller: null };
  destroyCharts();
  $("app").hidden = true;
  $("signin").hidden = false;
  const error = $("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("signin-key").value = "";
  $("signin-key").focus();
}

async function signedIn(identity) {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("identity").replaceChildren(
    h("div", { class: "tenant" }, identity.tenant_id),
    h("div", { class: "muted small" }, `${identity.key_prefix}… · ${identity.scopes.join(", ")}`),
  );
  await route();
}

function explain(err) {
  if (err.status === 401) return "This API key is not valid or has been revoked. Check it and try again.";
  if (err.status === 403) return "This API key cannot read data: it needs the 'read' scope.";
  if (err.status === 429) return "Too many attempts; wait a moment and try again.";
  return err.message || "Sign-in failed.";
}

async function signIn(event) {
  event.preventDefault();
  const key = $("signin-key").value.trim();
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    const { data } = await api("/whoami", {}, { key });
    session.set(key);
    await signedIn(data);
  } catch (err) {
    signedOut(explain(err));
  } finally {
    button.disabled = false;
  }
}

async function start() {
  buildNav();
  $("timezone").textContent = `Times in ${timeZone}`;
  $("range").value = sessionStorage.getItem(RANGE_KEY) || "24h";
  $("range").addEventListener("change", () => { sessionStorage.setItem(RANGE_KEY, $("range").value); route(); });
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signedOut(""));
  whenUnauthorized(() => signedOut("Your API key is no longer accepted (revoked or invalid). Sign in again."));
  window.addEventListener("hashchange", () => { if (session.key()) route(); });
  const key = session.key();
  if (!key) return signedOut("");
  try {
    const { data } = await api("/whoami", {}, { key });
    await signedIn(data);
  } catch (err) {
    signedOut(explain(err));
  }
}

start();
