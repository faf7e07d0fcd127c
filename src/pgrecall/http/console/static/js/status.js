// The one status line (announced by screen readers): what just happened, or what went wrong.

const line = document.getElementById("status");

export function say(text, kind) {
  line.textContent = text;
  line.className = kind || "";
}
