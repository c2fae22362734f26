/* annotate explorer: draws the trace that annotate/explorer.py put in #annotate-data (and the
   attention in #annotate-attention). Plain DOM, SVG and canvas; no library, no request. */
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("annotate-data").textContent);
  const T = D.tokens.length, L = D.num_layers, NH = D.num_heads;
  const STAGE = new Map(D.stages.map((s) => [s.name, s]));
  const LAYER_OF = new Map(); // stage name -> layer it belongs to (flow membership)
  const KIND_OF = new Map(); // stage name -> "attn" | "ffn" | "norm" | "add" | "output" | "": where the chart put it
  // What a stage is: its step's kind in annotate/models/<model_type>.py ("lookup", "norm", "query",
  // "probs", "residual", "pool", "head", ...), which annotate/explorer.py sends with each stage. The
  // page reads it from there, never from a stage's name.
  const kindOf = (n) => (STAGE.has(n) ? STAGE.get(n).kind : null);
  // A box drawn as a LayerNorm (or RMSNorm): a step of kind "norm" (annotate/models), a head's own
  // (BERT's cls.predictions.transform.LayerNorm) too.
  const isNorm = (n) => kindOf(n) === "norm";
  // Which norm: what its step's formula says (annotate/models: "RMSNorm_1(X)", "LayerNorm(...)"), not its name.
  const formulaOf = (n) => { const s = STAGE.get(n), e = s && s.explain !== null ? D.explanations[s.explain] : null; return (e && e.formula) || ""; };
  const isRMS = (n) => isNorm(n) && /\bRMSNorm/.test(formulaOf(n));
  const NORMS = D.stages.filter((s) => s.kind === "norm").map((s) => s.name);
  const RMS_N = NORMS.filter(isRMS).length;
  const NORM_WORD = RMS_N && RMS_N === NORMS.length ? "RMSNorm" : RMS_N ? "LayerNorm / RMSNorm" : "LayerNorm";
  // What a modern decoder adds (annotate/explorer.py sends each only where the trace has it):
  // RoPE's angles, which query heads share a key/value head, the MLP's gate.
  const ROPE = D.rope || null, GQA = D.gqa || null, GATES = D.gates || null;
  const NKV = GQA ? GQA.kv_heads : NH;
  const kvOf = (h) => (GQA ? GQA.kv_of[h] : h);
  const kvHeads = (g) => Array.from({ length: NH }, (_, h) => h).filter((h) => kvOf(h) === g);
  const kvColor = (g) => `hsl(${(g * 360) / Math.max(NKV, 1) + 20}, 58%, 42%)`;
  const GATE_OF = new Map(); // a stage of a gated MLP (the gate, silu(G), U, silu(G)·U) -> its layer's entry in D.gates
  if (GATES) for (const g of GATES.layers) for (const role of ["gate", "act", "up", "product"]) if (g[role]) GATE_OF.set(g[role], { entry: g, role });
  const state = { stage: null, layer: 0, head: 0, tab: "stage", scaleHead: true, focus: null, pinned: null, gateToken: T - 1 };

  // ------------------------------------------------------------------------------------------
  // Small helpers.

  function fmt(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x === "string") return x; // "nan", "inf", "-inf" (see explorer.py's _plain)
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
    return String(Number(x.toPrecision(4)));
  }
  const pct = (p) => (p >= 0.001 ? (100 * p).toFixed(p >= 0.1 ? 1 : 2) : (100 * p).toPrecision(2)) + "%";
  const shapeText = (shape) => "(" + shape.join(", ") + ")";
  const tokColor = (i) => `hsl(${(i * 137.508) % 360}, 62%, 42%)`;
  const headColor = (h) => `hsl(${(h * 360) / Math.max(NH, 1) + 210}, 70%, 45%)`;
  const tokName = (i) => `${i}:${D.tokens[i]}`;

  // ------------------------------------------------------------------------------------------
  // The --diff verdicts (annotate/compare.py), as the terminal and --json give them: per stage
  // "equal" (the same bits), "rounding" (they differ, but rerun in float64 both agree), "math"
  // (rerun in float64 they still differ: the first such stage is D.first_math) or "absent" (the
  // other run has no such stage: D.why_absent says why, e.g. sdpa's fused kernel).

  const SYMBOL = { equal: "=", rounding: "≈", math: "≠", absent: "∅" };
  const OTHER = D.compared ? D.compared[1] : "transformers";
  const BOUND = `2^${Math.round(Math.log2(D.rounding_bound || Math.pow(2, -36)))}`;
  const DIFF = "max |twin − transformers|";
  function verdictOf(s) {
    if (!D.diffed || !s) return null;
    if (s.verdict) return s.verdict;
    if (s.diff === null || s.diff === undefined) return "absent";
    return s.diff === 0 ? "equal" : null; // differs, but no float64 rerun judged it
  }
  function verdictWord(v) {
    return { equal: t("equal"), rounding: t("rounding"), math: t("math"), absent: t("absent") }[v] || "";
  }
  function meaning(v) {
    if (v === "equal") return t("equal: the same bits as {other}", { other: OTHER });
    if (v === "rounding") return t("rounding: the values differ, but rerun in float64 both agree to {bound} of the stage's scale: the same math, rounded differently", { bound: BOUND });
    if (v === "math") return t("math: rerun in float64 they still differ: the two compute different things");
    if (v === "absent") return t("absent: {why}", { why: D.why_absent || t("the other run has no such stage") });
    return "";
  }
  function verdictTitle(s) {
    const v = verdictOf(s), lines = [meaning(v)];
    if (typeof s.diff === "number" && s.diff !== 0) lines.push(`${DIFF} = ${fmt(s.diff)}`);
    if (s.name === D.first_math) lines.push(t("the first math difference: from this stage on, the two runs compute different things"));
    return lines.filter(Boolean).join("\n");
  }
  // The stages the other run has none of, by step ("scores/probs"), for the header.
  const ABSENT = D.diffed ? [...new Set(D.stages.filter((s) => verdictOf(s) === "absent").map((s) => s.name.split(".").at(-1)))] : [];

  // ------------------------------------------------------------------------------------------
  // Attention: (layers, heads, T, T) uint16 little-endian, decoded on first use.

  let ATT = null;
  function att() {
    if (ATT) return ATT;
    const bin = atob(document.getElementById("annotate-attention").textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
      for (let i = 0; i + 1 < bytes.length; i += 2) { const b = bytes[i]; bytes[i] = bytes[i + 1]; bytes[i + 1] = b; }
    }
    ATT = new Uint16Array(bytes.buffer);
    return ATT;
  }
  const weight = (l, h, q, k) => att()[((l * NH + h) * T + q) * T + k] / 65535;
  const headMax = new Map();
  function maxOf(l, h) {
    const key = l * NH + h;
    if (!headMax.has(key)) {
      const a = att(), base = key * T * T;
      let m = 0;
      for (let i = 0; i < T * T; i++) if (a[base + i] > m) m = a[base + i];
      headMax.set(key, m / 65535 || 1);
    }
    return headMax.get(key);
  }
  const masked = (q, k) => D.causal && k > q; // a decoder's future: masked, not merely small

  // ColorBrewer "Blues" (white to navy), as 256 RGB entries.
  const STOPS = [[247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214], [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107]];
  const LUT = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (STOPS.length - 1), a = Math.min(Math.floor(x), STOPS.length - 2), f = x - a;
    for (let c = 0; c < 3; c++) LUT[i * 3 + c] = Math.round(STOPS[a][c] * (1 - f) + STOPS[a + 1][c] * f);
  }
  function headImage(l, h) {
    const c = document.createElement("canvas");
    c.width = T; c.height = T;
    paintHead(c, l, h);
    return c;
  }
  function paintHead(canvas, l, h) {
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(T, T), px = img.data, a = att(), base = (l * NH + h) * T * T;
    const scale = state.scaleHead ? 1 / maxOf(l, h) : 1;
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const o = (q * T + k) * 4;
        if (masked(q, k)) { px[o] = 228; px[o + 1] = 230; px[o + 2] = 233; px[o + 3] = 255; continue; }
        const v = Math.min(1, (a[base + q * T + k] / 65535) * scale), i = Math.round(v * 255) * 3;
        px[o] = LUT[i]; px[o + 1] = LUT[i + 1]; px[o + 2] = LUT[i + 2]; px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.drawn = "1";
  }

  // ------------------------------------------------------------------------------------------
  // Header.

  function header() {
    const facts = [
      `${D.model_class} (${D.model_type}${D.flow.norm !== "none" ? ", " + D.flow.norm : ""})`,
      GQA ? t("{layers} layers × {heads} heads ({kv} K/V)", { layers: L, heads: NH, kv: NKV }) : t("{layers} layers × {heads} heads", { layers: L, heads: NH }),
      t("{n} tokens", { n: T }),
      D.transformers ? `transformers ${D.transformers}` : null,
    ].filter(Boolean);
    const tokens = el("div", { class: "tokens", id: "tokens" }, tokenStrip());
    return el("header", {},
      el("div", { class: "title" }, el("h1", {}, el("span", { class: "brand" }, "annotate · "), D.model), el("span", { class: "facts" }, facts.join(" · ")), ...verdictLine()),
      el("div", { class: "text-line", title: D.text }, t("text:"), GAP, el("q", { text: D.text })),
      tokens);
  }
  // The header's verdict, as the terminal's closing lines: all bit-identical; every difference
  // rounding; or where the first math difference is; and which stages are absent, and why.
  function verdictLine() {
    if (!D.diffed) return [el("span", { class: "verdict", "data-verdict": "none", title: t("annotate trace … --diff runs transformers too and compares every stage") }, t("not compared with transformers (--diff)"))];
    const out = [];
    const first = D.first_divergence, math = D.first_math, s = first ? STAGE.get(first) : null;
    const compared = D.stages.filter((x) => verdictOf(x) !== "absent").length;
    if (!first && !ABSENT.length) out.push(el("span", { class: "verdict same", "data-verdict": "equal", title: meaning("equal") }, t("--diff: all {n} stages bit-identical to {other}", { n: D.stages.length, other: OTHER })));
    else if (!first) out.push(el("span", { class: "verdict same", "data-verdict": "equal", title: meaning("equal") }, t("--diff: no difference where compared ({n} stages)", { n: compared })));
    else if (!math) {
      const judged = D.stages.every((x) => verdictOf(x) !== null);
      out.push(el("span", { class: "verdict rounding", "data-verdict": "rounding", title: judged ? meaning("rounding") : t("show it"), onclick: () => select(first) },
        judged ? t("--diff: first divergence at {stage} (max |Δ| {d}); every difference is rounding (float64 reruns agree)", { stage: first, d: fmt(s.diff) })
          : t("--diff: first divergence at {stage} (max |Δ| {d})", { stage: first, d: fmt(s.diff) })));
    } else {
      const m = STAGE.get(math);
      out.push(el("span", { class: "verdict differs", "data-verdict": "math", "data-first-math": math, title: meaning("math"), onclick: () => select(math) },
        math === first ? t("--diff: first divergence at {stage} (max |Δ| {d}) is the first math difference: rerun in float64, they still differ", { stage: first, d: fmt(s.diff) })
          : t("--diff: first divergence at {stage} (max |Δ| {d}) is rounding; first math difference at {math} (max |Δ| {dm})", { stage: first, d: fmt(s.diff), math, dm: fmt(m.diff) })));
    }
    if (ABSENT.length) {
      const steps = ABSENT.join("/");
      out.push(el("span", { class: "verdict absent", "data-verdict": "absent", title: meaning("absent") },
        D.absent_fused ? t("{steps} absent: sdpa fuses them", { steps }) : t("{steps} absent: {run} has no such stages", { steps, run: OTHER })));
    }
    return out;
  }

  // The tokens, one chip each; a byte-level BPE's pieces of one character (GPT-2 and Llama on
  // Chinese text: 我 as two or three byte tokens) in one box that shows the character once, each
  // piece a chip with its index (its bytes in its title).
  function tokenStrip() {
    const P = D.pieces || [], out = [];
    let group = null;
    for (let i = 0; i < T; i++) {
      const piece = P[i], unk = D.unknown.includes(i);
      const title = t("token {i} · id {id} · vocabulary: {token}", { i, id: D.ids[i], token: D.vocab_tokens[i] }) + (unk ? " · " + t("unknown to the vocabulary") : "")
        + (piece ? " · " + t("bytes {bytes}: piece {k} of {n} of “{char}”", { bytes: (D.display_tokens || D.tokens)[i], k: piece[1], n: piece[2], char: piece[0] }) : "");
      if (!piece) { group = null; out.push(el("span", { class: "tok" + (unk ? " unk" : ""), title }, D.tokens[i], el("sub", { text: String(i) }))); continue; }
      if (piece[1] === 1 || !group) {
        group = el("span", { class: "tok-char", "data-char": piece[0], title: t("tokens {first}–{last}: the {n} byte tokens of “{char}” (the vocabulary has no token for it)", { first: i, last: i + piece[2] - 1, n: piece[2], char: piece[0] }) }, el("span", { class: "ch", text: piece[0] }));
        out.push(group);
      }
      group.append(el("span", { class: "tok piece", title }, el("sub", { text: String(i) })));
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // The flow chart.

  // A stage's verdict, as a mark: = equal, ≈ rounding, ≠ math (each with max |Δ|), ∅ absent.
  function mark(s) {
    const v = verdictOf(s);
    if (!v) return D.diffed && typeof s.diff === "number" ? el("span", { class: "mark differs", title: DIFF }, "Δ" + fmt(s.diff)) : null;
    const size = v === "rounding" || v === "math" ? fmt(s.diff) : "";
    return el("span", { class: "mark v-" + v, "data-verdict": v, title: verdictTitle(s) }, SYMBOL[v] + size);
  }
  function stageBox(name, kind, label) {
    const s = STAGE.get(name);
    const cls = ["stage", kind || ""];
    if (isRMS(name)) cls.push("tagged");
    if (name === D.first_divergence) cls.push("first");
    if (name === D.first_math) cls.push("first-math");
    const box = el("div", {
      class: cls.join(" "), "data-stage": name, tabindex: "0", role: "button", title: name,
      onclick: () => select(name),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(name); } },
    },
    kind === "add" ? el("span", { class: "plus" }, "+") : null,
    el("span", { class: "step", text: label || (kind === "output" && s.layer !== null ? t("layer {n} output", { n: s.layer }) : D.short[name] || name) }),
    isRMS(name) ? el("span", { class: "tag", "data-norm": "RMSNorm", title: t("RMSNorm: {formula} (no mean subtracted, no bias), as the step's formula says", { formula: "x / sqrt(mean(x²) + ε) · g" }) }, "RMSNorm") : null,
    name === D.first_math ? el("span", { class: "fm", "data-first-math": "", title: verdictTitle(s) }, t("first math difference")) : null,
    el("span", { class: "shape", text: shapeText(s.shape) }),
    mark(s));
    return box;
  }
  function flowChart() {
    const F = D.flow;
    const pane = el("div", {});
    pane.append(el("div", { class: "legend" },
      el("span", {}, el("i", { class: "l-spine" }), t("residual stream")),
      el("span", {}, el("i", { class: "l-attn" }), t("self-attention")),
      el("span", {}, el("i", { class: "l-ffn" }), t("feed-forward")),
      el("span", {}, el("i", { class: "l-norm" }), NORM_WORD),
      el("span", {}, "⊕ ", t("add"))));
    if (D.diffed) {  // the verdicts this page has, each with what it means
      const present = ["equal", "rounding", "math", "absent"].filter((v) => D.stages.some((s) => verdictOf(s) === v));
      pane.append(el("div", { class: "legend verdicts", "data-verdict-legend": "" }, el("span", { class: "lv-title" }, t("--diff verdict:")),
        present.map((v) => el("span", { "data-verdict": v, title: meaning(v) }, el("b", { class: "mark v-" + v }, SYMBOL[v]), " ", verdictWord(v)))));
    }
    pane.append(el("div", { class: "input-node" }, t("input ids {shape}", { shape: `(1, ${T})` })));
    const spine = el("div", { class: "spine" });
    let started = false;
    for (const row of F.before) {
      if (kindOf(row[0]) === "rotary") continue;
      if (row.length > 1 || (!started && kindOf(row[0]) === "lookup")) {
        pane.append(el("div", { class: "lookups" }, el("div", { class: "branch-title", text: row.length > 1 ? t("lookups, summed below") : t("lookup") }), row.map((n) => stageBox(n, ""))));
        continue;
      }
      started = true;
      for (const n of row) { KIND_OF.set(n, "spine"); spine.append(el("div", { class: "on-spine" }, stageBox(n, isNorm(n) ? "norm" : ""))); }
    }
    // RoPE's cos and sin (kind "rotary"): a table of angles that every layer turns its Q and K by,
    // beside the stream, not on it.
    const rotary = F.before.filter((row) => kindOf(row[0]) === "rotary").flat();
    if (rotary.length) {
      for (const n of rotary) KIND_OF.set(n, "rotary");
      pane.append(el("div", { class: "lookups rotary-box", title: t("rotary position embedding: angles that every layer's attention turns its Q and K by; not added to the stream") },
        el("div", { class: "branch-title", text: t("positions: RoPE's angles, for every layer's Q and K") }), rotary.map((n) => stageBox(n, ""))));
    }
    spine.append(el("div", { class: "spine-label" }, t("residual stream"), " ↓"));
    const summary = new Map(D.layers.map((r) => [r.layer, r]));
    for (const layer of F.layers) spine.append(layerBox(layer, summary.get(layer.layer)));
    // After the layers: a LayerNorm right after them (ln_f) and last_hidden_state are the stream
    // itself; the rest (the pooler, a head's own layers) branch off its end, grouped by module.
    const after = F.after.map(([n]) => n);
    const parentOf = (n) => n.split(".").slice(0, -1).join(".") || n;
    for (let i = 0; i < after.length;) {
      const n = after[i];
      if (n === "last_hidden_state" || (i === 0 && isNorm(n))) { KIND_OF.set(n, "spine"); spine.append(el("div", { class: "on-spine" }, stageBox(n, isNorm(n) ? "norm" : "output"))); i++; continue; }
      const group = el("div", { class: "branch tail" }, el("div", { class: "branch-title", text: parentOf(n) }));
      for (; i < after.length && after[i] !== "last_hidden_state" && parentOf(after[i]) === parentOf(n); i++) {
        group.append(el("div", { class: "row" }, stageBox(after[i], isNorm(after[i]) ? "norm" : "", after[i].slice(parentOf(n).length + 1) || after[i])));
      }
      spine.append(group);
    }
    pane.append(spine);
    pane.append(headNode());
    return pane;
  }
  function layerBox(layer, sum) {
    const i = layer.layer;
    const names = [];
    const body = el("div", { class: "layer-body" });
    body.append(el("div", { class: "norm-note" }, D.flow.norm === "post-LN"
      ? t("post-LN: a {norm} sits on the stream after each ⊕", { norm: NORM_WORD })
      : D.flow.norm === "pre-LN" ? t("pre-LN: each branch opens with its {norm}; the stream is only added to", { norm: NORM_WORD }) : ""));
    for (const block of layer.blocks) {
      if (block.kind === "branch") {
        const kind = block.title === "self-attention" ? "attn" : "ffn";
        const b = el("div", { class: "branch " + kind }, el("div", { class: "branch-title", text: kind === "attn" ? t("self-attention") : t("feed-forward") }));
        for (const row of block.rows) {
          b.append(el("div", { class: "row" }, row.map((n) => { names.push(n); KIND_OF.set(n, kind); return stageBox(n, isNorm(n) ? "norm" : ""); })));
        }
        body.append(b);
        body.append(el("div", { class: "join" }));
      } else {
        names.push(block.stage);
        KIND_OF.set(block.stage, block.kind);
        body.append(el("div", { class: "on-spine" }, stageBox(block.stage, block.kind)));
      }
    }
    if (layer.output) { names.push(layer.output); KIND_OF.set(layer.output, "output"); body.append(el("div", { class: "on-spine" }, stageBox(layer.output, "output"))); }
    for (const n of names) LAYER_OF.set(n, i);
    const diverges = D.first_divergence && names.includes(D.first_divergence);
    const hasMath = D.first_math && names.includes(D.first_math);
    const bits = [];
    if (sum && sum.norm !== null) {
      bits.push(`|h| ${fmt(sum.norm)}`);
      if (sum.change !== null) bits.push(`Δ ${pct(sum.change)}`);
    }
    const box = el("div", { class: "layer" + (diverges ? " diverges" : "") + (hasMath ? " first-math" : ""), "data-layer-box": String(i) });
    const head = el("button", {
      class: "layer-head", "aria-expanded": "false",
      title: t("layer {n}: |h| is the mean over tokens of each token's norm after the layer; Δ the mean relative change {change}. Click to open its stages.", { n: i, change: "|h_out − h_in| / |h_in|" }),
      onclick: () => openLayer(i, !box.classList.contains("open")),
    }, el("span", { class: "layer-pill" }, el("span", { class: "chev" }, "▸"), " ", t("layer {n}", { n: i })), el("span", { class: "layer-sum", text: bits.join(" · ") }), layerMark(i, names, sum));
    box.append(head, body);
    return box;
  }
  // A layer's verdict: its worst stage's (math, then rounding, then equal; absent only if all are).
  function layerMark(i, names, sum) {
    if (!D.diffed) return null;
    const vs = names.map((n) => verdictOf(STAGE.get(n)));
    const absent = vs.filter((v) => v === "absent").length;
    const v = ["math", "rounding", "equal", "absent"].find((x) => vs.includes(x));
    if (!v || vs.includes(null)) return sum && typeof sum.diff === "number" && sum.diff !== 0 ? el("span", { class: "mark differs", title: DIFF }, "Δ" + fmt(sum.diff)) : null;
    const what = { equal: t("every stage bit-identical"), rounding: t("rounding differences only: rerun in float64, both agree"),
      math: t("a math difference: rerun in float64, they still differ"), absent: meaning("absent") }[v];
    const lines = [t("layer {n}: {what}", { n: i, what })];
    if (sum && typeof sum.diff === "number" && sum.diff !== 0) lines.push(`${DIFF} = ${fmt(sum.diff)}`);
    if (absent && v !== "absent") lines.push(t("{n} stages absent: {why}", { n: absent, why: D.why_absent || t("the other run has no such stage") }));
    const size = (v === "rounding" || v === "math") && sum && typeof sum.diff === "number" ? fmt(sum.diff) : "";
    return el("span", { class: "mark v-" + v, "data-verdict": v, title: lines.join("\n") }, SYMBOL[v] + size);
  }
  function openLayer(i, open) {
    const box = document.querySelector(`[data-layer-box="${i}"]`);
    if (!box) return;
    box.classList.toggle("open", open);
    box.querySelector(".layer-head").setAttribute("aria-expanded", String(open));
    box.querySelector(".chev").textContent = open ? "▾" : "▸";
  }
  function headNode() {
    let text;
    if (D.predictions) text = [t("next token:"), GAP, el("b", { text: D.predictions[0].display }), ` ${pct(D.predictions[0].prob)}`];
    else if (D.mask_predictions && D.mask_predictions.length) text = [t("[MASK] at {pos}:", { pos: D.mask_predictions[0].position }), GAP, el("b", { text: D.mask_predictions[0].top[0].display }), ` ${pct(D.mask_predictions[0].top[0].prob)}`];
    else if (D.mask_predictions) text = [t("masked LM: the text has no mask token to fill")];
    else if (D.labels) { const top = D.labels.reduce((a, b) => (b.prob > a.prob ? b : a)); text = [t("label:"), GAP, el("b", { text: top.label }), ` ${pct(top.prob)}`]; }
    else if (D.replaced) text = [t("replaced-token detection, per token")];
    else text = [t("{model}: no head; its output is the last hidden state", { model: D.model_class })];
    return el("div", { class: "head-node", title: t("the predictions"), onclick: () => showTab("predictions") }, "▸ ", text);
  }

  // ------------------------------------------------------------------------------------------
  // The stage panel.

  function dims(s) {
    const kind = KIND_OF.get(s.name), sh = s.shape;
    const hidden = (() => { const o = D.flow.layers.length && D.flow.layers[0].output; return o ? STAGE.get(o).shape.at(-1) : null; })();
    const last = (n) => (n === hidden ? "C" : kind === "ffn" ? "d_ff" : n === T ? "T" : "·");
    if (sh.length === 4) return ["B", GQA && sh[1] === NKV && NKV !== NH ? "nkv" : "nh", "T", s.kind === "scores" || s.kind === "probs" ? "T" : "hs"];
    if (sh.length === 3 && ROPE && kind === "rotary" && sh[2] === ROPE.dims) return ["B", "T", "hs"];
    if (sh.length === 3 && GQA && kind === "attn" && hidden && sh[2] !== hidden && sh[2] * NH === hidden * NKV) return ["B", "T", "nkv·hs"];
    if (sh.length === 3) return ["B", "T", last(sh[2])];
    if (sh.length === 2) return ["B", last(sh[1])];
    return null;
  }
  function histogram(s) {
    const W = 380, H = 120, m = { l: 6, r: 6, t: 6, b: 20 };
    const n = s.hist.length, top = Math.max(...s.hist, 1), bw = (W - m.l - m.r) / n;
    const finite = typeof s.stats.min === "number" && typeof s.stats.max === "number";
    const lo = finite ? s.stats.min : 0, hi = finite ? s.stats.max : n; // an overflow: bins unlabelled
    const g = sv("svg", { class: "hist", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": t("histogram of the values") });
    s.hist.forEach((c, i) => {
      const h = c ? Math.max(1, ((H - m.t - m.b) * c) / top) : 0;
      const a = lo + ((hi - lo) * i) / n, b = lo + ((hi - lo) * (i + 1)) / n;
      g.append(sv("rect", { class: "bar", x: m.l + i * bw + 0.5, y: H - m.b - h, width: Math.max(1, bw - 1), height: h },
        sv("title", { text: t("{from} … {to}: {n} values", { from: fmt(a), to: fmt(b), n: c }) })));
    });
    g.append(sv("line", { x1: m.l, x2: W - m.r, y1: H - m.b + 0.5, y2: H - m.b + 0.5, stroke: "#8c959f" }));
    g.append(sv("text", { x: m.l, y: H - 5, text: finite ? fmt(lo) : t("finite values only") }));
    if (finite) g.append(sv("text", { x: W - m.r, y: H - 5, "text-anchor": "end", text: fmt(hi) }));
    if (finite && lo < 0 && hi > 0) {
      const x = m.l + ((W - m.l - m.r) * (0 - lo)) / (hi - lo);
      g.append(sv("line", { x1: x, x2: x, y1: m.t, y2: H - m.b + 4, stroke: "#cf222e", "stroke-dasharray": "2 2" }));
      if (x - m.l > 40 && W - m.r - x > 40) g.append(sv("text", { x, y: H - 5, "text-anchor": "middle", text: "0" })); // else it would sit on min or max
    }
    return g;
  }
  function codeBlock(snip, who) {
    const pre = el("pre", { class: "code" });
    // Lines of the other transformers version's branch (snip.other_lines, which run only under
    // snip.other_version): folded under one labelled row, unmarked.
    const others = new Set(snip.other_lines || []);
    let fold = null;
    for (const [n, text, hit] of snip.lines) {
      const other = n && others.has(n);
      const line = el("span", { class: "l" + (hit ? " hit" : "") + (other ? " other" : "") }, el("span", { class: "n", text: n ? String(n) : "" }), text);
      if (!other) { fold = null; pre.append(line); continue; }
      if (!fold) {
        const body = el("span", { class: "fold-body", hidden: true });
        const label = el("span", { class: "l fold", role: "button", tabindex: "0", title: t("show or hide these lines") }, el("span", { class: "n", text: "▸" }), el("span", { class: "fold-text" }));
        fold = { body, label, count: 0 };
        const toggle = () => { body.hidden = !body.hidden; label.querySelector(".n").textContent = body.hidden ? "▸" : "▾"; };
        label.addEventListener("click", toggle);
        label.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
        pre.append(label, body);
      }
      fold.body.append(line);
      fold.count += 1;
      fold.label.querySelector(".fold-text").textContent = t("{n} lines that run only under {version} (not here)", { n: fold.count, version: snip.other_version });
    }
    return el("div", { class: "source" },
      el("div", { class: "where", title: snip.path }, el("span", { class: "who", text: who }), snip.where, " ", el("span", { class: "fn", text: snip.function.split(".").slice(-2).join(".") })),
      pre);
  }
  function stagePanel() {
    const s = STAGE.get(state.stage);
    const panel = document.getElementById("stage-panel");
    panel.replaceChildren();
    panel.dataset.selected = s.name;
    const kind = KIND_OF.get(s.name);
    const where = s.layer !== null ? t("layer {n}", { n: s.layer }) + (kind === "attn" ? " · " + t("self-attention branch") : kind === "ffn" ? " · " + t("feed-forward branch") : kind === "add" ? " · " + t("residual add, on the stream") : kind === "norm" ? " · " + t("on the residual stream") : "") : t("outside the layers");
    const d = dims(s);
    const meta = el("div", { class: "meta" }, where, " · ", t("shape"), " ", el("code", { text: shapeText(s.shape) }), d ? [" = ", el("code", { text: "(" + d.join(", ") + ")" })] : null);
    const e = s.explain !== null ? D.explanations[s.explain] : null;
    const head = el("div", { class: "card" }, el("h2", { text: s.name }), meta);
    if (s.name === D.first_math) {
      head.append(el("div", { class: "first-math-note", "data-first-math": "" }, el("b", { class: "mark v-math" }, SYMBOL.math), " ",
        t("the first math difference: from this stage on, the two runs compute different things")));
    }
    if (e && e.formula) head.append(el("div", { class: "formula", title: t("in the paper's notation") }, e.formula));
    panel.append(head);

    const statName = { mean: t("mean"), std: t("std"), min: t("min"), max: t("max") };
    const stats = el("table", { class: "stats" }, ["mean", "std", "min", "max"].map((k) => el("tr", {}, el("td", { text: statName[k] }), el("td", { text: fmt(s.stats[k]) }))));
    const numbers = el("div", { class: "card" }, el("h3", { text: t("values") }), el("div", { class: "stats-row" }, stats, histogram(s)));
    const v = verdictOf(s);
    if (D.diffed && (v || typeof s.diff === "number")) {
      const first = s.name === D.first_divergence;
      const size = typeof s.diff === "number" ? s.diff.toExponential(3) : s.diff;
      const text = v === "equal" ? t("{diff} = 0: bit-identical", { diff: DIFF })
        : v === "rounding" ? t("{diff} = {d}: the float64 reruns agree to {bound} of the stage's scale", { diff: DIFF, d: size, bound: BOUND })
        : v === "math" ? t("{diff} = {d}: the float64 reruns still differ: the two compute different things", { diff: DIFF, d: size })
        : v === "absent" ? t("not compared: {why}", { why: D.why_absent || t("the other run has no such stage") })
        : `${DIFF} = ${size}`;
      numbers.append(el("div", { class: "diffline " + (v ? "v-" + v : "differs") + (v === "equal" ? " same" : v === "math" ? " differs" : ""), "data-verdict": v || "" },
        v ? el("span", { class: "vchip v-" + v, title: meaning(v) }, SYMBOL[v] + " " + verdictWord(v)) : null, v ? " " : null,
        text + (first ? (GAP ? " — " : "——") + t("the first stage that differs") : "")));
    }
    if ((s.kind === "scores" || s.kind === "probs") && s.layer !== null) {
      numbers.append(el("button", { class: "jump", onclick: () => { state.layer = s.layer; showTab("attention"); } }, t("see layer {n}'s {heads} heads →", { n: s.layer, heads: NH })));
    }
    if (GQA && s.layer !== null && (s.kind === "key" || s.kind === "value" || (s.kind === "rotary" && s.shape.length === 4 && s.shape[1] === NKV))) {
      numbers.append(el("div", { class: "hint", "data-gqa-note": "" }, t("grouped-query attention: {kv} key/value heads for {heads} query heads;", { kv: NKV, heads: NH }), " ",
        Array.from({ length: NKV }, (_, g) => el("span", { class: "kv-chip", style: `border-color: ${kvColor(g)}; color: ${kvColor(g)}` }, `K/V ${g} → q ${rangeText(kvHeads(g))}`)),
        " ", el("button", { class: "jump", onclick: () => { state.layer = s.layer; showTab("attention"); } }, t("see the heads in their groups →"))));
    }
    panel.append(numbers);
    if (ROPE && s.kind === "rotary") panel.append(ropeCard(s));
    if (GATE_OF.has(s.name)) panel.append(gateCard(GATE_OF.get(s.name)));

    const src = el("div", { class: "card", id: "source-panel" }, el("h3", { text: t("the code that computes it") }));
    if (!e) src.append(el("div", { class: "note", text: t("no explanation for this stage (annotate/stages.py)") }));
    else {
      const grid = el("div", { class: "sources" });
      const hf = el("div", {});
      if (e.hf.length) e.hf.forEach((snip) => hf.append(codeBlock(snip, `transformers${D.transformers ? " " + D.transformers : ""}`)));
      else hf.append(el("div", { class: "note", text: t("transformers' side: unknown") }));
      grid.append(hf);
      grid.append(e.twin ? codeBlock(e.twin, t("twin")) : el("div", { class: "note", text: t("twin: no record call found") }));
      src.append(grid);
      if (e.note) src.append(el("div", { class: "note", text: e.note }));
    }
    panel.append(src);
  }
  // ------------------------------------------------------------------------------------------
  // What a modern decoder adds: RoPE's angles (a rotary stage), the MLP's gate (a gated MLP's stage).

  function rangeText(hs) {
    const consecutive = hs.every((h, i) => !i || h === hs[i - 1] + 1);
    return consecutive && hs.length > 2 ? `${hs[0]}–${hs.at(-1)}` : hs.join(", ");
  }
  const MONO = () => getComputedStyle(document.body).getPropertyValue("--mono");
  const TAU = 2 * Math.PI;
  const angleHue = (a) => `hsl(${((a / TAU) * 360).toFixed(1)}, 62%, 86%)`;
  function period(f) {
    const p = TAU / f;
    return p < 100 ? String(Number(p.toPrecision(2))) : p < 1e4 ? String(Math.round(p / 10) * 10) : p.toExponential(0).replace("e+", "e");
  }
  function ropeCard(s) {
    const R = ROPE, d = R.dims;
    const which = s.shape.length !== 4 ? null : s.shape[1] === NH ? t("this stage: {n} heads' queries, each turned by its position's row below", { n: s.shape[1] })
      : t("this stage: {n} heads' keys, each turned by its position's row below", { n: s.shape[1] });
    const card = el("div", { class: "card rope", "data-rope": "" },
      el("h3", { text: R.paired ? t("RoPE: how far each position turns each pair of dimensions") : t("RoPE: how far each position turns each dimension") }),
      el("div", { class: "formula" }, R.paired ? t("{formula}, turning dimensions i and i + {half} of every query and key head together", { formula: `angle(p, i) = p · θ^(−2i/${d}) mod 2π`, half: d / 2 }) : "angle(p, i) mod 2π"),
      el("div", { class: "hint" }, t("Read from the recorded cos and sin ({formula}): what the model used", { formula: "angle = atan2(sin, cos)" }),
        R.theta ? t("; base θ ≈ {theta}", { theta: Number(R.theta.toPrecision(4)) }) : "", R.scale !== 1 ? t("; the hands' length |(cos, sin)| = {scale}", { scale: fmt(R.scale) }) : "",
        t(". Each hand points at (cos, sin): at 3 o'clock at position 0, turning counter-clockwise.")),
      el("div", { class: "hint rope-why" }, t("Fast pairs (left) turn about a radian per token, slow pairs (right) barely move; a query at m and a key at n are turned by m and n, so their product depends only on the difference n − m.")),
      which ? el("div", { class: "hint", text: which }) : null);
    const canvas = el("canvas", { class: "rope-map", "data-rope-map": "" });
    canvas.addEventListener("mousemove", ropeHover);
    canvas.addEventListener("mouseleave", hideTip);
    const ramp = el("canvas", { class: "ramp", width: "120", height: "1" });
    const rc = ramp.getContext("2d");
    for (let x = 0; x < 120; x++) { rc.fillStyle = angleHue((x / 119) * TAU); rc.fillRect(x, 0, 1, 1); }
    card.append(el("div", { class: "rope-wrap" }, canvas), el("div", { class: "scale" }, t("angle 0"), ramp, t("2π (colour); the hand: (cos, sin)")));
    drawRope(canvas);
    return card;
  }
  const RG = { lw: 0, top: 0, cw: 0, rh: 0, P: 0 };
  function drawRope(canvas) {
    const R = ROPE, A = R.angles, P = A[0].length;
    const font = "11px " + MONO();
    const ctx0 = canvas.getContext("2d");
    ctx0.font = font;
    const showTok = T <= 48;
    const labelW = Math.max(...[R.paired ? t("pair i →") : t("dim →"), t("position ↓"), ...(R.freq ? [t("one turn in"), t("… tokens")] : [])].map((x) => ctx0.measureText(x).width)) + 8;
    const lw = Math.max(showTok ? Math.min(130, 12 + Math.max(...D.tokens.map((tok, i) => ctx0.measureText(`${i} ${tok}`).width))) : 34, R.freq ? 96 : 0, labelW);
    const avail = Math.max(320, Math.min(1000, (document.getElementById("right").clientWidth || 900) - 64));
    const cw = Math.max(4, Math.min(26, Math.floor((avail - lw - 8) / P)));
    const rh = T <= 24 ? Math.max(cw, 14) : Math.max(3, Math.min(cw, Math.floor(520 / T)));
    const top = 30, bottom = R.freq ? 34 : 6;
    const W = lw + cw * P + 8, H = top + rh * T + bottom, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.font = font;
    Object.assign(RG, { lw, top, cw, rh, P });
    const hands = rh >= 12 && cw >= 12, r = 0.4 * Math.min(cw, rh);
    for (let p = 0; p < T; p++) {
      for (let i = 0; i < P; i++) {
        const a = A[p][i], x = lw + i * cw, y = top + p * rh;
        ctx.fillStyle = angleHue(a);
        ctx.fillRect(x, y, cw - (cw > 6 ? 1 : 0), rh - (rh > 6 ? 1 : 0));
        if (!hands) continue;
        const cx = x + (cw - 1) / 2, cy = y + (rh - 1) / 2;
        ctx.strokeStyle = "rgba(36, 41, 47, 0.25)"; ctx.lineWidth = 1;
        ctx.beginPath(); ctx.arc(cx, cy, r + 1.5, 0, TAU); ctx.stroke();
        ctx.strokeStyle = "#24292f"; ctx.lineWidth = 1.6;
        ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + r * Math.cos(a), cy - r * Math.sin(a)); ctx.stroke();
        ctx.fillStyle = "#24292f"; ctx.beginPath(); ctx.arc(cx, cy, 1.4, 0, TAU); ctx.fill();
      }
    }
    ctx.fillStyle = "#57606a";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    const every = showTok ? 1 : [1, 2, 5, 10, 20, 50, 100].find((k) => k * rh >= 16) || 200;
    for (let p = 0; p < T; p += every) ctx.fillText(showTok ? `${p} ${D.tokens[p]}` : String(p), lw - 4, top + (p + 0.5) * rh, lw - 6);
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    const step = Math.ceil(18 / cw);
    for (let i = 0; i < P; i += step) ctx.fillText(String(i), lw + (i + 0.5) * cw, top - 3);
    ctx.textAlign = "right";
    ctx.fillText(R.paired ? t("pair i →") : t("dim →"), lw - 4, top - 3);
    ctx.fillText(t("position ↓"), lw - 4, top - 17);
    if (R.freq) {
      ctx.textBaseline = "top";
      const y = top + T * rh + 6;
      ctx.fillText(t("one turn in"), lw - 4, y);
      ctx.fillText(t("… tokens"), lw - 4, y + 14);
      ctx.textAlign = "center";
      const pstep = Math.ceil(36 / cw);
      for (let i = 0; i < P; i += pstep) if (R.freq[i] > 0) ctx.fillText(period(R.freq[i]), lw + (i + 0.5) * cw, y + 6);
    }
  }
  function ropeHover(ev) {
    const r = ev.target.getBoundingClientRect();
    const p = Math.floor((ev.clientY - r.top - RG.top) / RG.rh), i = Math.floor((ev.clientX - r.left - RG.lw) / RG.cw);
    if (p < 0 || i < 0 || p >= T || i >= RG.P) return hideTip();
    const a = ROPE.angles[p][i], f = ROPE.freq ? ROPE.freq[i] : null, d = ROPE.dims;
    showTip(ev, t("position {token}", { token: tokName(p) }) + "\n" + (ROPE.paired ? t("pair {i}: dimensions {a} and {b}", { i, a: i, b: i + d / 2 }) : t("dimension {i}", { i })) +
      "\n" + t("angle {rad} rad = {deg}° (mod 2π)", { rad: a.toFixed(4), deg: ((a * 180) / Math.PI).toFixed(1) }) +
      (f ? "\n" + t("turns {f} rad per token: {product} rad", { f: fmt(f), product: `p · ${fmt(f)} = ${fmt(p * f)}` }) + "\n" + t("a full turn every {n} tokens", { n: fmt(TAU / f) }) : ""));
  }

  function gateCard(at) {
    const G = at.entry, role = at.role, ti = Math.min(state.gateToken, T - 1), thr = GATES.threshold;
    const short = (n) => (n ? D.short[n] || n : "–");
    const card = el("div", { class: "card gate", "data-gate": String(G.layer) });
    const closed = G.closed[ti];
    card.append(el("h3", { text: t("the MLP's gate (SwiGLU), layer {n}: {formula}, unit by unit", { n: G.layer, formula: "silu(G) · U" }) }),
      el("div", { class: "hint" }, t("silu(G) ({act}) multiplies U ({up}) in each of the {units} inner units: where |silu(G)| < {thr} the gate is nearly closed and the unit passes almost nothing of U on to the down projection, whatever U is. One token's {units} values:", { act: short(G.act), up: short(G.up), units: G.units, thr })));
    const choose = (i) => { state.gateToken = Math.max(0, Math.min(T - 1, i)); card.replaceWith(gateCard(at)); };
    card.append(el("div", { class: "pick gate-pick" }, el("span", { text: t("token") }), T <= 24
      ? D.tokens.map((tok, i) => el("button", { class: i === ti ? "on" : null, "data-gate-token": String(i), title: t("token {i}", { i }), onclick: () => choose(i) }, tok))
      : [el("button", { title: t("the token before"), onclick: () => choose(ti - 1) }, "‹"),
         el("select", { "data-gate-token-select": "", onchange: (ev) => choose(+ev.target.value) }, D.tokens.map((tok, i) => el("option", { value: String(i), selected: i === ti }, `${i}: ${tok}`))),
         el("button", { title: t("the token after"), onclick: () => choose(ti + 1) }, "›")]));
    card.append(el("div", { class: "gate-sum", "data-gate-closed": String(closed) }, withNodes(t("token {i} “{token}”: the gate nearly closes {share} of the {units} units ({n}, {cond})"),
      { i: String(ti), token: D.tokens[ti], share: el("b", { text: pct(closed) }), units: String(G.units), n: String(Math.round(closed * G.units)), cond: `|silu(G)| < ${thr}` })));
    const series = [["act", t("silu(G), the gate"), G.act], ["up", "U", G.up], ["product", "silu(G) · U", G.product]];
    card.append(el("div", { class: "gate-row" }, series.map(([key, title, name]) => el("div", {
      class: "gate-h" + (role === key || (role === "gate" && key === "act") ? " on" : ""), "data-gate-series": key, title: t("{stage}: click to open it", { stage: name }), onclick: () => select(name),
    }, el("div", { class: "gate-h-title" }, title, " ", el("code", { text: short(name) })), gateHist(G.hist[key][ti], G.range[key], key === "act" ? thr : null)))));
    card.append(closedMap(at, ti));
    return card;
  }
  function gateHist(counts, range, band) {
    const W = 250, H = 96, m = { l: 4, r: 4, t: 6, b: 18 }, [lo, hi] = typeof range[0] === "number" ? range : [0, 1];
    const n = counts.length, top = Math.max(...counts, 1), bw = (W - m.l - m.r) / n;
    const x = (v) => m.l + ((W - m.l - m.r) * (v - lo)) / ((hi - lo) || 1);
    const g = sv("svg", { class: "hist", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": t("histogram over the inner units") });
    if (band !== null && lo < band && hi > -band) {
      const a = x(Math.max(lo, -band)), b = x(Math.min(hi, band));
      g.append(sv("rect", { class: "closed-band", x: a, y: m.t, width: Math.max(2, b - a), height: H - m.t - m.b }, sv("title", { text: t("{cond}: nearly closed", { cond: `|silu(G)| < ${band}` }) })));
    }
    counts.forEach((c, i) => {
      const h = c ? Math.max(1, ((H - m.t - m.b) * c) / top) : 0;
      const a = lo + ((hi - lo) * i) / n, b = lo + ((hi - lo) * (i + 1)) / n;
      g.append(sv("rect", { class: "bar", x: m.l + i * bw + 0.5, y: H - m.b - h, width: Math.max(1, bw - 1), height: h }, sv("title", { text: t("{from} … {to}: {n} units", { from: fmt(a), to: fmt(b), n: c }) })));
    });
    g.append(sv("line", { x1: m.l, x2: W - m.r, y1: H - m.b + 0.5, y2: H - m.b + 0.5, stroke: "#8c959f" }));
    g.append(sv("text", { x: m.l, y: H - 5, text: fmt(lo) }));
    g.append(sv("text", { x: W - m.r, y: H - 5, "text-anchor": "end", text: fmt(hi) }));
    if (lo < 0 && hi > 0) {
      const z = x(0);
      g.append(sv("line", { x1: z, x2: z, y1: m.t, y2: H - m.b + 4, stroke: "#cf222e", "stroke-dasharray": "2 2" }));
      if (z - m.l > 34 && W - m.r - z > 34) g.append(sv("text", { x: z, y: H - 5, "text-anchor": "middle", text: "0" }));
    }
    return g;
  }
  function closedMap(at, ti) {
    const layers = GATES.layers, role = at.role;
    const showTok = T <= 32;
    const lw = showTok ? Math.min(110, 16 + 7 * Math.max(...D.tokens.map((tok, i) => `${i} ${tok}`.length))) : 30;
    const cw = Math.max(6, Math.min(22, Math.floor(640 / layers.length))), rh = T <= 32 ? 14 : Math.max(3, Math.floor(360 / T));
    const top = 16, W = lw + cw * layers.length + 4, H = top + rh * T + 4;
    const most = Math.max(...layers.flatMap((g) => g.closed), 1e-9);
    const g = sv("svg", { class: "gate-map", "data-gate-map": "", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": t("share of closed gates per layer and token") });
    layers.forEach((G, j) => {
      if (j % 5 === 0 || j === layers.length - 1) g.append(sv("text", { x: lw + (j + 0.5) * cw, y: top - 4, "text-anchor": "middle", text: String(G.layer) }));
      for (let i = 0; i < T; i++) {
        const v = G.closed[i], f = v / most;
        const on = G.layer === at.entry.layer && i === ti;
        g.append(sv("rect", {
          x: lw + j * cw, y: top + i * rh, width: cw - 1, height: rh - (rh > 4 ? 1 : 0), fill: `rgb(${Math.round(255 - 48 * f)}, ${Math.round(250 - 160 * f)}, ${Math.round(240 - 200 * f)})`,
          class: on ? "on" : null, "data-gate-cell": `${G.layer},${i}`,
          onclick: () => { state.gateToken = i; select(G[role] || G.act); },
        }, sv("title", { text: t("layer {n}, {token}: {share} of the gates nearly closed", { n: G.layer, token: tokName(i), share: pct(v) }) })));
      }
    });
    for (let i = 0; i < T; i += showTok ? 1 : 8) g.append(sv("text", { x: lw - 4, y: top + (i + 0.5) * rh + 3.5, "text-anchor": "end", text: showTok ? `${i} ${D.tokens[i]}` : String(i) }));
    return el("div", { class: "gate-map-box" },
      el("div", { class: "hint", text: t("Share of nearly closed gates in every layer (columns) for every token (rows); darker: more closed (darkest {most}). Click one to open it.", { most: pct(most) }) }), g);
  }

  function select(name, opts) {
    if (!STAGE.has(name)) return;
    state.stage = name;
    document.querySelectorAll(".stage.selected").forEach((b) => b.classList.remove("selected"));
    const box = document.querySelector(`.stage[data-stage="${CSS.escape(name)}"]`);
    if (LAYER_OF.has(name)) openLayer(LAYER_OF.get(name), true);
    if (box) {
      box.classList.add("selected");
      if (!(opts && opts.noScroll)) box.scrollIntoView({ block: opts && opts.center ? "center" : "nearest" });
    }
    stagePanel();
    if (!(opts && opts.keepTab)) showTab("stage");
  }

  // ------------------------------------------------------------------------------------------
  // Attention: one head large, beside it the same head as lines between the tokens; below, every head of every layer.

  function attentionPanel() {
    const p = document.getElementById("attention-panel");
    const layerPick = el("div", { class: "pick", id: "layer-pick" }, el("span", { text: t("layer") }),
      Array.from({ length: L }, (_, l) => el("button", { "data-pick-layer": String(l), onclick: () => pick(l, state.head) }, String(l))));
    const headButton = (h) => el("button", { "data-pick-head": String(h), onclick: () => pick(state.layer, h) }, String(h));
    const headPick = el("div", { class: "pick", id: "head-pick" }, el("span", { text: t("head") }),
      GQA ? Array.from({ length: NKV }, (_, g) => el("span", { class: "kv-group", "data-kv-group": String(g), style: `border-color: ${kvColor(g)}`, title: t("query heads {heads} share key/value head {g}", { heads: rangeText(kvHeads(g)), g }) },
        el("i", { style: `color: ${kvColor(g)}`, text: `K/V ${g}` }), kvHeads(g).map(headButton)))
        : Array.from({ length: NH }, (_, h) => headButton(h)),
      el("label", {}, el("input", { type: "checkbox", checked: state.scaleHead, onchange: (ev) => { state.scaleHead = ev.target.checked; redrawAll(); } }), " ", t("scale each head to its own maximum")));
    const ramp = el("canvas", { class: "ramp", width: "120", height: "1" });
    const rc = ramp.getContext("2d"), ri = rc.createImageData(120, 1);
    for (let x = 0; x < 120; x++) { const i = Math.round((x / 119) * 255) * 3; ri.data.set([LUT[i], LUT[i + 1], LUT[i + 2], 255], x * 4); }
    rc.putImageData(ri, 0, 0);
    const scale = el("div", { class: "scale" }, "0", ramp, el("span", { id: "scale-top", text: t("head max") }), D.causal ? " · " + t("grey: the future, masked") : null);
    p.append(el("div", { class: "card" },
      el("div", { class: "att-controls" }, layerPick, headPick),
      el("div", { class: "hint" }, t("rows: the query token (who looks), columns: the key token (who is looked at); each row sums to 1. Hover for values; ← → heads, ↑ ↓ layers.")),
      GQA ? gqaLegend() : null,
      el("div", { class: "att-main" },
        el("div", {}, el("h3", { id: "big-title" }), GQA ? el("div", { class: "hint kv-note", id: "big-kv" }) : null, el("canvas", { id: "big" }), scale),
        el("div", {}, el("h3", { text: t("query → key, lines weighted by attention") }), el("div", { class: "hint", id: "bv-hint", text: t("hover a token to see only its lines; click to pin") }), el("div", { class: "bv-scroll" }, el("canvas", { id: "bv" }))))));
    // Grouped-query attention: the heads in bands, one per shared key/value head (a gap between bands).
    const cell = `minmax(0, ${T > 64 ? 84 : 64}px)`, bands = GQA ? Array.from({ length: NKV }, (_, g) => kvHeads(g)) : [Array.from({ length: NH }, (_, h) => h)];
    const order = bands.flat(), gap = (h) => GQA && order.indexOf(h) > 0 && kvOf(order[order.indexOf(h) - 1]) !== kvOf(h);
    const columns = GQA ? bands.map((b) => `repeat(${b.length}, ${cell})`).join(" 10px ") : `repeat(${NH}, ${cell})`;
    const grid = el("div", { class: "heads" + (GQA ? " grouped" : ""), style: `grid-template-columns: 34px ${columns}` });
    if (GQA) {
      grid.append(el("div", {}));
      bands.forEach((b, g) => {
        if (g) grid.append(el("div", {}));
        grid.append(el("div", { class: "kv-band", "data-kv-group": String(g), style: `grid-column: span ${b.length}; border-color: ${kvColor(g)}; color: ${kvColor(g)}`, title: t("query heads {heads} read key/value head {g}", { heads: rangeText(b), g }) }, t("K/V head {g}", { g })));
      });
    }
    grid.append(el("div", {}));
    for (const h of order) {
      if (gap(h)) grid.append(el("div", {}));
      grid.append(el("div", { class: "lab", style: "text-align:center" + (GQA ? `; color: ${kvColor(kvOf(h))}` : ""), text: `h${h}` }));
    }
    const io = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const en of entries) if (en.isIntersecting && !en.target.dataset.drawn) paintHead(en.target, +en.target.dataset.layer, +en.target.dataset.head);
    }, { rootMargin: "200px" }) : null;
    for (let l = 0; l < L; l++) {
      grid.append(el("div", { class: "lab", text: `L${l}` }));
      for (const h of order) {
        if (gap(h)) grid.append(el("div", {}));
        const c = el("canvas", { width: String(T), height: String(T), "data-layer": String(l), "data-head": String(h), "data-kv-group": GQA ? String(kvOf(h)) : null,
          title: GQA ? t("layer {l}, head {h} (K/V head {g})", { l, h, g: kvOf(h) }) : t("layer {l}, head {h}", { l, h }), style: GQA ? `border-color: ${kvColor(kvOf(h))}` : null });
        c.addEventListener("click", () => pick(l, h));
        c.addEventListener("mousemove", (ev) => { const r = c.getBoundingClientRect(); cellTip(ev, l, h, Math.floor(((ev.clientY - r.top) / r.height) * T), Math.floor(((ev.clientX - r.left) / r.width) * T)); });
        c.addEventListener("mouseleave", hideTip);
        if (io) io.observe(c); else paintHead(c, l, h);
        grid.append(c);
      }
    }
    p.append(el("div", { class: "card" }, el("h3", { text: GQA ? t("every head: {layers} layers × {heads} heads (click one to look closer), in bands by the key/value head they share", { layers: L, heads: NH })
      : t("every head: {layers} layers × {heads} heads (click one to look closer)", { layers: L, heads: NH }) }), grid));
    const big = document.getElementById("big");
    big.addEventListener("mousemove", bigHover);
    big.addEventListener("mouseleave", () => { hideTip(); drawBig(); });
    const bv = document.getElementById("bv");
    bv.addEventListener("mousemove", bvHover);
    bv.addEventListener("mouseleave", () => { if (state.focus) { state.focus = null; drawBertviz(); } });
    bv.addEventListener("click", () => { state.pinned = state.pinned ? null : state.focus; drawBertviz(); });
  }
  function gqaLegend() {
    const values = { heads: NH, kv: NKV, each: NH / NKV, layer: GQA.layer };
    return el("div", { class: "hint gqa-legend", "data-gqa": "" },
      GQA.checked ? t("grouped-query attention: {heads} query heads share {kv} key/value heads, {each} each: each head's scores are its rotated Q times exactly this K (checked in layer {layer}).", values)
        : t("grouped-query attention: {heads} query heads share {kv} key/value heads, {each} each (repeat_kv's order).", values), " ",
      Array.from({ length: NKV }, (_, g) => el("span", { class: "kv-chip", "data-kv-group": String(g), style: `border-color: ${kvColor(g)}; color: ${kvColor(g)}` }, t("heads {heads} → K/V {g}", { heads: rangeText(kvHeads(g)), g }))));
  }
  function cellTip(ev, l, h, q, k) {
    if (q < 0 || k < 0 || q >= T || k >= T) return hideTip();
    showTip(ev, (GQA ? t("layer {l} head {h} (K/V head {g})", { l, h, g: kvOf(h) }) : t("layer {l} head {h}", { l, h })) + "\n" + t("query {token}", { token: tokName(q) }) + "\n" + t("key   {token}", { token: tokName(k) }) + "\n"
      + (masked(q, k) ? t("masked (the future)") : t("attention {w}", { w: weight(l, h, q, k).toFixed(4) })));
  }
  function pick(l, h) {
    state.layer = Math.max(0, Math.min(L - 1, l));
    state.head = Math.max(0, Math.min(NH - 1, h));
    state.focus = state.pinned = null;
    document.querySelectorAll("[data-pick-layer]").forEach((b) => b.classList.toggle("on", +b.dataset.pickLayer === state.layer));
    document.querySelectorAll("[data-pick-head]").forEach((b) => b.classList.toggle("on", +b.dataset.pickHead === state.head));
    document.querySelectorAll(".heads canvas.on").forEach((c) => c.classList.remove("on"));
    const thumb = document.querySelector(`.heads canvas[data-layer="${state.layer}"][data-head="${state.head}"]`);
    if (thumb) { thumb.classList.add("on"); if (!thumb.dataset.drawn) paintHead(thumb, state.layer, state.head); }
    drawBig();
    drawBertviz();
  }
  function redrawAll() {
    document.querySelectorAll(".heads canvas").forEach((c) => { delete c.dataset.drawn; });
    document.querySelectorAll(".heads canvas").forEach((c) => { const r = c.getBoundingClientRect(); if (r.bottom > -200 && r.top < window.innerHeight + 200) paintHead(c, +c.dataset.layer, +c.dataset.head); });
    drawBig();
    drawBertviz();
  }
  const BIG = { x0: 0, y0: 0, size: 0 };
  function drawBig(hq, hk) {
    const canvas = document.getElementById("big");
    const { layer: l, head: h } = state;
    document.getElementById("big-title").textContent = t("layer {l}, head {h}: query × key", { l, h });
    if (GQA) {
      const others = kvHeads(kvOf(h)).filter((x) => x !== h), g = kvOf(h), list = others.join(t(" and "));
      document.getElementById("big-kv").textContent = !others.length ? t("K/V head {g}", { g })
        : others.length > 1 ? t("K/V head {g}, shared with heads {others}", { g, others: list }) : t("K/V head {g}, shared with head {others}", { g, others: list });
      document.getElementById("big-kv").style.color = kvColor(kvOf(h));
    }
    document.getElementById("scale-top").textContent = state.scaleHead ? t("{max} (this head's max)", { max: maxOf(l, h).toFixed(3) }) : "1";
    const labels = T <= 48;
    const ctx0 = canvas.getContext("2d");
    ctx0.font = "11px " + getComputedStyle(document.body).getPropertyValue("--mono");
    const lw = labels ? Math.min(110, 8 + Math.max(...D.tokens.map((tok) => ctx0.measureText(tok).width))) : 28;
    const avail = Math.max(240, Math.min(440, (document.getElementById("right").clientWidth || 900) - 520));
    const size = Math.floor(avail / T) * T || avail;
    const W = lw + size + 4, H = lw + size + 4, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(headImage(l, h), lw, lw, size, size);
    Object.assign(BIG, { x0: lw, y0: lw, size });
    ctx.fillStyle = "#57606a";
    ctx.font = "11px " + getComputedStyle(document.body).getPropertyValue("--mono");
    const cell = size / T;
    if (labels) {
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      for (let i = 0; i < T; i++) { ctx.fillStyle = i === hq ? "#0969da" : "#57606a"; ctx.fillText(D.tokens[i], lw - 4, lw + (i + 0.5) * cell, lw - 6); }
      ctx.save();
      ctx.translate(lw, lw);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      for (let j = 0; j < T; j++) { ctx.fillStyle = j === hk ? "#0969da" : "#57606a"; ctx.fillText(D.tokens[j], 4, (j + 0.5) * cell, lw - 6); }
      ctx.restore();
    } else {
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i < T; i += 16) ctx.fillText(String(i), lw - 3, lw + (i + 0.5) * cell);
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      for (let j = 0; j < T; j += 16) ctx.fillText(String(j), lw + (j + 0.5) * cell, lw - 2);
    }
    if (hq !== undefined) {
      ctx.strokeStyle = "#cf222e";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(lw, lw + hq * cell, size, cell);
      ctx.strokeRect(lw + hk * cell, lw, cell, size);
    }
  }
  function bigHover(ev) {
    const r = ev.target.getBoundingClientRect();
    const x = ev.clientX - r.left - BIG.x0, y = ev.clientY - r.top - BIG.y0;
    if (x < 0 || y < 0 || x >= BIG.size || y >= BIG.size) { hideTip(); return; }
    const q = Math.floor((y / BIG.size) * T), k = Math.floor((x / BIG.size) * T);
    drawBig(q, k);
    cellTip(ev, state.layer, state.head, q, k);
  }
  const BV = { rh: 18, xl: 0, xr: 0, top: 24 };
  function drawBertviz() {
    const canvas = document.getElementById("bv");
    const { layer: l, head: h } = state;
    const focus = state.pinned || state.focus;
    const ctx0 = canvas.getContext("2d");
    const font = "12px " + getComputedStyle(document.body).getPropertyValue("--mono");
    ctx0.font = font;
    const tw = Math.min(150, 10 + Math.max(...D.tokens.map((tok, i) => ctx0.measureText(tok + " " + i).width)));
    const rh = T > 64 ? 14 : 18, gap = 190, top = 24;
    const pad = 46; // room for a weight beside each token when one is focused
    const W = pad + tw * 2 + gap + pad, H = top + T * rh + 8, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.font = font;
    const xl = pad + tw, xr = xl + gap;
    Object.assign(BV, { rh, xl, xr, top, tw });
    const scale = state.scaleHead ? 1 / maxOf(l, h) : 1;
    const y = (i) => top + (i + 0.5) * rh;
    ctx.fillStyle = "#57606a";
    ctx.textAlign = "center";
    ctx.fillText(t("query"), xl - tw / 2, 14);
    ctx.fillText(t("key"), xr + tw / 2, 14);
    ctx.strokeStyle = headColor(h);
    for (let q = 0; q < T; q++) {
      if (focus && focus.side === "q" && focus.i !== q) continue;
      for (let k = 0; k < T; k++) {
        if (focus && focus.side === "k" && focus.i !== k) continue;
        if (masked(q, k)) continue;
        const w = Math.min(1, weight(l, h, q, k) * scale);
        if (w < 0.01) continue;
        ctx.globalAlpha = focus ? Math.max(0.08, w) : w * 0.9;
        ctx.lineWidth = focus ? 1 + 3 * w : 1 + 1.5 * w;
        ctx.beginPath();
        ctx.moveTo(xl + 4, y(q));
        ctx.lineTo(xr - 4, y(k));
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    ctx.textBaseline = "middle";
    for (let i = 0; i < T; i++) {
      const tok = D.tokens[i];
      const onQ = focus && focus.side === "q" && focus.i === i, onK = focus && focus.side === "k" && focus.i === i;
      if (onQ) { ctx.fillStyle = "#ddf4ff"; ctx.fillRect(xl - tw, y(i) - rh / 2, tw, rh); }
      if (onK) { ctx.fillStyle = "#ddf4ff"; ctx.fillRect(xr, y(i) - rh / 2, tw, rh); }
      let wk = null, wq = null;
      if (focus && focus.side === "q" && !masked(focus.i, i)) wk = weight(l, h, focus.i, i);
      if (focus && focus.side === "k" && !masked(i, focus.i)) wq = weight(l, h, i, focus.i);
      if (wk !== null) {
        ctx.fillStyle = headColor(h); ctx.globalAlpha = 0.25; ctx.fillRect(xr, y(i) - rh / 2 + 2, tw * Math.min(1, wk * scale), rh - 4); ctx.globalAlpha = 1;
        ctx.fillStyle = "#57606a"; ctx.textAlign = "left"; ctx.fillText(wk.toFixed(3), xr + tw + 4, y(i));
      }
      if (wq !== null) {
        ctx.fillStyle = headColor(h); ctx.globalAlpha = 0.25; const bw = tw * Math.min(1, wq * scale); ctx.fillRect(xl - bw, y(i) - rh / 2 + 2, bw, rh - 4); ctx.globalAlpha = 1;
        ctx.fillStyle = "#57606a"; ctx.textAlign = "right"; ctx.fillText(wq.toFixed(3), xl - tw - 4, y(i));
      }
      ctx.fillStyle = "#1f2328";
      ctx.textAlign = "right";
      ctx.fillText(tok, xl - 4, y(i), tw - 8);
      ctx.textAlign = "left";
      ctx.fillText(tok, xr + 4, y(i), tw - 8);
    }
    const focusText = focus && (focus.side === "q" ? t("query {token}: where it looks", { token: tokName(focus.i) }) : t("key {token}: who looks at it", { token: tokName(focus.i) }));
    document.getElementById("bv-hint").textContent = focus
      ? (state.pinned ? t("{what} (pinned; click to release)", { what: focusText }) : focusText)
      : t("hover a token to see only its lines; click to pin");
  }
  function bvHover(ev) {
    if (state.pinned) return;
    const r = ev.target.getBoundingClientRect();
    const x = ev.clientX - r.left, yy = ev.clientY - r.top;
    const i = Math.floor((yy - BV.top) / BV.rh);
    let focus = null;
    if (i >= 0 && i < T) {
      if (x <= BV.xl) focus = { side: "q", i };
      else if (x >= BV.xr) focus = { side: "k", i };
    }
    const same = (a, b) => (a === b) || (a && b && a.side === b.side && a.i === b.i);
    if (!same(focus, state.focus)) { state.focus = focus; drawBertviz(); }
  }

  // ------------------------------------------------------------------------------------------
  // The residual stream: |h| of each token at each point of the stream.

  function streamPanel() {
    const p = document.getElementById("stream-panel");
    const S = D.stream, P = S.labels.length;
    // The last point a LayerNorm after the layers (GPT-2's ln_f): see explorer.py's stream().
    const finalNorm = P > 0 && STAGE.has(S.stages.at(-1)) && STAGE.get(S.stages.at(-1)).layer === null && isNorm(S.stages.at(-1));
    const card = el("div", { class: "card stream" }, el("h3", { text: t("the residual stream: |h| per token, along the stream") }),
      el("div", { class: "hint", text: t("The L2 norm of each token's hidden vector at each point of the stream: after the embeddings, after each ⊕ ({where}){final}. One line per token; the dashed line is their mean. Click a point's name to open that stage.", {
        where: D.flow.norm === "post-LN" ? t("post-LN: after the {norm} that follows it", { norm: NORM_WORD }) : t("pre-LN: the stream as it is added to"),
        final: finalNorm ? t(", and after the final {norm}", { norm: NORM_WORD }) : "" }) }));
    p.append(card);
    if (P === 0) { card.append(el("div", { class: "note", text: t("no stream states recorded") })); return; }
    const W = 900, H = 380, m = { l: 76, r: 18, t: 12, b: 76 };
    let ymax = 0;
    for (const row of S.norms) for (const v of row) ymax = Math.max(ymax, v);
    ymax = ymax * 1.05 || 1;
    const x = (i) => m.l + (P === 1 ? (W - m.l - m.r) / 2 : (i * (W - m.l - m.r)) / (P - 1));
    const y = (v) => m.t + (1 - v / ymax) * (H - m.t - m.b);
    const g = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("norm of each token's hidden state along the residual stream") });
    const grid = sv("g", { class: "grid" });
    const step = niceStep(ymax / 5);
    for (let v = 0; v <= ymax; v += step) {
      grid.append(sv("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
      g.append(sv("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", text: fmt(v) }));
    }
    for (let i = 0; i < P; i++) grid.append(sv("line", { x1: x(i), x2: x(i), y1: m.t, y2: H - m.b }));
    g.prepend(grid);
    g.append(sv("text", { x: 24, y: m.t + (H - m.t - m.b) / 2, transform: `rotate(-90 24 ${m.t + (H - m.t - m.b) / 2})`, "text-anchor": "middle", text: "|h|" }));
    // Rotated 40°, a name needs ~17 units of x: with many points (a 30-layer model), name every k-th (hover a line for the rest).
    const every = P > 1 ? Math.ceil(17 / ((W - m.l - m.r) / (P - 1))) : 1;
    S.labels.forEach((lab, i) => {
      if (i !== P - 1 && (i % every || P - 1 - i < every)) return;
      g.append(sv("text", { class: "xl", x: x(i), y: H - m.b + 14, transform: `rotate(-40 ${x(i)} ${H - m.b + 14})`, "text-anchor": "end", text: lab, onclick: () => select(S.stages[i]) }, sv("title", { text: S.stages[i] })));
    });
    const lines = [];
    for (let ti = 0; ti < T; ti++) {
      const pts = S.norms.map((row, i) => `${x(i).toFixed(1)},${y(row[ti]).toFixed(1)}`).join(" ");
      const pl = sv("polyline", { class: "tokline", points: pts, stroke: tokColor(ti), "data-token": String(ti) }, sv("title", { text: `${tokName(ti)}: ` + S.norms.map((row) => fmt(row[ti])).join(" → ") }));
      pl.addEventListener("mouseenter", () => focusToken(g, ti));
      pl.addEventListener("mouseleave", () => focusToken(g, null));
      lines.push(pl);
    }
    g.append(...lines);
    const mean = S.norms.map((row) => row.reduce((a, b) => a + b, 0) / T);
    g.append(sv("polyline", { class: "mean", points: mean.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }, sv("title", { text: t("mean:") + GAP + mean.map(fmt).join(" → ") })));
    card.append(g);
    card.append(el("div", { class: "tokkey" }, D.tokens.map((tok, i) => {
      const chip = el("span", { class: "tok", style: `border-left-color: ${tokColor(i)}` }, tok, el("sub", { text: String(i) }));
      chip.addEventListener("mouseenter", () => focusToken(g, i));
      chip.addEventListener("mouseleave", () => focusToken(g, null));
      return chip;
    })));
  }
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const f of [1, 2, 2.5, 5, 10]) if (raw <= f * p) return f * p;
    return 10 * p;
  }
  function focusToken(svg, ti) {
    svg.classList.toggle("focus", ti !== null);
    svg.querySelectorAll("polyline.tokline.hl").forEach((pl) => pl.classList.remove("hl"));
    document.querySelectorAll("#tokens .tok.hl").forEach((c) => c.classList.remove("hl"));
    if (ti === null) return;
    const pl = svg.querySelector(`polyline[data-token="${ti}"]`);
    pl.classList.add("hl");
    pl.parentNode.append(pl); // on top
    const chip = document.querySelectorAll("#tokens .tok")[ti];
    if (chip) chip.classList.add("hl");
  }

  // ------------------------------------------------------------------------------------------
  // Predictions.

  function predRows(list) {
    return list.map((r) => el("div", { class: "pred" }, el("span", { class: "t", text: r.name, title: r.title || "" }), el("div", { class: "bar" }, el("i", { style: `width: ${(100 * r.prob).toFixed(2)}%` })), el("span", { class: "p", text: pct(r.prob) })));
  }
  function predictionsPanel() {
    const p = document.getElementById("predictions-panel");
    const card = el("div", { class: "card preds" });
    p.append(card);
    let any = false;
    if (D.predictions) {
      any = true;
      card.append(el("h3", { text: t("next token after “{text}”", { text: D.tokens.slice(-6).join("") }) }),
        ...predRows(D.predictions.map((x) => ({ name: x.display, prob: x.prob, title: `id ${x.id} · ${x.token}` }))));
    }
    if (D.mask_predictions) {
      any = true;
      if (!D.mask_predictions.length) card.append(el("div", { class: "note", text: t("a masked language model: put [MASK] (or <mask>) in the text to see its answers") }));
      for (const m of D.mask_predictions) {
        const from = Math.max(0, m.position - 4), to = Math.min(T, m.position + 3);
        const ctx = (from > 0 ? "… " : "") + D.tokens.slice(from, to).join(" ") + (to < T ? " …" : "");
        card.append(el("h3", { text: t("{token} at token {pos} ({context})", { token: D.tokens[m.position], pos: m.position, context: ctx }) }),
          ...predRows(m.top.map((x) => ({ name: x.display, prob: x.prob, title: `id ${x.id}` }))));
      }
    }
    if (D.labels) {
      any = true;
      card.append(el("h3", { text: t("labels") }), ...predRows(D.labels.map((x) => ({ name: x.label, prob: x.prob }))));
    }
    if (D.replaced) {
      any = true;
      card.append(el("h3", { text: t("probability that each token was replaced") }), ...predRows(D.replaced.map((x) => ({ name: `${x.position}:${x.token}`, prob: x.prob }))));
    }
    if (!any) card.append(el("div", { class: "note", text: t("{model} has no head: it outputs the hidden states ({outputs}), nothing to predict. A checkpoint with a head ({examples}) shows its predictions here.", {
      model: D.model_class, outputs: "last_hidden_state" + (D.flow.after.some(([n]) => kindOf(n) === "pool") ? " " + t("and the pooled [CLS] vector") : ""),
      examples: "…ForMaskedLM, GPT2LMHeadModel, …ForSequenceClassification" }) }));
  }

  // ------------------------------------------------------------------------------------------
  // The logit lens (annotate trace --lens): each layer's output read through the final norm and the
  // head; a row per layer, a column per position, each cell its top token coloured by probability.

  const LENS = D.lens || null;
  const probColor = (p) => { const i = Math.round(Math.min(1, Math.max(0, p)) * 255) * 3; return `rgb(${LUT[i]}, ${LUT[i + 1]}, ${LUT[i + 2]})`; };
  // From which layer on the final answer stays top-1 (to the last layer), per position.
  // A predicted token as the page shows it: a byte piece that is the text's own token there (the
  // next one for a causal LM, the one at the position for a masked LM) as that piece of its
  // character ("都 2/2"), else as the terminal shows it ("␣Paris", "<83>").
  const lensName = (c, i) => {
    const j = LENS.reads === "next-token" ? i + 1 : i;
    return j < T && D.pieces && D.pieces[j] && c.id === D.ids[j] ? D.tokens[j] : c.display;
  };
  const lensStays = (i) => { let l = LENS.layers.length - 1; while (l > 0 && LENS.top[l - 1][i][0].id === LENS.final[i]) l--; return l; };
  function lensPanel() {
    const p = document.getElementById("lens-panel"), Z = LENS, NLZ = Z.layers.length, causal = Z.reads === "next-token";
    const headPart = causal ? t("the LM head ({modules})", { modules: Z.head.join(", ") })
      : t("the whole MLM head ({modules}: its transform, dense, activation and LayerNorm, then its decoder)", { modules: Z.head.join(", ") });
    const through = Z.norms.length ? t("the final norm ({norms}), then {head}", { norms: Z.norms.join(", "), head: headPart }) : headPart;
    const ramp = el("canvas", { class: "ramp", width: "120", height: "1" });
    const rc = ramp.getContext("2d");
    for (let x = 0; x < 120; x++) { rc.fillStyle = probColor(x / 119); rc.fillRect(x, 0, 1, 1); }
    p.append(el("div", { class: "card" },
      el("h3", { text: causal ? t("logit lens: what each layer would predict next") : t("logit lens: what each layer would put at each position") }),
      el("div", { class: "hint" }, t("Each layer's output put through {through}: {cells} The last row is the model's own logits, bit for bit. Hover or click a cell for its top {k}.", {
        through, k: Z.k,
        cells: causal ? t("in each cell, the likeliest next token after that position had the model stopped after that layer, with its probability.")
          : t("in each cell, the token the MLM head would put at that position from that layer's output, with its probability (the head learned to read the last layer only: earlier rows show what it makes of earlier layers).") })),
      el("div", { class: "scale lens-key" }, t("probability 0"), ramp, "1", el("span", { class: "lk final" }, t("bold")), " ", t("already the final answer"), el("span", { class: "lk first" }, t("ringed")), " ", t("where the final answer first becomes top-1"))));
    const head = el("tr", {}, el("th", { class: "corner", text: causal ? t("layer \\ after") : t("layer \\ at") }),
      D.tokens.map((tok, i) => el("th", { class: "pos", title: t("token {i} · {token}", { i, token: D.vocab_tokens[i] }) }, el("span", { class: "pt", text: tok }), el("sub", { text: String(i) }))));
    const body = [];
    for (let l = 0; l < NLZ; l++) {
      const row = el("tr", { "data-lens-row": String(Z.layers[l]) }, el("th", { class: "lay", text: l === NLZ - 1 ? t("{layer} (out)", { layer: Z.layers[l] }) : String(Z.layers[l]) }));
      for (let i = 0; i < T; i++) {
        const top = Z.top[l][i][0], fin = top.id === Z.final[i], first = Z.first[i] === l;
        const cell = el("td", {
          class: "lc" + (fin ? " final" : "") + (first ? " first" : ""), "data-lens-cell": `${Z.layers[l]},${i}`, "data-prob": String(top.prob),
          "data-final": fin ? "" : null, "data-lens-first": first ? "" : null, tabindex: "0",
          style: `background: ${probColor(top.prob)}; color: ${top.prob > 0.5 ? "#fff" : "var(--ink)"}`,
          onclick: () => lensDetail(l, i), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); lensDetail(l, i); } },
          onmousemove: (ev) => showTip(ev, (causal ? t("layer {n}, after {token}", { n: Z.layers[l], token: tokName(i) }) : t("layer {n}, at {token}", { n: Z.layers[l], token: tokName(i) })) + "\n"
            + Z.top[l][i].map((c, r) => `${r + 1}. ${lensName(c, i)}  ${pct(c.prob)}`).join("\n") + (first ? "\n" + t("the final answer's first layer as top-1") : "")),
          onmouseleave: hideTip,
        }, el("span", { class: "lt", text: lensName(top, i) }), el("span", { class: "lp", text: pct(top.prob) }));
        row.append(cell);
      }
      body.push(row);
    }
    const rows = [el("thead", {}, head), el("tbody", {}, body)];
    if (causal) rows.push(el("tfoot", {}, el("tr", { class: "actual" }, el("th", { class: "lay", text: t("the text") }),
      D.tokens.map((tok, i) => el("td", { title: i + 1 < T ? t("the text goes on with token {i}", { i: i + 1 }) : t("the end of the text") }, i + 1 < T ? D.tokens[i + 1] : "–")))));
    p.append(el("div", { class: "card lens-detail", id: "lens-detail" }),
      el("div", { class: "card" }, el("div", { class: "lens-scroll" }, el("table", { class: "lens-grid", "data-lens": "" }, rows))));
    lensDetail(NLZ - 1, T - 1); // the model's own answer after the last token
  }
  function lensDetail(l, i) {
    const Z = LENS, causal = Z.reads === "next-token", card = document.getElementById("lens-detail");
    document.querySelectorAll(".lens-grid td.on").forEach((c) => c.classList.remove("on"));
    const cell = document.querySelector(`[data-lens-cell="${Z.layers[l]},${i}"]`);
    if (cell) cell.classList.add("on");
    const fin = Z.final[i], answer = Z.top.at(-1)[i][0], stays = lensStays(i);
    const last = l === Z.layers.length - 1, values = { n: Z.layers[l], token: tokName(i), k: Z.k };
    const title = causal ? (last ? t("layer {n} (the model's output), the next token after {token}: its top {k}", values) : t("layer {n}, the next token after {token}: its top {k}", values))
      : (last ? t("layer {n} (the model's output), position {token}: its top {k}", values) : t("layer {n}, position {token}: its top {k}", values));
    card.replaceChildren(el("h3", { text: title }),
      el("div", { class: "lens-top" }, Z.top[l][i].map((c, r) => el("span", { class: "lens-cand" + (c.id === fin ? " final" : ""), title: `id ${c.id} · ${c.display}` + (c.id === fin ? " · " + t("the final answer") : "") },
        el("span", { class: "r", text: `${r + 1}.` }), el("span", { class: "t", text: lensName(c, i) }), el("span", { class: "bar" }, el("i", { style: `width: ${(100 * c.prob).toFixed(1)}%` })), el("span", { class: "p", text: pct(c.prob) })))),
      el("div", { class: "hint", "data-lens-summary": "" },
        stays === Z.first[i] ? t("The final answer here is “{answer}” ({prob} after the last layer): top-1 first after layer {first}, and from there on.", { answer: lensName(answer, i), prob: pct(answer.prob), first: Z.layers[Z.first[i]] })
          : t("The final answer here is “{answer}” ({prob} after the last layer): top-1 first after layer {first}, and for good from layer {stays} on.", { answer: lensName(answer, i), prob: pct(answer.prob), first: Z.layers[Z.first[i]], stays: Z.layers[stays] }),
        Z.top[l][i].some((c) => c.id === fin) ? "" : GAP + t("At layer {n} it is not among the top {k}.", { n: Z.layers[l], k: Z.k })));
    card.dataset.cell = `${Z.layers[l]},${i}`;
  }

  // ------------------------------------------------------------------------------------------
  // Tabs, keys, start.

  function showTab(name) {
    state.tab = name;
    document.querySelectorAll(".tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === name)));
    document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === name + "-panel"));
    if (name === "attention") pick(state.layer, state.head);
  }
  function main() {
    const app = document.getElementById("app");
    const right = el("section", { id: "right" },
      el("nav", { class: "tabs", role: "tablist" }, [["stage", t("Stage")], ["attention", t("Attention")], ["stream", t("Residual stream")], ["predictions", t("Predictions")], LENS ? ["lens", t("Logit lens")] : null].filter(Boolean).map(([k, label]) =>
        el("button", { role: "tab", "data-tab": k, "aria-selected": "false", onclick: () => showTab(k) }, label))),
      el("div", { class: "panel", id: "stage-panel" }),
      el("div", { class: "panel", id: "attention-panel" }),
      el("div", { class: "panel", id: "stream-panel" }),
      el("div", { class: "panel", id: "predictions-panel" }),
      LENS ? el("div", { class: "panel", id: "lens-panel" }) : null);
    app.replaceChildren(header(), el("main", {}, el("aside", { id: "flow-pane" }, flowChart()), right), tip);
    attentionPanel();
    streamPanel();
    predictionsPanel();
    if (LENS) lensPanel();
    document.addEventListener("keydown", (ev) => {
      if (state.tab !== "attention" || ev.target.tagName === "INPUT") return;
      const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }[ev.key];
      if (!moves) return;
      ev.preventDefault();
      pick(state.layer + moves[0], state.head + moves[1]);
    });
    window.addEventListener("resize", () => { if (state.tab === "attention") { drawBig(); } });
    const probs = D.stages.find((s) => s.layer === 0 && s.kind === "probs");
    const shown = D.first_math || D.first_divergence; // where the runs start to compute different things, else where they first differ
    const first = shown || (probs ? probs.name : D.stages[0].name);
    if (LAYER_OF.has(first)) openLayer(LAYER_OF.get(first), true);
    else if (L) openLayer(0, true);
    select(first, { noScroll: !shown, center: true }); // the first math difference (or divergence): shown where it is in the chart
    requestAnimationFrame(() => requestAnimationFrame(() => { window.annotateReady = true; document.body.dataset.ready = "1"; }));
  }
  main();
})();
