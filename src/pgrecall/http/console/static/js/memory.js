// One memory: content, metadata, key, expiry, embedding status; retry when failed, forget
// after a confirmation.

import { call, memoryPath } from "./api.js";
import { h, replace, when } from "./dom.js";
import { say } from "./status.js";

function item(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

/** Ask in the page's dialog; resolves true when the user confirms. */
export function confirmed(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

/** Queue a failed memory again; the memory as it is after, or null when that failed. */
export async function retry(id) {
  try {
    const memory = await call("POST", `${memoryPath(id)}:retry`);
    say(`Memory queued for embedding again (${memory.status}).`);
    return memory;
  } catch (error) {
    say(error.message, "error");
    return null;
  }
}

function details(memory) {
  const status = memory.embed_error
    ? [h("span", { class: `status ${memory.status}` }, memory.status), " ", h("span", { class: "reason" }, memory.embed_error)]
    : [h("span", { class: `status ${memory.status}` }, memory.status)];
  return h(
    "dl",
    { class: "details" },
    item("id", h("code", {}, memory.id)),
    item("namespace", memory.namespace),
    item("key", memory.key ?? "—"),
    item("embedding", ...status),
    item("created", when(memory.created_at)),
    item("changed", when(memory.updated_at)),
    item("expires", memory.expires_at ? when(memory.expires_at) : "never"),
  );
}

async function forget(memory, section) {
  const preview = memory.content.length > 120 ? `${memory.content.slice(0, 120)}…` : memory.content;
  if (!(await confirmed(`“${preview}” in ${memory.namespace} will be deleted.`))) return;
  try {
    await call("DELETE", memoryPath(memory.id));
  } catch (error) {
    say(error.message, "error");
    return;
  }
  say("Memory forgotten.");
  replace(section, h("h1", {}, "Forgotten"), h("p", {}, h("a", { href: "#/" }, "Back to the namespaces")));
}

function actions(memory, show, section) {
  const again = async () => {
    const after = await retry(memory.id);
    if (after) show(after);
  };
  return h(
    "div",
    { class: "actions" },
    memory.status === "failed" ? h("button", { type: "button", id: "retry", onclick: again }, "Retry embedding") : null,
    h("button", { type: "button", class: "danger", id: "forget", onclick: () => forget(memory, section) }, "Forget…"),
  );
}

export async function memoryView(id) {
  const section = h("section", { id: "memory" });
  const show = (memory) =>
    replace(
      section,
      h("h1", {}, "Memory"),
      details(memory),
      h("h2", {}, "Content"),
      h("pre", { class: "content", id: "memory-content" }, memory.content),
      h("h2", {}, "Metadata"),
      h("pre", { id: "memory-metadata" }, JSON.stringify(memory.metadata, null, 2)),
      actions(memory, show, section),
    );
  return show(await call("GET", memoryPath(id)));
}
