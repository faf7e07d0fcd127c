// Start-up and routing: the key form until a key works, then one view per location hash.

import { ApiError, call, forgetKey, saveKey, savedKey } from "./api.js";
import { h, replace } from "./dom.js";
import { failedView } from "./failed.js";
import { memoryView } from "./memory.js";
import { namespacesView } from "./namespaces.js";
import { recallView } from "./recall.js";
import { say } from "./status.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");

const ROUTES = [
  [/^#\/recall(?:\?(.*))?$/, (search) => recallView(search)],
  [/^#\/failed$/, () => failedView()],
  [/^#\/memory\/([0-9a-fA-F-]{36})$/, (id) => memoryView(id)],
  [/^(#\/?)?$/, () => namespacesView()],
];

function keyForm(problem) {
  nav.hidden = true;
  const input = h("input", {
    id: "key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "key-help",
  });
  const form = h(
    "form",
    { class: "card", onsubmit: (event) => connect(event, input.value.trim()) },
    h("h1", {}, "Connect"),
    h("label", { for: "key" }, "API key"),
    input,
    h(
      "p",
      { id: "key-help", class: "hint" },
      "Kept in this tab only (session storage). Leave it empty when the server has no keys.",
    ),
    h("button", { type: "submit" }, "Connect"),
  );
  replace(view, form);
  if (problem) say(problem, "error");
  input.focus();
}

async function connect(event, key) {
  event.preventDefault();
  saveKey(key);
  try {
    await call("GET", "namespaces");
  } catch (error) {
    forgetKey();
    keyForm(error instanceof ApiError ? error.message : String(error));
    return;
  }
  say("Connected.");
  route();
}

async function route() {
  if (savedKey() === null) {
    keyForm();
    return;
  }
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a")) {
    const current = link.getAttribute("href") === (location.hash || "#/");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const found = ROUTES.map(([pattern, show]) => [location.hash.match(pattern), show]).find(
    ([match]) => match,
  );
  const [match, show] = found || [[], () => h("p", {}, "No such view.")];
  replace(view, h("p", { class: "hint" }, "Loading…"));
  try {
    replace(view, await show(...match.slice(1)));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetKey();
      keyForm(error.message);
      return;
    }
    replace(view, h("p", { class: "error" }, error.message || String(error)));
  }
  view.focus();
}

document.getElementById("disconnect").addEventListener("click", () => {
  forgetKey();
  say("Key forgotten.");
  keyForm();
});
window.addEventListener("hashchange", () => {
  say("");
  route();
});
route();
