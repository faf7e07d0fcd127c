// Elements built from data. Every string becomes a text node: stored text is never parsed as
// HTML (the page's Trusted Types policy makes innerHTML throw, should anyone try).

const SVG = "http://www.w3.org/2000/svg";

function build(element, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** An HTML element: ``h("p", {class: "x"}, "text", child)``. */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, the same way. */
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG, tag), props, children);
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** ``element`` emptied, then holding ``children``. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A date as ``2026-12-01 10:22 UTC`` (the same on every machine), or a dash. */
export function when(value) {
  if (!value) return "—";
  return `${new Date(value).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** A bar of ``fraction`` (0..1) of its track, labelled for screen readers too. */
export function bar(label, fraction, text, kind) {
  const fill = h("span", { class: `fill ${kind || ""}` });
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 1000) / 10}%`;
  return h(
    "div",
    { class: "bar-row" },
    h("span", { class: "bar-label" }, label),
    h("span", { class: "track", role: "presentation" }, fill),
    h("span", { class: "bar-value" }, text),
  );
}
