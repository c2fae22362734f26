// annotate explorer for an encoder-decoder: draws the JSON in #annotate-data (annotate/explorer_translate.py).
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("annotate-data").textContent);
  const app = document.getElementById("app");

  function tokens(list, side) {
    return el("div", { class: "tokens" }, ...list.map((tok, i) => el("span", { class: "tok", "data-side": side, "data-i": i }, tok, el("sub", { text: String(i) }))));
  }

  // The colour of a weight: white (0) to blue (1), as the terminal's grid shades it.
  function shade(p) {
    const v = Math.round(255 - 200 * Math.min(1, Math.max(0, p)));
    return `rgb(${v}, ${Math.round(v * 0.9 + 25)}, 255)`;
  }

  function average(heads) {
    const out = heads[0].map((row) => row.map(() => 0));
    for (const h of heads) h.forEach((row, i) => row.forEach((p, j) => { out[i][j] += p / heads.length; }));
    return out;
  }

  // A grid of weights: rows (queries) and columns (keys) labelled by their tokens. mask: 1 kept, 0 blocked.
  function grid(rows, rowLabels, colLabels, opts) {
    const o = opts || {};
    const table = el("table", { class: "grid" + (o.mask ? " mask" : ""), "data-grid": o.name || "" });
    const head = el("tr", {}, el("th", {}));
    colLabels.forEach((label) => head.append(el("th", { text: label })));
    table.append(el("thead", {}, head));
    const body = el("tbody");
    rows.forEach((row, i) => {
      const tr = el("tr", {}, el("th", { text: rowLabels[i] }));
      row.forEach((p, j) => {
        const blocked = o.blocked && o.blocked[i][j] === 0;
        const td = el("td", { "data-q": i, "data-k": j, title: `${rowLabels[i]} → ${colLabels[j]}: ${o.mask ? (p ? t("kept") : t("blocked")) : p.toFixed(3)}` });
        if (o.mask) td.className = p ? "kept" : "blocked";
        else if (blocked) td.className = "blocked";
        else { td.style.background = shade(p); td.textContent = p.toFixed(2).replace(/^0/, ""); }
        tr.append(td);
      });
      body.append(tr);
    });
    table.append(body);
    return table;
  }

  // Layer and head pickers over a (L, nh, T, K) array; draw(weights, label) is called on each change.
  function picker(all, draw) {
    const layer = el("select", { "data-pick": "layer", "aria-label": t("layer") });
    all.forEach((_, L) => layer.append(el("option", { value: L, text: t("layer {l}", { l: L }) })));
    layer.value = String(all.length - 1);
    const head = el("select", { "data-pick": "head", "aria-label": t("head") });
    head.append(el("option", { value: "mean", text: t("heads averaged") }));
    all[0].forEach((_, h) => head.append(el("option", { value: h, text: t("head {h}", { h }) })));
    const out = el("div");
    function redraw() {
      const heads = all[Number(layer.value)];
      const w = head.value === "mean" ? average(heads) : heads[Number(head.value)];
      out.replaceChildren(draw(w));
    }
    layer.addEventListener("change", redraw);
    head.addEventListener("change", redraw);
    redraw();
    return el("div", {}, el("div", { class: "controls" }, layer, head), out);
  }

  function looked(w) {
    const rows = el("table", { class: "looked", "data-looked": "" });
    w.forEach((row, i) => {
      const order = row.map((p, j) => [p, j]).sort((a, b) => b[0] - a[0]).slice(0, 3);
      const next = D.next_tokens[i];
      const cells = order.map(([p, j]) => el("span", {}, el("span", { class: "bar", style: `width:${Math.round(60 * p)}px` }), `${D.source_tokens[j]} ${p.toFixed(2)}  `));
      rows.append(el("tr", { "data-step": i }, el("td", { text: `${i}: ${D.target_tokens[i]}` }), el("td", { class: "dim", text: next ? `→ ${next.token} (${next.prob.toFixed(2)})` : "" }), el("td", {}, ...cells)));
    });
    return rows;
  }

  const padded = D.source_tokens.concat(["<pad>", "<pad>"]);  // the masks tab's batch example
  // The tabs: their names (data-tab) stay English; their labels speak the page's language.
  const labels = { "cross-attention": t("cross-attention"), encoder: t("encoder"), decoder: t("decoder"), masks: t("masks"), stages: t("stages") };
  const views = {
    "cross-attention": () => el("div", {},
      el("p", { class: "explain", text: t("Cross-attention: each target position (a row) looks at the encoder's output for every source token (a column). Queries come from the decoder, keys and values from the encoder. Beside it, for each position, the source tokens it weighed most, and the token the model chose next.") }),
      picker(D.cross, (w) => el("div", { class: "views" }, grid(w, D.target_tokens, D.source_tokens, { name: "cross" }), looked(w)))),
    encoder: () => el("div", {},
      el("p", { class: "explain", text: t("The encoder's self-attention: every source token (a row) looks at every source token (a column) but padding.") }),
      picker(D.encoder, (w) => grid(w, D.source_tokens, D.source_tokens, { name: "encoder", blocked: D.masks.padding }))),
    decoder: () => el("div", {},
      el("p", { class: "explain", text: t("The decoder's self-attention: each target token looks at itself and the tokens before it, never a later one (the causal mask: the grey triangle).") }),
      picker(D.decoder, (w) => grid(w, D.target_tokens, D.target_tokens, { name: "decoder", blocked: D.masks.causal }))),
    masks: () => el("div", {},
      el("p", { class: "explain", text: t("The three masks of the paper, as this input gives them (green: attended to; grey: blocked). Padding: the source's padding tokens are hidden from the encoder and from the cross-attention (this single source has none; beside it, the same source padded as in a batch). Causal: the decoder's position i sees positions 0..i. Cross: every target position sees every real source token.") }),
      el("div", { class: "views" },
        el("div", {}, el("h3", { text: t("padding (encoder self-attention)") }), grid(D.masks.padding, D.source_tokens, D.source_tokens, { name: "mask-padding", mask: true })),
        el("div", {}, el("h3", { text: t("… padded in a batch (+2 <pad>)") }), grid(D.masks.padded, padded, padded, { name: "mask-padded", mask: true })),
        el("div", {}, el("h3", { text: t("causal (decoder self-attention)") }), grid(D.masks.causal, D.target_tokens, D.target_tokens, { name: "mask-causal", mask: true })),
        el("div", {}, el("h3", { text: t("cross (decoder → source)") }), grid(D.masks.cross, D.target_tokens, D.source_tokens, { name: "mask-cross", mask: true })))),
  };
  if (D.stages) {
    views.stages = () => el("div", {},
      el("p", { class: "explain", text: t("Every stage against transformers: equal (bit for bit), rounding (the float64 reruns agree: only rounding differs), or math (they compute something else). The first math stage is marked.") }),
      el("div", { class: "stages" }, ...D.stages.map((s) => el("div", { class: (s.verdict || "") + (s.name === D.first_math ? " first" : ""), "data-stage": s.name, text: `${s.verdict || "—"}  ${s.name}` }))));
  }

  const counts = {};
  (D.stages || []).forEach((s) => { counts[s.verdict] = (counts[s.verdict] || 0) + 1; });
  const overall = D.stages ? (counts.math ? "math" : counts.rounding ? "rounding" : "equal") : null;
  const header = el("header", {},
    el("h1", {}, D.model, el("span", { class: "dim", text: `  ${D.model_class} (${D.model_type})` })),
    el("div", { class: "pair" },
      el("span", { text: t("source") }), tokens(D.source_tokens, "source"),
      el("span", { text: D.given_target ? t("target") : t("decoder read") }), tokens(D.target_tokens, "target"),
      el("span", { text: t("translation") }), el("span", { class: "translation", text: D.translation })),
    overall ? el("span", { class: "verdict " + overall, "data-verdict": overall, text: overall === "math" ? t("differs from transformers: first at {stage}", { stage: D.first_math })
      : overall === "equal" ? t("every stage bit-identical to transformers") : t("every stage within rounding of transformers") }) : null);
  const nav = el("nav", { role: "tablist", "aria-label": t("views") });
  const main = el("main");
  Object.keys(views).forEach((name, i) => {
    const button = el("button", { role: "tab", "data-tab": name, "aria-selected": i === 0 ? "true" : "false", text: labels[name] });
    button.addEventListener("click", () => {
      nav.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b === button)));
      main.replaceChildren(views[name]());
      main.setAttribute("data-view", name);
    });
    nav.append(button);
  });
  app.replaceChildren(header, nav, main);
  main.replaceChildren(views["cross-attention"]());
  main.setAttribute("data-view", "cross-attention");
  document.body.setAttribute("data-ready", "1");  // drawn: what the tests and the screenshot script wait for
})();
