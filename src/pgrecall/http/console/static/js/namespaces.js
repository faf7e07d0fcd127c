// The namespaces this key may use: counts, pending, failed, last write, and two charts.

import { call, query } from "./api.js";
import { namespaceChart, writesChart } from "./charts.js";
import { h, replace, when } from "./dom.js";
import { say } from "./status.js";

let bucket = "day";
const BUCKETS = { day: 30, hour: 48 };

function row(n) {
  return h(
    "tr",
    {},
    h("th", { scope: "row" }, h("a", { href: `#/recall?${query({ namespace: n.namespace })}` }, n.namespace)),
    h("td", {}, String(n.memories)),
    h("td", {}, String(n.embedded)),
    h("td", {}, String(n.pending)),
    h("td", {}, n.failed ? h("a", { href: "#/failed" }, String(n.failed)) : "0"),
    h("td", {}, when(n.last_write)),
  );
}

async function writesFigure(per) {
  const answer = await call("GET", `writes?${query({ bucket: per, buckets: BUCKETS[per] })}`);
  return writesChart(answer);
}

function bucketSwitch(holder) {
  const buttons = Object.keys(BUCKETS).map((value) =>
    h("button", { type: "button", "aria-pressed": String(value === bucket), value }, `per ${value}`),
  );
  const choose = async (button) => {
    try {
      const figure = await writesFigure(button.value);
      bucket = button.value;
      replace(holder, figure);
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
    } catch (error) {
      say(error.message, "error");
    }
  };
  for (const button of buttons) button.addEventListener("click", () => choose(button));
  return h("div", { class: "switch", role: "group", "aria-label": "Writes per" }, buttons);
}

export async function namespacesView() {
  const [{ namespaces }, writes] = await Promise.all([call("GET", "namespaces"), writesFigure(bucket)]);
  const holder = h("div", {}, writes);
  const table = namespaces.length
    ? h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "namespaces" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["namespace", "memories", "embedded", "pending", "failed", "last write"].map((c) =>
                h("th", { scope: "col" }, c),
              ),
            ),
          ),
          h("tbody", {}, namespaces.map(row)),
        ),
      )
    : h("p", { class: "hint" }, "No memories in the namespaces this key may use.");
  return h(
    "section",
    {},
    h("h1", {}, "Namespaces"),
    table,
    h("div", { class: "charts" }, namespaces.length ? namespaceChart(namespaces) : null, h("div", {}, bucketSwitch(holder), holder)),
  );
}
