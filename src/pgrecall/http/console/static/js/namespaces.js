// The namespaces this key may use: counts, pending, failed, last write, and two charts.

import { call, query } from "./api.js";
import { namespaceChart, writesChart } from "./charts.js";
import { h, replace, when } from "./dom.js";

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

async function writesFigure() {
  const answer = await call("GET", `writes?${query({ bucket, buckets: BUCKETS[bucket] })}`);
  return writesChart(answer);
}

function bucketSwitch(holder) {
  const choose = async (value) => {
    bucket = value;
    replace(holder, await writesFigure());
  };
  return h(
    "div",
    { class: "switch", role: "group", "aria-label": "Writes per" },
    Object.keys(BUCKETS).map((value) =>
      h("button", { type: "button", onclick: () => choose(value) }, `per ${value}`),
    ),
  );
}

export async function namespacesView() {
  const [{ namespaces }, writes] = await Promise.all([call("GET", "namespaces"), writesFigure()]);
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
