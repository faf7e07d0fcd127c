// Memories whose embedding failed, with the reason and a retry button, namespace by namespace.

import { call, query } from "./api.js";
import { h, replace, when } from "./dom.js";
import { retry } from "./memory.js";

const PAGE = 100;

function failedRow(memory) {
  const state = h("span", { class: "status failed" }, "failed");
  const button = h("button", { type: "button", class: "retry" }, "Retry");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const after = await retry(memory.id);
    if (after) replace(state, after.status).className = `status ${after.status}`;
    else button.disabled = false;
  });
  return h(
    "li",
    { class: "card failed-memory" },
    h("p", { class: "meta" }, h("span", { class: "ns" }, memory.namespace), h("span", {}, when(memory.created_at)), state),
    h("p", { class: "content" }, memory.content.length > 300 ? `${memory.content.slice(0, 300)}…` : memory.content),
    h("p", { class: "reason" }, memory.embed_error || "no reason recorded"),
    h("div", { class: "actions" }, button, h("a", { href: `#/memory/${memory.id}` }, "Open memory")),
  );
}

export async function failedView() {
  const { namespaces } = await call("GET", "namespaces");
  const withFailures = namespaces.filter((n) => n.failed > 0);
  const pages = await Promise.all(
    withFailures.map((n) =>
      call("GET", `memories?${query({ namespace: n.namespace, status: "failed", limit: PAGE })}`),
    ),
  );
  const memories = pages.flatMap((page) => page.memories);
  const more = pages.some((page) => page.next_cursor);
  return h(
    "section",
    {},
    h("h1", {}, "Failed"),
    memories.length
      ? h("ol", { class: "failed", id: "failed" }, memories.map(failedRow))
      : h("p", { class: "hint" }, "No failed memories."),
    more ? h("p", { class: "hint" }, `Showing the newest ${PAGE} of each namespace.`) : null,
  );
}
