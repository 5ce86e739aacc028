// The superposition unit explorer: plain JavaScript, no framework, no network.
(async () => {
  "use strict";
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("sp-data").textContent);
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ------------------------------------------------------------------ data
  // All arrays arrive in one gzip-compressed buffer, inflated by the browser itself.
  const bytes = (s) => {
    const bin = atob(s);
    const n = bin.length;
    const u = new Uint8Array(n);
    for (let i = 0; i < n; i++) u[i] = bin.charCodeAt(i);
    return u;
  };
  const stream = new Blob([bytes(D.blob)]).stream().pipeThrough(new DecompressionStream("gzip"));
  const buffer = await new Response(stream).arrayBuffer();
  const TYPES = { f8: Float64Array, f4: Float32Array, u4: Uint32Array, u2: Uint16Array, u1: Uint8Array };
  const view = (name) => {
    const [offset, length, type] = D.manifest[name];
    return new TYPES[type](buffer, offset, length);
  };
  const EMPTY = 0xffffffff;
  const texts = {
    index: view(D.texts.index),
    offsets: view(D.texts.offsets),
    tokens: view(D.texts.tokens),
  };
  const vocab = D.vocab;
  const shown = D.shown;
  const norm = (s) => s.trim().toLowerCase();
  // A query names a token by its string ("##ing", "Ġthe") or, for a token that starts a word,
  // by the word ("the"); word pieces are not matched by the bare word.
  const matchesToken = (t, wanted) =>
    vocab[t].toLowerCase() === wanted || (shown[t].startsWith(" ") && norm(shown[t]) === wanted);

  const bases = D.bases.map((b, i) => {
    const scores = {};
    for (const c of b.columns) scores[c] = view(b.scores[c]);
    const out = {
      i, key: b.key, name: b.name, label: b.label, n: b.n, K: b.K, S: b.S, W: b.W,
      before: b.before, count: b.count, threshold: b.threshold, columns: b.columns, scores,
      occ: view(b.occ), value: view(b.value), scale: view(b.scale), hist: view(b.hist),
      q: view(b.q), loads: b.loads, summaries: new Map(),
    };
    if (b.loads) {
      out.loadIdx = view(b.loads.idx);
      out.loadW = view(b.loads.w);
    }
    return out;
  });
  const byKey = new Map(bases.map((b) => [b.key, b]));

  // The text (store slot) holding token `g` of the store.
  const textOf = (g) => {
    let lo = 0, hi = texts.offsets.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (texts.offsets[mid] <= g) lo = mid; else hi = mid - 1;
    }
    return lo;
  };

  const fmt = (v) => {
    if (!Number.isFinite(v)) return "–";
    if (v === 0) return "0";
    return String(Number(v.toPrecision(4)));
  };

  // The most frequent firing tokens of a unit's top contexts, [token, contexts] pairs, for the
  // list rows and the filter.
  const topCounts = (b, u) => {
    let s = b.summaries.get(u);
    if (s !== undefined) return s;
    const seen = new Map();
    const L = b.K + b.S;
    for (let c = 0; c < b.K; c++) {
      const g = b.occ[u * L + c];
      if (g === EMPTY || !(b.value[u * L + c] > b.threshold)) break;  // sorted: the rest too
      const t = texts.tokens[g];
      seen.set(t, (seen.get(t) || 0) + 1);
    }
    s = [...seen.entries()].sort((x, y) => y[1] - x[1]).slice(0, 4);
    b.summaries.set(u, s);
    return s;
  };
  const topTokens = (b, u) => topCounts(b, u).map((e) => e[0]);
  const summary = (b, u) =>
    topCounts(b, u).map(([t, n]) => (n > 1 ? `${shown[t].trim()} ×${n}` : shown[t].trim())).join(" · ");

  // ------------------------------------------------------------------ order and filter
  const state = { sort: "", desc: true, filter: null, current: null, tab: 0 };

  // As UnitTable.sort: by the column (NaN last), ties by unit index.
  const sortedUnits = (b) => {
    const units = Array.from({ length: b.n }, (_, u) => u);
    const col = state.sort && b.scores[state.sort];
    if (!col) return units;
    const sign = state.desc ? -1 : 1;
    units.sort((x, y) => {
      const a = col[x], c = col[y];
      const an = Number.isNaN(a), cn = Number.isNaN(c);
      if (an || cn) return an === cn ? x - y : an ? 1 : -1;
      return sign * (a - c) || x - y;
    });
    return units;
  };

  const COLUMN_ALIASES = { max: "max_activation", diversity: "token_diversity",
    coherence: "context_coherence", spread: "category_spread" };
  const parseFilter = (text) => {
    const q = text.trim();
    if (!q) return null;
    if (/^\d+$/.test(q)) { const n = Number(q); return (b, u) => u === n; }
    const m = /^([a-z_]+)\s*(<=|>=|<|>|=)\s*(-?[0-9.]+(?:e-?\d+)?)$/i.exec(q);
    if (m) {
      const name = COLUMN_ALIASES[m[1].toLowerCase()] || m[1].toLowerCase();
      const x = Number(m[3]);
      const ops = { "<": (a) => a < x, ">": (a) => a > x, "<=": (a) => a <= x,
        ">=": (a) => a >= x, "=": (a) => a === x };
      return (b, u) => b.scores[name] !== undefined && ops[m[2]](b.scores[name][u]);
    }
    const wanted = norm(q);
    const hit = new Set();
    vocab.forEach((_, t) => { if (matchesToken(t, wanted)) hit.add(t); });
    return (b, u) => topTokens(b, u).some((t) => hit.has(t));
  };

  // ------------------------------------------------------------------ the lists
  const ROW = 30;
  class UnitList {
    constructor(b) {
      this.b = b;
      this.units = [];
      this.active = -1;
      this.pane = el("section", "pane");
      this.pane.setAttribute("aria-label", b.name);
      this.head = el("div", "count");
      this.box = el("div", "list");
      this.box.tabIndex = 0;
      this.box.setAttribute("role", "listbox");
      this.box.setAttribute("aria-label", `${b.name}, sorted`);
      this.box.id = `list-${b.key}`;
      this.spacer = el("div");
      this.box.append(this.spacer);
      this.pane.append(this.head, this.box);
      this.box.addEventListener("scroll", () => this.draw());
      this.box.addEventListener("click", (e) => {
        const row = e.target.closest(".row");
        if (row) this.select(Number(row.dataset.pos), true);
      });
      this.box.addEventListener("keydown", (e) => this.key(e));
    }
    refresh() {
      const f = state.filter;
      let units = sortedUnits(this.b);
      if (f) units = units.filter((u) => f(this.b, u));
      this.units = units;
      const cur = state.current;
      this.active = cur && cur.b === this.b ? units.indexOf(cur.u) : -1;
      const what = `${this.b.n} ${this.b.name}`;
      this.head.textContent = units.length === this.b.n ? what : `${units.length} of ${what}`;
      this.spacer.style.height = `${units.length * ROW}px`;
      this.box.scrollTop = 0;
      if (this.active >= 0) this.reveal();
      this.draw();
    }
    draw() {
      for (const r of this.box.querySelectorAll(".row")) r.remove();
      const h = this.box.clientHeight || 600;
      const first = Math.max(0, Math.floor(this.box.scrollTop / ROW) - 5);
      const last = Math.min(this.units.length, first + Math.ceil(h / ROW) + 10);
      const col = state.sort && this.b.scores[state.sort];
      const frag = document.createDocumentFragment();
      for (let p = first; p < last; p++) {
        const u = this.units[p];
        const row = el("div", "row");
        row.id = `row-${this.b.key}-${u}`;
        row.setAttribute("role", "option");
        row.setAttribute("aria-selected", String(p === this.active));
        row.dataset.pos = String(p);
        row.dataset.unit = String(u);
        row.style.top = `${p * ROW}px`;
        row.append(el("span", "lab", `${this.b.label} ${u}`));
        const toks = el("span", "toks", summary(this.b, u));
        toks.title = `the tokens its top ${this.b.K} contexts fire on most (× contexts)`;
        row.append(toks);
        if (col) row.append(el("span", "sc", fmt(col[u])));
        frag.append(row);
      }
      this.box.append(frag);
      if (this.active >= 0) {
        this.box.setAttribute("aria-activedescendant", `row-${this.b.key}-${this.units[this.active]}`);
      }
    }
    reveal() {
      const top = this.active * ROW;
      const h = this.box.clientHeight || 600;
      if (top < this.box.scrollTop || top + ROW > this.box.scrollTop + h) {
        this.box.scrollTop = Math.max(0, top - h / 3);
      }
    }
    select(pos, focus) {
      if (pos < 0 || pos >= this.units.length) return;
      this.active = pos;
      this.reveal();
      this.draw();
      open(this.b, this.units[pos], true);
      if (focus) this.box.focus({ preventScroll: true });
    }
    key(e) {
      const page = Math.max(1, Math.floor((this.box.clientHeight || 600) / ROW) - 1);
      const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
      if (e.key in moves) this.select(Math.max(0, Math.min(this.units.length - 1,
        (this.active < 0 ? -1 : this.active) + moves[e.key])), false);
      else if (e.key === "Home") this.select(0, false);
      else if (e.key === "End") this.select(this.units.length - 1, false);
      else if (e.key === "Enter" && this.active >= 0) $("#unit").focus();
      else return;
      e.preventDefault();
    }
  }
  const lists = bases.map((b) => new UnitList(b));

  // ------------------------------------------------------------------ one unit
  const contextList = (b, u, from, to, id) => {
    const ol = el("ol", "ctx");
    ol.id = id;
    const L = b.K + b.S;
    const q = b.q;
    const scale = b.scale[u];
    let inactive = 0;
    for (let c = from; c < to; c++) {
      const slot = u * L + c;
      const g = b.occ[slot];
      if (g === EMPTY) continue;
      if (!(b.value[slot] > b.threshold)) { inactive++; continue; }  // not where it fires
      const t = textOf(g);
      const start = texts.offsets[t], end = texts.offsets[t + 1];
      const pos = g - start;
      const value = b.value[slot];
      const li = el("li");
      li.dataset.value = String(value);
      li.dataset.text = String(texts.index[t]);
      li.dataset.position = String(pos);
      li.append(el("span", "v", fmt(value)));
      const w = el("span", "w");
      for (let j = 0; j < b.W; j++) {
        const at = g - b.before + j;
        if (at < start || at >= end) continue;
        const tok = texts.tokens[at];
        const qv = q[slot * b.W + j];
        const text = shown[tok];
        const lead = text.length - text.trimStart().length;
        if (lead) w.append(text.slice(0, lead));  // the space before a word is not shaded
        const span = el("span", j === b.before ? "t c" : "t", text.slice(lead));
        span.dataset.q = String(qv);
        span.dataset.token = vocab[tok];
        const v = j === b.before ? fmt(value) : qv ? `≈${fmt((qv / 255) * scale)}` : "≤ 0";
        span.title = `${vocab[tok]}: ${v}`;
        if (qv) span.style.backgroundColor = `rgba(var(--hot), ${(qv / 255).toFixed(3)})`;
        w.append(span);
      }
      li.append(w, el("span", "where", `text ${texts.index[t]}, token ${pos}`));
      ol.append(li);
    }
    if (inactive) {
      const n = ol.children.length;
      ol.append(el("li", "note", n ? `active on ${n} tokens only` : "never active"));
    } else if (!ol.children.length) ol.append(el("li", "note", "none"));
    return ol;
  };

  const histogram = (b, u) => {
    const B = D.hist_edges.length - 1;
    const counts = b.hist.subarray(u * B, (u + 1) * B);
    let hi = 0, total = 0;
    for (const c of counts) { hi = Math.max(hi, c); total += c; }
    const wrap = el("div", "hist");
    if (!total) { wrap.append(el("p", "note", "never active")); return wrap; }
    let lo = 0; while (!counts[lo]) lo++;
    let up = B - 1; while (!counts[up]) up--;
    const n = up - lo + 1, Wd = 600, Ht = 110, bw = Wd / n;
    const E = D.hist_edges;
    let svg = `<svg viewBox="0 0 ${Wd} ${Ht + 18}" role="img" aria-label="activation histogram">`;
    for (let i = lo; i <= up; i++) {
      const h = counts[i] ? Math.max(1, (Ht * Math.sqrt(counts[i])) / Math.sqrt(hi)) : 0;
      const a = i === 0 ? 0 : E[i], z = i === B - 1 ? Infinity : E[i + 1];
      svg += `<rect x="${((i - lo) * bw + 0.5).toFixed(1)}" y="${(Ht - h).toFixed(1)}" ` +
        `width="${Math.max(1, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" data-count="${counts[i]}">` +
        `<title>[${fmt(a)}, ${fmt(z)}): ${counts[i]} tokens</title></rect>`;
    }
    svg += `<text x="0" y="${Ht + 14}">${fmt(lo === 0 ? 0 : E[lo])}</text>`;
    svg += `<text x="${Wd}" y="${Ht + 14}" text-anchor="end">${fmt(E[up + 1])}</text></svg>`;
    wrap.innerHTML = svg;
    const inactive = b.count - total;
    wrap.append(el("p", "note", `${total} active tokens in log bins (two per octave, bar height ∝ √count); ` +
      `inactive (≤ ${fmt(b.threshold)}) on ${inactive} of ${b.count} tokens`));
    return wrap;
  };

  const open = (b, u, fromList) => {
    if (state.current && state.current.b === b && state.current.u === u && document.getElementById("scores")) return;
    state.current = { b, u };
    const hash = `#${b.key}-${u}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    const A = $("#unit");
    A.replaceChildren();
    A.dataset.basis = b.key;
    A.dataset.unit = String(u);
    const h = el("h2", null, `${b.label} ${u}`);
    const link = el("a", null, "permalink");
    link.href = hash;
    h.append(link);
    A.append(h, el("p", "note", `${b.name}; top ${b.K} contexts, ${b.S} random active samples`));
    const dl = el("dl", "scores");
    dl.id = "scores";
    for (const c of b.columns) {
      const v = b.scores[c][u];
      const dd = el("dd", null, fmt(v));
      dd.dataset.col = c;
      dd.dataset.value = String(v);
      dl.append(el("dt", null, c.replace(/_/g, " ")), dd, el("dd", "why", D.docs[c] || ""));
    }
    A.append(el("h3", null, "Scores"), dl);
    A.append(el("h3", null, "Activation histogram"), histogram(b, u));
    A.append(el("h3", null, "Top contexts"), contextList(b, u, 0, b.K, "top"));
    if (b.S) A.append(el("h3", null, "Random active samples"), contextList(b, u, b.K, b.K + b.S, "samples"));
    if (b.loads) {
      const L = b.loads, ul = el("ol", "loads");
      ul.id = "loads";
      for (let j = 0; j < L.k; j++) {
        const t = b.loadIdx[u * L.k + j], w = b.loadW[u * L.k + j];
        const li = el("li");
        const a = el(L.target ? "a" : "span", null, `${L.prefix} ${t}`);
        if (L.target) a.href = `#${L.target}-${t}`;
        li.append(a, ` ${w >= 0 ? "+" : ""}${fmt(w)}`);
        li.dataset.unit = String(t);
        li.dataset.weight = String(w);
        ul.append(li);
      }
      A.append(el("h3", null, `The ${L.title}`), ul);
    }
    if (!fromList) {
      showTab(b.i);
      const list = lists[b.i];
      if (state.filter && !state.filter(b, u)) {  // a link to a unit the filter hides
        $("#filter").value = "";
        state.filter = null;
        lists.forEach((l) => l.refresh());
      }
      list.active = list.units.indexOf(u);
      if (list.active >= 0) { list.reveal(); }
      list.draw();
    } else {
      for (const l of lists) if (l.b !== b && l.active >= 0) { l.active = -1; l.draw(); }
    }
  };

  const fromHash = () => {
    const m = /^#([A-Za-z0-9_]+)-(\d+)$/.exec(location.hash);
    if (!m || !byKey.has(m[1])) return false;
    const b = byKey.get(m[1]);
    const u = Number(m[2]);
    if (u >= b.n) return false;
    open(b, u, false);
    return true;
  };

  // ------------------------------------------------------------------ token search
  let tokenIndex = null;
  const buildTokenIndex = () => {
    // token -> Map("basis:unit" -> [basis, unit, best value, contexts])
    const index = new Map();
    for (const b of bases) {
      const L = b.K + b.S;
      for (let u = 0; u < b.n; u++) {
        for (let c = 0; c < b.K; c++) {
          const slot = u * L + c;
          const g = b.occ[slot];
          if (g === EMPTY || !(b.value[slot] > b.threshold)) break;
          const t = texts.tokens[g];
          let m = index.get(t);
          if (!m) index.set(t, (m = new Map()));
          const k = b.i * 1e9 + u;
          const e = m.get(k);
          if (e) e[3] += 1; else m.set(k, [b, u, b.value[slot], 1]);
        }
      }
    }
    return index;
  };
  const search = (query) => {
    const box = $("#results");
    box.hidden = false;
    box.replaceChildren();
    const wanted = norm(query);
    if (!wanted) { box.hidden = true; return; }
    tokenIndex = tokenIndex || buildTokenIndex();
    const hits = [];
    vocab.forEach((_, t) => {
      if (matchesToken(t, wanted) && tokenIndex.has(t)) {
        for (const e of tokenIndex.get(t).values()) hits.push(e);
      }
    });
    hits.sort((x, y) => y[2] - x[2] || x[0].i - y[0].i || x[1] - y[1]);
    const head = el("p", "note", hits.length
      ? `${hits.length} units have "${query.trim()}" among the tokens of their top contexts (largest activation first):`
      : `no unit has "${query.trim()}" among the tokens of its top contexts`);
    box.append(head);
    const ol = el("ol");
    ol.id = "hits";
    for (const [b, u, v, n] of hits.slice(0, 200)) {
      const li = el("li");
      const a = el("a", null, `${b.label} ${u}`);
      a.href = `#${b.key}-${u}`;
      li.dataset.basis = b.key;
      li.dataset.unit = String(u);
      li.dataset.value = String(v);
      li.append(a, ` ${fmt(v)} (${n} context${n > 1 ? "s" : ""})`);
      ol.append(li);
    }
    box.append(ol);
  };

  // ------------------------------------------------------------------ layout and wiring
  const tabs = $("#tabs");
  const showTab = (i) => {
    state.tab = i;
    tabs.querySelectorAll("button").forEach((t, j) => t.setAttribute("aria-selected", String(i === j)));
    lists.forEach((l, j) => { l.pane.hidden = i !== j; });
    lists[i].draw();
  };
  bases.forEach((b, i) => {
    const t = el("button", null, `${b.name} (${b.n})`);
    t.type = "button";
    t.setAttribute("role", "tab");
    t.addEventListener("click", () => showTab(i));
    tabs.append(t);
    $("#panes").append(lists[i].pane);
  });
  if (bases.length > 1) document.body.classList.add("multi");
  else tabs.hidden = true;

  const sortSel = $("#sort");
  const columns = [];
  for (const b of bases) for (const c of b.columns) if (!columns.includes(c)) columns.push(c);
  sortSel.append(new Option("unit number", ""));
  for (const c of columns) sortSel.append(new Option(c.replace(/_/g, " "), c));
  const setDir = () => { $("#dir").innerHTML = state.desc ? "&darr;" : "&uarr;"; $("#dir").title = state.desc ? "largest first" : "smallest first"; };
  sortSel.addEventListener("change", () => { state.sort = sortSel.value; lists.forEach((l) => l.refresh()); });
  $("#dir").addEventListener("click", () => { state.desc = !state.desc; setDir(); lists.forEach((l) => l.refresh()); });
  let filterTimer = 0;
  $("#filter").addEventListener("input", (e) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      state.filter = parseFilter(e.target.value);
      lists.forEach((l) => l.refresh());
      document.body.dataset.filter = e.target.value;  // the query the lists now show
    }, 120);
  });
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); search($("#token").value); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      e.preventDefault();
      $("#filter").focus();
    }
  });
  window.addEventListener("hashchange", fromHash);
  window.addEventListener("resize", () => lists.forEach((l) => l.draw()));

  $("#summary").textContent = `${D.tokens_seen.toLocaleString("en")} tokens · ` +
    bases.map((b) => `${b.n} ${b.name}`).join(", ");
  setDir();
  if (columns.includes("max_activation")) { sortSel.value = "max_activation"; state.sort = "max_activation"; }
  showTab(0);
  lists.forEach((l) => l.refresh());
  if (!fromHash()) open(bases[0], lists[0].units[0], false);
  window.spExplorer = { loadMs: performance.now() - t0, bases: bases.length };
  document.body.dataset.ready = "1";
})().catch((err) => {
  document.getElementById("unit").textContent = `The explorer could not start: ${err}`;
  throw err;
});
