// Two small charts, drawn as SVG from numbers only (every label a text node).

import { bar, h, svg } from "./dom.js";

const MOST_NAMESPACES = 20;

/** Memories per namespace, largest first, as horizontal bars. */
export function namespaceChart(namespaces) {
  const largest = [...namespaces].sort((a, b) => b.memories - a.memories).slice(0, MOST_NAMESPACES);
  const top = Math.max(1, ...largest.map((n) => n.memories));
  return h(
    "figure",
    { class: "chart", id: "chart-namespaces" },
    h("figcaption", {}, "Memories per namespace"),
    largest.map((n) => bar(n.namespace, n.memories / top, String(n.memories))),
    namespaces.length > MOST_NAMESPACES
      ? h("p", { class: "hint" }, `the ${MOST_NAMESPACES} largest of ${namespaces.length}`)
      : null,
  );
}

/** Writes per bucket as columns: created below, changed on top; a title on each column. */
export function writesChart(answer) {
  const width = 600;
  const height = 120;
  const slot = width / Math.max(1, answer.writes.length);
  const top = Math.max(1, ...answer.writes.map((w) => w.created + w.updated));
  const scale = (count) => (count / top) * (height - 4);
  const columns = answer.writes.map((w, index) => {
    const x = index * slot + slot * 0.1;
    const created = scale(w.created);
    const updated = scale(w.updated);
    const label = answer.bucket === "day" ? w.start.slice(0, 10) : w.start.slice(0, 13) + ":00";
    return svg(
      "g",
      {},
      svg("title", {}, `${label}: ${w.created} created, ${w.updated} changed`),
      svg("rect", { x, y: 0, width: slot * 0.8, height, class: "slot" }),
      svg("rect", { x, y: height - created, width: slot * 0.8, height: created, class: "created" }),
      svg("rect", {
        x,
        y: height - created - updated,
        width: slot * 0.8,
        height: updated,
        class: "updated",
      }),
    );
  });
  const total = answer.writes.reduce((sum, w) => sum + w.created + w.updated, 0);
  const first = answer.writes[0];
  const last = answer.writes[answer.writes.length - 1];
  return h(
    "figure",
    { class: "chart", id: "chart-writes" },
    h("figcaption", {}, `Writes per ${answer.bucket}: ${total} in the last ${answer.writes.length}`),
    svg(
      "svg",
      {
        viewBox: `0 0 ${width} ${height}`,
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": `writes per ${answer.bucket}, ${total} in all`,
      },
      columns,
    ),
    h(
      "p",
      { class: "axis" },
      h("span", {}, first ? first.start.slice(0, 10) : ""),
      h("span", { class: "legend" }, h("i", { class: "created" }), "created ", h("i", { class: "updated" }), "changed"),
      h("span", {}, last ? last.start.slice(0, 10) : ""),
    ),
  );
}
