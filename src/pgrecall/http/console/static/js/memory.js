// One memory: content, metadata, key, expiry, embedding status, its versions and its audit
// entries; retry when failed, forget after a confirmation.

import { call, memoryPath, query } from "./api.js";
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
    if (after) await show(after);
  };
  return h(
    "div",
    { class: "actions" },
    memory.status === "failed" ? h("button", { type: "button", id: "retry", onclick: again }, "Retry embedding") : null,
    h("button", { type: "button", class: "danger", id: "forget", onclick: () => forget(memory, section) }, "Forget…"),
  );
}

function versions(history) {
  return h(
    "ol",
    { id: "memory-versions", class: "versions" },
    history.versions.map((version) =>
      h(
        "li",
        {},
        h("div", { class: "span" }, `version ${version.version}: ${when(version.current_from)} → `,
          version.current_until ? when(version.current_until) : "now"),
        h("pre", { class: "content" }, version.content),
        version.invalid_reason ? h("div", { class: "reason" }, `invalid: ${version.invalid_reason}`) : null,
      ),
    ),
  );
}

function audit(entries) {
  return h(
    "table",
    { id: "memory-audit" },
    h("thead", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "action"), h("th", {}, "by"), h("th", {}, "version"))),
    h(
      "tbody",
      {},
      entries.map((entry) =>
        h("tr", {}, h("td", {}, when(entry.at)), h("td", {}, entry.action), h("td", {}, entry.actor), h("td", {}, entry.version ?? "—")),
      ),
    ),
  );
}

/** Its versions and audit entries, or a line saying why they could not be read. */
async function past(memory) {
  try {
    const [history, log] = await Promise.all([
      call("GET", `${memoryPath(memory.id)}/history`),
      call("GET", `audit?${query({ namespace: memory.namespace, memory_id: memory.id })}`),
    ]);
    return [h("h2", {}, "Versions"), versions(history), h("h2", {}, "Audit"), audit(log.entries)];
  } catch (error) {
    return [h("p", { class: "reason" }, `History unavailable: ${error.message}`)];
  }
}

export async function memoryView(id) {
  const section = h("section", { id: "memory" });
  const show = async (memory) =>
    replace(
      section,
      h("h1", {}, "Memory"),
      details(memory),
      h("h2", {}, "Content"),
      h("pre", { class: "content", id: "memory-content" }, memory.content),
      h("h2", {}, "Metadata"),
      h("pre", { id: "memory-metadata" }, JSON.stringify(memory.metadata, null, 2)),
      actions(memory, show, section),
      await past(memory),
    );
  return show(await call("GET", memoryPath(id)));
}
