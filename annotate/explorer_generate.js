/* annotate explorer for a generation: draws what annotate/explorer_generate.py put in #annotate-data
   (the steps) and #annotate-attention (each step's attention). Plain DOM and canvas; no library,
   no request. */
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("annotate-data").textContent);
  const P = D.prompt_len, N = D.steps.length, L = D.num_layers, NH = D.num_heads, SEQ = D.tokens.length;
  const state = { step: N - 1, layer: "mean", head: "mean", scale: true };

  // ------------------------------------------------------------------------------------------
  // Small helpers (el, sv, the tip and withNodes are annotate/page.js's).

  const pct = (p) => (p >= 0.001 ? (100 * p).toFixed(p >= 0.1 ? 1 : 2) : p === 0 ? "0" : (100 * p).toPrecision(2)) + "%";
  const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(2)} MB`);
  const tokName = (j) => `${j}:${D.tokens[j]}`;
  // A token as a chip's text: a piece of a character as the character with "k/n" raised, so that
  // the position's index after it (a <sub>) does not read as part of the fraction.
  const tokText = (j) => { const pc = D.pieces[j]; return pc ? [pc[0], el("sup", { class: "frac", text: `${pc[1]}/${pc[2]}` })] : [D.tokens[j]]; };
  const MONO = () => getComputedStyle(document.body).getPropertyValue("--mono");

  // ColorBrewer "Blues" (white to navy), as 256 RGB entries: the trace's explorer's scale.
  const STOPS = [[247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214], [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107]];
  const LUT = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (STOPS.length - 1), a = Math.min(Math.floor(x), STOPS.length - 2), f = x - a;
    for (let c = 0; c < 3; c++) LUT[i * 3 + c] = Math.round(STOPS[a][c] * (1 - f) + STOPS[a + 1][c] * f);
  }
  const rgb = (v) => { const i = Math.round(Math.min(1, Math.max(0, v)) * 255) * 3; return [LUT[i], LUT[i + 1], LUT[i + 2]]; };
  const color = (v) => `rgb(${rgb(v).join(", ")})`;

  // ------------------------------------------------------------------------------------------
  // Attention: step after step, each (layers, heads, keys) uint16 little-endian, decoded once.

  const bin = atob(document.getElementById("annotate-attention").textContent.trim());
  const raw = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) raw[i] = bin.charCodeAt(i);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    for (let i = 0; i + 1 < raw.length; i += 2) { const b = raw[i]; raw[i] = raw[i + 1]; raw[i + 1] = b; }
  }
  const ATT = new Uint16Array(raw.buffer);
  const KEYS = D.steps.map((s) => s.keys), OFF = [];
  for (let i = 0, o = 0; i < N; i++) { OFF.push(o); o += L * NH * KEYS[i]; }
  const weight = (i, l, h, k) => ATT[OFF[i] + (l * NH + h) * KEYS[i] + k] / 65535;
  // Step i's row over its keys, for a layer and head, either of them "mean" (averaged).
  function row(i, layer, head) {
    const K = KEYS[i], out = new Float64Array(K);
    const ls = layer === "mean" ? [...Array(L).keys()] : [layer], hs = head === "mean" ? [...Array(NH).keys()] : [head];
    for (const l of ls) for (const h of hs) for (let k = 0; k < K; k++) out[k] += weight(i, l, h, k);
    const n = ls.length * hs.length;
    for (let k = 0; k < K; k++) out[k] /= n;
    return out;
  }
  function which() {
    if (state.layer === "mean") return state.head === "mean" ? t("mean of the {layers} layers, mean of the {heads} heads", { layers: L, heads: NH }) : t("mean of the {layers} layers, head {h}", { layers: L, h: state.head });
    return state.head === "mean" ? t("layer {l}, mean of the {heads} heads", { l: state.layer, heads: NH }) : t("layer {l}, head {h}", { l: state.layer, h: state.head });
  }

  // ------------------------------------------------------------------------------------------
  // Header: the model, how it chose, the prompt, the sequence (prompt, then the new tokens).

  function chip(j) {
    const step = j - P, piece = D.pieces[j];
    const title = [t("token {j} · id {id} · vocabulary: {vocab}", { j, id: D.ids[j], vocab: D.vocab_tokens[j] }),
      piece ? t("bytes {bytes}: piece {k} of {n} of “{ch}”", { bytes: D.display_tokens[j], k: piece[1], n: piece[2], ch: piece[0] }) : null,
      step >= 0 ? t("step {n}", { n: step + 1 }) : t("the prompt")].filter(Boolean).join(" · ");
    const props = { class: "tok" + (step >= 0 ? " gen" : "") + (piece ? " piece" : ""), title, "data-seq": String(j) };
    if (step >= 0) { props["data-token-step"] = String(step); props.onclick = () => select(step); }
    return el("span", props, piece ? null : D.tokens[j], el("sub", { text: String(j) }));
  }
  function sequenceStrip() {
    const out = [];
    let group = null;
    for (let j = 0; j < SEQ; j++) {
      const piece = D.pieces[j];
      if (!piece) { group = null; out.push(chip(j)); continue; }
      if (piece[1] === 1 || !group) {
        group = el("span", { class: "tok-char" + (j >= P ? " gen" : ""), "data-char": piece[0], title: t("the {n} byte tokens of “{ch}” (the vocabulary has no token for it)", { n: piece[2], ch: piece[0] }) }, el("span", { class: "ch", text: piece[0] }));
        out.push(group);
      }
      group.append(chip(j));
    }
    return out;
  }
  function header() {
    // The processors as annotate/watch.py names them ("temperature 0.7", "top-k 50"), listed as the page's language lists.
    const processor = (p) => (p.startsWith("temperature ") ? t("temperature {value}", { value: p.slice("temperature ".length) }) : p);
    const listed = D.processors.map(processor).join(document.documentElement.lang === "zh-CN" ? "、" : ", ");
    const how = D.sampling ? t("sampling: {how}; seed {seed}", { how: D.processors.length ? listed : t("the model's own distribution"), seed: D.seed })
      : t("greedy: each step takes the likeliest token");
    const shape = D.kv_heads !== NH ? t("{layers} layers × {heads} heads ({kv} K/V)", { layers: L, heads: NH, kv: D.kv_heads }) : t("{layers} layers × {heads} heads", { layers: L, heads: NH });
    const facts = [`${D.model_class} (${D.model_type})`, shape, how].join(" · ");
    const end = D.stopped_at_eos ? t("stopped at the end-of-text token after {n} new tokens", { n: N }) : t("{n} new tokens", { n: N });
    const line = D.chat ? t("user: {prompt} ({n} tokens, through the chat template) → {output} · {end}", { n: P, end })
      : t("prompt: {prompt} ({n} tokens) → {output} · {end}", { n: P, end });
    return el("header", {},
      el("div", { class: "title" }, el("h1", {}, el("span", { class: "brand" }, "annotate generate · "), D.model), el("span", { class: "facts" }, facts)),
      el("div", { class: "text-line", title: D.prompt }, withNodes(line, { prompt: el("q", { text: D.prompt }), output: el("q", { class: "out", text: D.text }) })),
      el("div", { class: "tokens", id: "sequence" }, sequenceStrip()));
  }

  // ------------------------------------------------------------------------------------------
  // The steps, one row each: the token chosen, its probability, the alternatives, the cache.

  function stepsList() {
    const most = Math.max(...KEYS);
    const rows = D.steps.map((s, i) => {
      const others = s.top.filter((c) => c.id !== s.id).slice(0, 3);
      return el("div", { class: "step", "data-step": String(i), "data-keys": String(s.keys), tabindex: "0", role: "button",
        title: t("step {n}: attends to {keys} keys ({prompt} of the prompt, {generated} generated); the cache holds {bytes}", { n: i + 1, keys: s.keys, prompt: P, generated: i, bytes: bytes(s.cache_bytes) }),
        onclick: () => select(i), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(i); } } },
        el("span", { class: "n", text: String(i + 1) }),
        el("span", { class: "chosen", text: s.token }),
        el("span", { class: "p" }, el("span", { class: "bar" }, el("i", { style: `width: ${(100 * s.prob).toFixed(1)}%` })), pct(s.prob)),
        el("span", { class: "alts", text: others.map((c) => `${c.display} ${pct(c.prob)}`).join("  ") }),
        el("span", { class: "cache", title: t("{keys} keys in the cache · {bytes}", { keys: s.keys, bytes: bytes(s.cache_bytes) }) }, el("span", { class: "kbar" }, el("i", { class: "kp", style: `width: ${((100 * P) / most).toFixed(1)}%` }), el("i", { class: "kg", style: `width: ${((100 * (s.keys - P)) / most).toFixed(1)}%` })), el("b", { text: String(s.keys) })));
    });
    return el("div", { class: "card steps-card" },
      el("h3", { text: t("each step") }),
      el("div", { class: "step step-head" }, el("span", { class: "n", text: t("step") }), el("span", { class: "chosen", text: t("token") }), el("span", { class: "p", text: D.sampling ? t("p (sampled from)") : "p" }),
        el("span", { class: "alts", text: t("next likeliest") }), el("span", { class: "cache", text: t("keys"), title: t("keys in the cache: the prompt's (grey), then one more per step (purple)") })),
      el("div", { class: "steps", id: "steps" }, rows));
  }

  // ------------------------------------------------------------------------------------------
  // The step picked: its choice, and where its query looked.

  function detail() {
    const i = state.step, s = D.steps[i], card = document.getElementById("step-detail");
    const query = P + i - 1; // the position fed in at this step: the prompt's last token, then each new token in turn
    card.replaceChildren(
      el("h2", {}, withNodes(t("step {n} of {total}: {token}", { n: i + 1, total: N }), { token: el("span", { class: "chosen-big", text: s.token }) })),
      el("div", { class: "meta" }, [
        D.sampling ? t("chosen with p {p} (drawn from the processed distribution; the model alone gave it {model}; {kept} of {vocab} tokens kept)", { p: pct(s.prob), model: pct(s.model_prob), kept: s.kept, vocab: D.vocab_size })
          : t("chosen with p {p} (the likeliest: greedy)", { p: pct(s.prob) }),
        i ? t("the query: {token}, the token chosen at the step before", { token: tokName(query) }) : t("the query: {token}, the prompt's last token", { token: tokName(query) }),
        i ? t("it attends to {keys} keys: {prompt} of the prompt and the {generated} generated", { keys: s.keys, prompt: P, generated: i }) : t("it attends to {keys} keys: {prompt} of the prompt", { keys: s.keys, prompt: P }),
        t("the cache: {bytes} (keys and values, all {layers} layers)", { bytes: bytes(s.cache_bytes), layers: L }),
      ].join(" · ")),
      el("div", { class: "cands" }, s.top.map((c) => el("div", { class: "pred" + (c.id === s.id ? " on" : "") },
        el("span", { class: "t", text: c.id === s.id ? s.token : c.display, title: `id ${c.id} · ${c.display}` }),
        el("div", { class: "bar" }, el("i", { style: `width: ${(100 * c.prob).toFixed(2)}%` })),
        el("span", { class: "p", text: pct(c.prob) }),
        D.sampling ? el("span", { class: "p model", title: t("the model's own probability, before the processors"), text: pct(c.model_prob) }) : null))));
    drawRow();
    drawLayers();
    drawStaircase();
  }
  function drawRow() {
    const i = state.step, s = D.steps[i], w = row(i, state.layer, state.head);
    const top = state.scale ? Math.max(...w) || 1 : 1;
    const box = document.getElementById("att-row");
    box.dataset.attStep = String(i);
    const chips = [];
    for (let k = 0; k < s.keys; k++) {
      const v = w[k] / top;
      chips.push(el("span", {
        class: "tok key" + (k === s.keys - 1 ? " query" : "") + (k >= P ? " gen" : ""), "data-key": String(k), "data-weight": w[k].toFixed(5),
        style: `background: ${color(v)}; color: ${v > 0.55 ? "#fff" : "var(--ink)"}`,
        onmousemove: (ev) => showTip(ev, [t("step {n}, {which}", { n: i + 1, which: which() }),
          k === s.keys - 1 ? t("key {token} (the query itself)", { token: tokName(k) }) : t("key {token}", { token: tokName(k) }), t("attention {w}", { w: w[k].toFixed(4) })].join("\n")),
        onmouseleave: hideTip,
      }, tokText(k), el("sub", { text: String(k) })));
    }
    chips.push(el("span", { class: "arrow", text: "→" }), el("span", { class: "tok next", title: t("the token this step chose (p {p})", { p: pct(s.prob) }) }, tokText(P + i), el("sub", { text: String(P + i) })));
    box.replaceChildren(...chips);
    document.getElementById("att-title").textContent = t("where step {n}'s query looked: {which}", { n: i + 1, which: which() });
    document.getElementById("att-top").textContent = state.scale ? t("{max} (this row's max)", { max: (Math.max(...w)).toFixed(3) }) : "1";
  }

  // Every layer at this step: rows the layers, columns the keys.
  const LM = { lw: 0, top: 0, cw: 0, rh: 0 };
  function drawLayers() {
    const i = state.step, K = KEYS[i], canvas = document.getElementById("layers-map");
    const rows = Array.from({ length: L }, (_, l) => row(i, l, state.head));
    const avail = Math.max(300, (document.getElementById("right").clientWidth || 900) - 80);
    const lw = 64, labels = K <= 64;
    const cw = Math.max(3, Math.min(28, Math.floor((avail - lw) / K))), rh = L > 24 ? 10 : 16, top = labels ? 70 : 16;
    const W = lw + cw * K + (labels ? 60 : 4), H = top + rh * L + 4, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    Object.assign(LM, { lw, top, cw, rh });
    for (let l = 0; l < L; l++) {
      const r = rows[l], m = state.scale ? Math.max(...r) || 1 : 1;
      for (let k = 0; k < K; k++) { ctx.fillStyle = color(r[k] / m); ctx.fillRect(lw + k * cw, top + l * rh, cw - (cw > 4 ? 1 : 0), rh - 1); }
    }
    ctx.font = "10.5px " + MONO();
    ctx.fillStyle = "#57606a";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = rh >= 14 ? 1 : 5;
    for (let l = 0; l < L; l += every) ctx.fillText(t("layer {l}", { l }), lw - 4, top + (l + 0.5) * rh);
    if (L % every !== 1 && every > 1) ctx.fillText(t("layer {l}", { l: L - 1 }), lw - 4, top + (L - 0.5) * rh);
    if (state.layer !== "mean") { ctx.strokeStyle = "#cf222e"; ctx.lineWidth = 1.5; ctx.strokeRect(lw - 1, top + state.layer * rh - 1, cw * K + 1, rh + 1); }
    ctx.strokeStyle = "#8c959f"; ctx.setLineDash([3, 2]); ctx.beginPath(); ctx.moveTo(lw + P * cw - 0.5, top - 4); ctx.lineTo(lw + P * cw - 0.5, top + L * rh); ctx.stroke(); ctx.setLineDash([]);
    if (labels) {
      ctx.save();
      ctx.textAlign = "left";
      for (let k = 0; k < K; k++) {
        ctx.save(); ctx.translate(lw + (k + 0.5) * cw, top - 4); ctx.rotate(-Math.PI / 3);
        ctx.fillStyle = k >= P ? "#8250df" : "#57606a"; ctx.fillText(D.tokens[k], 0, 0, 90); ctx.restore();
      }
      ctx.restore();
    } else {
      ctx.textAlign = "center"; ctx.textBaseline = "bottom";
      for (let k = 0; k < K; k += 10) ctx.fillText(String(k), lw + (k + 0.5) * cw, top - 2);
    }
  }
  function layersHover(ev) {
    const r = ev.target.getBoundingClientRect(), i = state.step;
    const l = Math.floor((ev.clientY - r.top - LM.top) / LM.rh), k = Math.floor((ev.clientX - r.left - LM.lw) / LM.cw);
    if (l < 0 || l >= L || k < 0 || k >= KEYS[i]) return hideTip();
    showTip(ev, [state.head === "mean" ? t("step {n}, layer {l}, heads averaged", { n: i + 1, l }) : t("step {n}, layer {l}, head {h}", { n: i + 1, l, h: state.head }),
      t("key {token}", { token: tokName(k) }), t("attention {w}", { w: row(i, l, state.head)[k].toFixed(4) }), t("click: show this layer")].join("\n"));
  }
  function layersClick(ev) {
    const r = ev.target.getBoundingClientRect(), l = Math.floor((ev.clientY - r.top - LM.top) / LM.rh);
    if (l >= 0 && l < L) pick(l, state.head);
  }

  // Every step: rows the steps, columns the positions; step i's row has its keys (the cache), the rest is empty.
  const SC = { lw: 0, top: 0, cw: 0, rh: 0 };
  function drawStaircase() {
    const canvas = document.getElementById("staircase"), K = KEYS[N - 1];
    const avail = Math.max(300, (document.getElementById("right").clientWidth || 900) - 150);
    const lw = 110, cw = Math.max(2, Math.min(22, Math.floor((avail - lw) / K))), rh = N > 40 ? 8 : 16, top = 18, right = 150;
    const W = lw + cw * K + right, H = top + rh * N + 6, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    Object.assign(SC, { lw, top, cw, rh });
    ctx.font = "10.5px " + MONO();
    for (let i = 0; i < N; i++) {
      const r = row(i, state.layer, state.head), m = state.scale ? Math.max(...r) || 1 : 1;
      for (let k = 0; k < KEYS[i]; k++) { ctx.fillStyle = color(r[k] / m); ctx.fillRect(lw + k * cw, top + i * rh, cw - (cw > 4 ? 1 : 0), rh - 1); }
      ctx.fillStyle = "#57606a";
      ctx.textBaseline = "middle";
      if (rh >= 12 || i % 5 === 0) {
        ctx.textAlign = "right"; ctx.fillText(`${i + 1} ${D.steps[i].token}`, lw - 4, top + (i + 0.5) * rh, lw - 8);
        ctx.textAlign = "left"; ctx.fillText(t("{keys} keys · {bytes}", { keys: KEYS[i], bytes: bytes(D.steps[i].cache_bytes) }), lw + KEYS[i] * cw + 4, top + (i + 0.5) * rh);
      }
    }
    ctx.strokeStyle = "#1f2328"; ctx.lineWidth = 1.5;
    ctx.strokeRect(lw - 1, top + state.step * rh - 1, KEYS[state.step] * cw + 1, rh + 1);
    ctx.strokeStyle = "#8c959f"; ctx.lineWidth = 1; ctx.setLineDash([3, 2]);
    ctx.beginPath(); ctx.moveTo(lw + P * cw - 0.5, top - 12); ctx.lineTo(lw + P * cw - 0.5, top + N * rh); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#57606a"; ctx.textBaseline = "bottom";
    ctx.textAlign = "right"; ctx.fillText(t("prompt"), lw + P * cw - 4, top - 3);
    ctx.textAlign = "left"; ctx.fillText(t("generated"), lw + P * cw + 4, top - 3);
  }
  function stairHover(ev) {
    const r = ev.target.getBoundingClientRect();
    const i = Math.floor((ev.clientY - r.top - SC.top) / SC.rh), k = Math.floor((ev.clientX - r.left - SC.lw) / SC.cw);
    if (i < 0 || i >= N || k < 0) return hideTip();
    if (k >= KEYS[i]) return showTip(ev, t("step {n}: {keys} keys in the cache ({bytes}); position {k} not generated yet", { n: i + 1, keys: KEYS[i], bytes: bytes(D.steps[i].cache_bytes), k }));
    showTip(ev, [t("step {n} ({which})", { n: i + 1, which: which() }), t("key {token}", { token: tokName(k) }),
      t("attention {w}", { w: row(i, state.layer, state.head)[k].toFixed(4) }), t("click: show this step")].join("\n"));
  }
  function stairClick(ev) {
    const r = ev.target.getBoundingClientRect(), i = Math.floor((ev.clientY - r.top - SC.top) / SC.rh);
    if (i >= 0 && i < N) select(i);
  }

  // ------------------------------------------------------------------------------------------
  // Picking: a step, a layer and a head.

  function select(i) {
    state.step = Math.max(0, Math.min(N - 1, i));
    document.querySelectorAll(".step.on, #sequence .tok.on").forEach((e) => e.classList.remove("on"));
    const r = document.querySelector(`.step[data-step="${state.step}"]`);
    if (r) { r.classList.add("on"); r.scrollIntoView({ block: "nearest" }); }
    const c = document.querySelector(`#sequence [data-token-step="${state.step}"]`);
    if (c) c.classList.add("on");
    detail();
  }
  function pick(layer, head) {
    state.layer = layer;
    state.head = head;
    document.querySelectorAll("[data-pick-layer]").forEach((b) => b.classList.toggle("on", b.dataset.pickLayer === String(layer)));
    document.querySelectorAll("[data-pick-head]").forEach((b) => b.classList.toggle("on", b.dataset.pickHead === String(head)));
    drawRow();
    drawLayers();
    drawStaircase();
  }
  function picker(label, n, attr, current) {
    const values = ["mean", ...Array.from({ length: n }, (_, x) => x)];
    return el("div", { class: "pick" }, el("span", { text: label }), values.map((v) => el("button", {
      [attr]: String(v), class: String(v) === String(current) ? "on" : null, title: v === "mean" ? t("the mean of all {n}", { n }) : null,
      onclick: () => (attr === "data-pick-layer" ? pick(v, state.head) : pick(state.layer, v)),
    }, v === "mean" ? t("mean") : String(v))));
  }

  function main() {
    const ramp = el("canvas", { class: "ramp", width: "120", height: "1" });
    const rc = ramp.getContext("2d");
    for (let x = 0; x < 120; x++) { rc.fillStyle = color(x / 119); rc.fillRect(x, 0, 1, 1); }
    const controls = el("div", { class: "att-controls" }, picker(t("layer"), L, "data-pick-layer", state.layer), picker(t("head"), NH, "data-pick-head", state.head),
      el("label", { class: "scale-check" }, el("input", { type: "checkbox", checked: state.scale, onchange: (ev) => { state.scale = ev.target.checked; pick(state.layer, state.head); } }), " ", t("scale each row to its own maximum")));
    const right = el("section", { id: "right" },
      el("div", { class: "card", id: "step-detail" }),
      el("div", { class: "card" }, el("h3", { id: "att-title" }), controls,
        el("div", { class: "hint", text: t("The attention probabilities of this step's query (the last position: the token fed in) over every key in the cache, the prompt and the tokens generated so far; they sum to 1. The query is outlined; after the arrow, the token the step chose.") }),
        el("div", { class: "tokens att-row", id: "att-row" }),
        el("div", { class: "scale" }, "0", ramp, el("span", { id: "att-top" }))),
      el("div", { class: "card" }, el("h3", { text: t("every layer at this step (click a row to pick its layer)") }),
        el("div", { class: "map-wrap" }, el("canvas", { id: "layers-map", onmousemove: layersHover, onmouseleave: hideTip, onclick: layersClick }))),
      el("div", { class: "card" }, el("h3", { text: t("every step: the cache grows by one key a step") }),
        el("div", { class: "hint", text: t("Row: a step; its cells: the keys it attended to (the prompt's {n}, then one more per step: the key/value cache, never recomputed). Click a row to show its step.", { n: P }) }),
        el("div", { class: "map-wrap" }, el("canvas", { id: "staircase", onmousemove: stairHover, onmouseleave: hideTip, onclick: stairClick }))));
    const app = document.getElementById("app");
    app.replaceChildren(header(), el("main", { class: "gen-main" }, el("aside", { id: "steps-pane" }, stepsList()), right), tip);
    document.addEventListener("keydown", (ev) => {
      if (ev.target.tagName === "INPUT") return;
      const d = { ArrowUp: -1, ArrowDown: 1, k: -1, j: 1 }[ev.key];
      if (d === undefined) return;
      ev.preventDefault();
      select(state.step + d);
    });
    window.addEventListener("resize", () => { drawLayers(); drawStaircase(); });
    if (N) select(N - 1);
    requestAnimationFrame(() => requestAnimationFrame(() => { window.annotateReady = true; document.body.dataset.ready = "1"; }));
  }
  main();
})();
