// A recall box (query, namespaces, mode, k, filter) and its hits, each score drawn as a bar.

import { ApiError, call } from "./api.js";
import { bar, h, replace, when } from "./dom.js";
import { say } from "./status.js";

// What was last asked and answered, so coming back from a memory shows the same hits.
let last = null;

function field(label, id, control, hint) {
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "hint" }, hint) : null);
}

function scoreBars(hit, answer, best) {
  const bars = [];
  if (answer.mode === "hybrid") {
    bars.push(bar("fused", hit.score / best.fused, hit.score.toFixed(4), "fused"));
  }
  if (hit.vector_score !== null) {
    bars.push(bar("vector", hit.vector_score, hit.vector_score.toFixed(3), "vector"));
  }
  if (hit.keyword_score !== null) {
    bars.push(bar("keyword", hit.keyword_score / best.keyword, hit.keyword_score.toFixed(3), "keyword"));
  }
  return h("div", { class: "bars" }, bars);
}

function hitCard(hit, answer, best, rank) {
  return h(
    "li",
    { class: "card hit" },
    h(
      "p",
      { class: "meta" },
      h("span", {}, `#${rank}`),
      h("span", { class: "ns" }, hit.namespace),
      hit.key ? h("span", {}, `key ${hit.key}`) : null,
      h("span", {}, when(hit.created_at)),
    ),
    h("p", { class: "content" }, hit.content),
    scoreBars(hit, answer, best),
    h("a", { href: `#/memory/${hit.id}`, class: "open" }, "Open memory"),
  );
}

function results(answer) {
  const positive = (values) => Math.max(Number.MIN_VALUE, ...values.filter((v) => v !== null));
  const best = {
    fused: positive(answer.hits.map((hit) => hit.score)),
    keyword: positive(answer.hits.map((hit) => hit.keyword_score)),
  };
  const notes = [`${answer.hits.length} hit(s), ${answer.mode}${answer.exact ? ", exact" : ""}`];
  if (answer.pending) notes.push(`${answer.pending} memories in scope still pending (not searchable by meaning yet)`);
  if (answer.degraded) notes.push("keyword matches only: the embedder is not answering");
  return h(
    "section",
    { id: "hits", "aria-label": "Hits" },
    h("p", { class: "hint" }, notes.join(" · ")),
    h("p", { class: "hint" }, "Bars: fused = the fused score relative to the best hit; vector = cosine similarity; keyword = BM25 relative to the best keyword match."),
    h("ol", { class: "hits" }, answer.hits.map((hit, i) => hitCard(hit, answer, best, i + 1))),
  );
}

function request(form) {
  const data = new FormData(form);
  const body = {
    query: data.get("query"),
    namespaces: data.getAll("namespaces"),
    mode: data.get("mode"),
    k: Number(data.get("k")),
  };
  const filter = String(data.get("filter") || "").trim();
  if (filter) {
    try {
      body.filter = JSON.parse(filter);
    } catch {
      throw new ApiError(0, "invalid_filter", "the filter is not valid JSON");
    }
  }
  if (!body.namespaces.length) throw new ApiError(0, "invalid_input", "choose at least one namespace");
  return body;
}

export async function recallView(search) {
  const { namespaces } = await call("GET", "namespaces");
  const wanted = new URLSearchParams(search || "").getAll("namespace");
  let chosen = namespaces.map((n) => n.namespace);
  if (wanted.length) chosen = wanted;
  else if (last) chosen = last.body.namespaces;
  const output = h("div", {});
  const boxes = namespaces.map((n) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "namespaces", value: n.namespace, checked: chosen.includes(n.namespace) }),
      n.namespace,
    ),
  );
  const mode = h("select", { name: "mode" }, ["hybrid", "vector", "keyword"].map((m) => h("option", { value: m }, m)));
  const form = h(
    "form",
    { class: "card", id: "recall-form" },
    field("Query", "query", h("input", { name: "query", type: "search", required: true, maxlength: 10000 })),
    h("fieldset", {}, h("legend", {}, "Namespaces"), boxes.length ? boxes : h("p", { class: "hint" }, "none yet")),
    h(
      "div",
      { class: "row" },
      field("Mode", "mode", mode),
      field("k", "k", h("input", { name: "k", type: "number", min: 1, max: 1000, value: 10, required: true })),
      field(
        "Filter (JSON, optional)",
        "filter",
        h("input", { name: "filter", type: "text", spellcheck: "false", placeholder: '{"kind": "health"}' }),
      ),
    ),
    h("button", { type: "submit" }, "Recall"),
  );
  if (last) {
    form.elements.query.value = last.body.query;
    mode.value = last.body.mode;
    form.elements.k.value = String(last.body.k);
    form.elements.filter.value = last.body.filter ? JSON.stringify(last.body.filter) : "";
    replace(output, results(last.answer));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = request(form);
      replace(output, h("p", { class: "hint" }, "Recalling…"));
      const answer = await call("POST", "recall", body);
      last = { body, answer };
      replace(output, results(answer));
      say(`${answer.hits.length} hit(s).`);
    } catch (error) {
      replace(output);
      say(error.message, "error");
    }
  });
  return h("section", {}, h("h1", {}, "Recall"), form, output);
}
