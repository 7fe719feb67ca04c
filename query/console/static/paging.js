// Cursor paging for the list pages: the cursor of each page visited is kept (the last is the current
// page's), so "Newer" goes back without the API needing a backward cursor.
import { emptyRow, h } from "./format.js";

export function cursorPages({ tbody, pager, columns, what, fetchPage, row }) {
  const cursors = [null];
  const failed = (err) => {
    if (err.name !== "AbortError") tbody.replaceChildren(emptyRow(columns, `Could not load ${what}: ${err.message}`));
  };
  async function load() {
    tbody.replaceChildren(emptyRow(columns, "Loading…"));
    const page = await fetchPage(cursors[cursors.length - 1]);
    tbody.replaceChildren(...(page.data.length ? page.data.map(row) : [emptyRow(columns, `No ${what} in this range.`)]));
    pager.replaceChildren(
      h("span", { class: "muted small" }, `Page ${cursors.length}`),
      h("button", { class: "ghost", id: "prev-page", disabled: cursors.length === 1, onclick: () => { cursors.pop(); load().catch(failed); } }, "← Newer"),
      h("button", { class: "ghost", id: "next-page", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load().catch(failed); } }, "Older →"));
  }
  return () => load().catch(failed);
}
