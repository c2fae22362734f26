/* What the explorer's three pages share (annotate/explorer.py inlines it, after i18n.js, before
   each page's own script): building DOM and SVG elements, the hover tip, and a translated
   message whose places hold elements. */

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const SVGNS = "http://www.w3.org/2000/svg";
function sv(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid) e.append(kid);
  return e;
}

// The hover tip: one per page (each page puts it in its app), placed beside the pointer.
const tip = el("div", { id: "tip" });
function showTip(ev, text) {
  tip.textContent = text;
  tip.style.display = "block";
  const w = tip.offsetWidth, h = tip.offsetHeight;
  let x = ev.clientX + 14, y = ev.clientY + 14;
  if (x + w > window.innerWidth - 4) x = ev.clientX - w - 10;
  if (y + h > window.innerHeight - 4) y = ev.clientY - h - 10;
  tip.style.left = x + "px";
  tip.style.top = y + "px";
}
const hideTip = () => (tip.style.display = "none");

// Between two sentences: a space in English, none after Chinese full-width punctuation.
const GAP = /^zh/.test(document.documentElement.lang) ? "" : " ";
// A message whose {name} places hold elements (a bold number, a link): ``text``, the message as
// the translator returns it with no values given, split at its places, each replaced by
// values[name] (a string or a node).
function withNodes(text, values) {
  return text.split(/(\{\w+\})/).filter(Boolean).map((part) => {
    const m = /^\{(\w+)\}$/.exec(part);
    return m && m[1] in values ? values[m[1]] : part;
  });
}
