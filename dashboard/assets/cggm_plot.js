/*
 * CGGM Monitor: the figures, drawn in the browser from raw series.
 *
 * The server sends what to draw (panel specs: which series, names, colours, default scale; text
 * already escaped for Plotly) and the raw points; this file decides how (smoothing, x axis,
 * y scale, shared or independent axes, group bands), so a toggle never waits for the server.
 * Pure functions live on `window.cggmPlot` (unit-tested in Chromium: tests/dashboard/test_plot_js.py);
 * Dash's clientside callbacks on `window.dash_clientside.cggm`.
 */
(function () {
  "use strict";

  // A modality keeps its colour everywhere; runs (compare overlays) get a palette of their own.
  const MODALITY_COLORS = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52"];
  const RUN_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#e6ab02", "#666666", "#1f78b4", "#b15928"];
  // Most points a line is drawn with. The page first reads each series downsampled (1,500 points)
  // and a live run's ticks then append to it; past this, each bucket keeps its lowest and highest
  // point (extremesIndices), so drawing stays fast in SVG. WebGL lines were tried before: a page
  // gets ~16 WebGL contexts from the browser, and with every panel of a long live run in WebGL
  // the first panels lost theirs and went blank ("Too many active WebGL contexts").
  const DRAW_MAX_POINTS = 3000;

  // Indices (ascending) of at most maxPoints of y to draw: the first and last point, and each
  // bucket's lowest and highest value (the backend's min-max rule, backend/downsample.py); a
  // bucket with nothing but gaps (null) keeps one of them, so that the line still breaks there.
  // null when every point fits.
  function extremesIndices(y, maxPoints) {
    const n = y.length;
    if (n <= maxPoints) return null;
    const buckets = Math.max(1, Math.floor((maxPoints - 2) / 2));
    const interior = n - 2;
    const size = Math.ceil(interior / buckets);
    const out = [0];
    for (let start = 1; start < n - 1; start += size) {
      const end = Math.min(n - 1, start + size);
      let lo = -1;
      let hi = -1;
      for (let i = start; i < end; i++) {
        const v = y[i];
        if (v === null || v === undefined || Number.isNaN(v)) continue;
        if (lo < 0 || v < y[lo]) lo = i;
        if (hi < 0 || v > y[hi]) hi = i;
      }
      if (lo < 0) out.push(start);
      else if (lo === hi) out.push(lo);
      else out.push(Math.min(lo, hi), Math.max(lo, hi));
    }
    out.push(n - 1);
    return out;
  }

  function pick(a, idx) {
    return idx ? idx.map((i) => a[i]) : a;
  }
  const X_TITLES = { step: "step", epoch: "epoch", relative: "time since start (s)", wall: "time" };
  const DOMINANCE_ROWS = [["acc", "accuracy"], ["grad_norm", "grad norm"]];

  function decode(v) {
    if (typeof v === "number") return v;
    if (v === "NaN" || v === null || v === undefined) return NaN;
    if (v === "Infinity") return Infinity;
    if (v === "-Infinity") return -Infinity;
    return Number(v);
  }

  // TensorBoard's debiased EMA: s_t = w·s_{t−1} + (1−w)·x_t, shown as s_t / (1 − w^t), t counting
  // finite points; a non-finite point gives NaN and leaves the state untouched.
  function ema(values, weight) {
    const out = new Array(values.length);
    if (!(weight > 0)) {
      for (let i = 0; i < values.length; i++) out[i] = values[i];
      return out;
    }
    const w = Math.min(weight, 0.999);
    let last = 0;
    let count = 0;
    let wPow = 1;
    for (let i = 0; i < values.length; i++) {
      const x = values[i];
      if (!Number.isFinite(x)) {
        out[i] = NaN;
        continue;
      }
      last = w * last + (1 - w) * x;
      count += 1;
      wPow *= w;
      const debias = 1 - wPow;
      out[i] = debias > 0 ? last / debias : x;
    }
    return out;
  }

  // sign(v)·log10(1+|v|): linear near 0, logarithmic for CGGM's |B| ~ 1e7 blow-ups, keeps the sign.
  function symlog(v) {
    if (Number.isNaN(v)) return NaN;
    if (!Number.isFinite(v)) return v;
    return Math.sign(v) * Math.log10(1 + Math.abs(v));
  }

  function formatReal(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace("e+", "e");
    return String(Number(v.toPrecision(6)));
  }

  // Tick positions (symlog space) and labels (real values) covering real values [lo, hi].
  function symlogTicks(lo, hi) {
    const top = Math.max(Math.abs(lo), Math.abs(hi), 1);
    const decades = Math.min(Math.ceil(Math.log10(top)), 30);
    const reals = new Set([0]);
    // Over a few decades only, 2× and 5× of each (and 0.5): a neutral B of 0.75 or 1.3 gets a label nearby.
    const steps = decades <= 2 ? [0.5, 1, 2, 5] : [1];
    for (let d = 0; d <= decades; d++) {
      for (const k of steps) {
        const v = k * Math.pow(10, d);
        if (d > 0 && k < 1) continue;
        if (v <= top * 10 && (k === 1 || v <= top * 1.5)) {
          if (hi > 0 || v <= 1) reals.add(v);
          if (lo < 0 || v <= 1) reals.add(-v);
        }
      }
    }
    const sorted = Array.from(reals).sort((a, b) => a - b);
    return { vals: sorted.map(symlog), text: sorted.map(formatReal) };
  }

  // step → epoch, piecewise linear through (0, 0) and each logged (step, epochs done); past the
  // last epoch, at the last epoch's pace. Without logged epochs, `perEpoch` steps per epoch.
  function epochOf(epochs, perEpoch) {
    const pts = [[0, 0]];
    if (epochs && epochs.s) {
      for (let i = 0; i < epochs.s.length; i++) {
        const e = decode(epochs.v[i]);
        if (Number.isFinite(e) && epochs.s[i] > pts[pts.length - 1][0]) pts.push([epochs.s[i], e]);
      }
    }
    if (pts.length === 1) {
      if (!(perEpoch > 0)) return null;
      return (step) => step / perEpoch;
    }
    const n = pts.length;
    const lastPace = (pts[n - 1][1] - pts[n - 2][1]) / (pts[n - 1][0] - pts[n - 2][0]);
    return function (step) {
      if (step >= pts[n - 1][0]) return pts[n - 1][1] + (step - pts[n - 1][0]) * lastPace;
      let lo = 0;
      let hi = n - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (pts[mid][0] <= step) lo = mid;
        else hi = mid;
      }
      const [s0, e0] = pts[lo];
      const [s1, e1] = pts[hi];
      return e0 + ((step - s0) * (e1 - e0)) / (s1 - s0);
    };
  }

  // The run context of a series: its t0 and step → epoch map.
  function runContext(data, runId) {
    const runs = data.runs || {};
    const run = runs[runId] || runs[String(runId)] || {};
    if (!run._epochOf) {
      Object.defineProperty(run, "_epochOf", { value: epochOf(run.epochs, run.per_epoch), enumerable: false, writable: true });
    }
    return { t0: run.t0, epochOf: run._epochOf };
  }

  function xValues(series, mode, ctx) {
    const s = series.s;
    if (mode === "relative") {
      const base = ctx.t0 !== undefined && ctx.t0 !== null ? ctx.t0 : series.t.length ? series.t[0] : 0;
      return series.t.map((t) => Math.round((t - base) * 1000) / 1000);
    }
    if (mode === "wall") return series.t.map((t) => new Date(t * 1000).toISOString());
    if (mode === "epoch" && ctx.epochOf) return s.map((st) => Math.round(ctx.epochOf(st) * 10000) / 10000);
    return s.slice();
  }

  // Values on the chosen y scale: Plotly draws null as a gap. Non-finite points are gaps; on a log
  // scale so are values ≤ 0, counted so that the title can say how many are not shown.
  function yValues(values, scale) {
    const y = new Array(values.length);
    let hidden = 0;
    let lo = Infinity;
    let hi = -Infinity;
    let posLo = Infinity; // the smallest value > 0 (what a log axis spans from)
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) {
        y[i] = null;
        continue;
      }
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      if (v > 0 && v < posLo) posLo = v;
      if (scale === "log") {
        if (v <= 0) {
          y[i] = null;
          hidden += 1;
        } else y[i] = v;
      } else y[i] = scale === "symlog" ? symlog(v) : v;
    }
    return { y: y, hidden: hidden, lo: lo, hi: hi, posLo: posLo };
  }

  function realValues(values) {
    return values.map((v) => (Number.isFinite(v) ? v : null));
  }

  function decodedValues(series) {
    if (!series._dv || series._dvLen !== series.v.length) {
      Object.defineProperty(series, "_dv", { value: series.v.map(decode), enumerable: false, writable: true, configurable: true });
      Object.defineProperty(series, "_dvLen", { value: series.v.length, enumerable: false, writable: true, configurable: true });
    }
    return series._dv;
  }

  function axisName(kind, i) {
    return i === 0 ? kind : kind + (i + 1);
  }

  function lineTrace(x, y, real, opts) {
    const n = x.length;
    const tr = {
      type: "scatter",
      mode: n === 1 ? "markers" : "lines",
      x: x,
      y: y,
      customdata: real,
      name: opts.name,
      legendgroup: opts.group || opts.name,
      showlegend: opts.showlegend,
      opacity: opts.faint ? 0.3 : 1,
      line: { color: opts.color, width: opts.faint ? 1 : 2, dash: opts.dash || "solid" },
      marker: { color: opts.color, size: 6 },
      // %{fullData.name}: the (escaped) name is not part of the template, so a '%{' in a key is text.
      hovertemplate: "%{fullData.name}" + (opts.faint ? " (raw)" : "") + "<br>%{x}: %{customdata:.6g}<extra></extra>",
      meta: { sid: opts.sid, kind: opts.faint ? "raw" : opts.kind || "raw" },
    };
    if (opts.axis > 0) {
      tr.xaxis = "x" + (opts.axis + 1);
      tr.yaxis = "y" + (opts.axis + 1);
    }
    return tr;
  }

  // Mean ± std (or min–max) of several runs' curves on the grid of the longest one (linear
  // interpolation inside each run's own range; a grid point needs at least two runs).
  function band(members, how) {
    const withPts = members.filter((m) => m.x.length);
    if (!withPts.length) return null;
    const grid = withPts.reduce((a, b) => (b.x.length > a.x.length ? b : a)).x;
    const interp = (m, gx) => {
      const xs = m.x;
      if (gx < xs[0] || gx > xs[xs.length - 1]) return NaN;
      let lo = 0;
      let hi = xs.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (xs[mid] <= gx) lo = mid;
        else hi = mid;
      }
      if (xs[hi] === xs[lo]) return m.y[lo];
      const a = m.y[lo];
      const b = m.y[hi];
      if (!Number.isFinite(a) || !Number.isFinite(b)) return NaN;
      return a + ((gx - xs[lo]) * (b - a)) / (xs[hi] - xs[lo]);
    };
    const mean = [];
    const upper = [];
    const lower = [];
    const xs = [];
    for (const gx of grid) {
      const vals = withPts.map((m) => interp(m, gx)).filter(Number.isFinite);
      if (vals.length < Math.min(2, withPts.length)) continue;
      const mu = vals.reduce((a, b) => a + b, 0) / vals.length;
      let lo;
      let hi;
      if (how === "minmax") {
        lo = Math.min.apply(null, vals);
        hi = Math.max.apply(null, vals);
      } else {
        const sd = vals.length > 1 ? Math.sqrt(vals.reduce((a, b) => a + (b - mu) * (b - mu), 0) / (vals.length - 1)) : 0;
        lo = mu - sd;
        hi = mu + sd;
      }
      xs.push(gx);
      mean.push(mu);
      upper.push(hi);
      lower.push(lo);
    }
    return { x: xs, mean: mean, upper: upper, lower: lower, n: withPts.length };
  }

  function rgba(hex, alpha) {
    const h = hex.replace("#", "");
    const r = parseInt(h.slice(0, 2), 16);
    const g = parseInt(h.slice(2, 4), 16);
    const b = parseInt(h.slice(4, 6), 16);
    return "rgba(" + r + "," + g + "," + b + "," + alpha + ")";
  }

  /*
   * One panel's figure. spec: {id, title, scale, traces: [{sid, name, color, group, dash, column}],
   * columns: [titles] (small multiples) | undefined, bands: [{name, color, sids}] | undefined,
   * note, height}. view: {smoothing, x, scale, sharedY, band: "std"|"minmax", extraTitle}.
   */
  function buildFigure(spec, data, view) {
    const scale = view.scale || spec.scale || "linear";
    const smoothing = view.smoothing || 0;
    const xMode = view.x || "step";
    const columns = spec.columns && spec.columns.length ? spec.columns : null;
    const nCols = columns ? columns.length : 1;
    const traces = [];
    let hidden = 0;
    const ranges = [];
    for (let c = 0; c < nCols; c++) ranges.push([0, 0]);
    const posRanges = []; // per column: [smallest value > 0, largest value], for log axes
    for (let c = 0; c < nCols; c++) posRanges.push([Infinity, -Infinity]);
    const seenLegend = new Set();
    const steps = [];
    for (let c = 0; c < nCols; c++) steps.push([Infinity, -Infinity]);
    const curves = {}; // sid → {x, y} (smoothed real values), for bands
    for (const t of spec.traces || []) {
      const s = data.series[t.sid];
      if (!s || !s.s) continue;
      const col = columns ? t.column || 0 : 0;
      const ctx = runContext(data, s.r !== undefined ? s.r : data.run_id);
      const x = xValues(s, xMode, ctx);
      if (x.length) steps[col] = [Math.min(steps[col][0], x[0]), Math.max(steps[col][1], x[x.length - 1])];
      const raw = decodedValues(s);
      const shown = smoothing > 0 ? ema(raw, smoothing) : raw;
      curves[t.sid] = { x: x, y: shown };
      if (t.hidden) continue; // a band member: drawn as the band only
      const group = t.group || t.name;
      const legend = !seenLegend.has(group);
      seenLegend.add(group);
      const kinds = smoothing > 0 ? [["raw", raw, true], ["smooth", shown, false]] : [["raw", raw, false]];
      for (const [kind, values, faint] of kinds) {
        const yv = yValues(values, scale);
        if (kind === "raw") {
          hidden += yv.hidden;
          if (yv.lo <= yv.hi) ranges[col] = [Math.min(ranges[col][0], yv.lo), Math.max(ranges[col][1], yv.hi)];
          if (yv.posLo <= yv.hi) posRanges[col] = [Math.min(posRanges[col][0], yv.posLo), Math.max(posRanges[col][1], yv.hi)];
        }
        const idx = extremesIndices(yv.y, DRAW_MAX_POINTS);
        traces.push(
          lineTrace(pick(x, idx), pick(yv.y, idx), pick(realValues(values), idx), {
            name: t.name,
            group: group,
            color: t.color,
            dash: t.dash,
            faint: faint,
            kind: kind,
            showlegend: legend && !faint,
            sid: t.sid,
            axis: col,
          }),
        );
      }
    }
    for (const b of spec.bands || []) {
      const members = b.sids.filter((sid) => curves[sid]).map((sid) => curves[sid]);
      const agg = band(members, view.band);
      if (!agg || !agg.x.length) continue;
      const lo = yValues(agg.lower, scale);
      const hi = yValues(agg.upper, scale);
      const mu = yValues(agg.mean, scale);
      const col = b.column || 0;
      ranges[col] = [Math.min(ranges[col][0], lo.lo), Math.max(ranges[col][1], hi.hi)];
      const ax = col > 0 ? { xaxis: "x" + (col + 1), yaxis: "y" + (col + 1) } : {};
      const label = b.name + " (n=" + agg.n + ")";
      traces.push(Object.assign({ type: "scatter", mode: "lines", x: agg.x, y: hi.y, line: { width: 0, color: b.color }, hoverinfo: "skip", showlegend: false, legendgroup: b.name, meta: { band: b.name, part: "upper" } }, ax));
      traces.push(Object.assign({ type: "scatter", mode: "lines", x: agg.x, y: lo.y, fill: "tonexty", fillcolor: rgba(b.color, 0.2), line: { width: 0, color: b.color }, hoverinfo: "skip", showlegend: false, legendgroup: b.name, meta: { band: b.name, part: "lower" } }, ax));
      traces.push(
        Object.assign(
          lineTrace(agg.x, mu.y, realValues(agg.mean), { name: label, group: b.name, color: b.color, showlegend: true, sid: null, axis: 0, kind: "mean" }),
          ax,
          { meta: { band: b.name, part: "mean" } },
        ),
      );
    }
    let title = spec.title || "";
    if (view.extraTitle) title += view.extraTitle;
    if (scale === "log" && hidden > 0) title += " · " + hidden + " value" + (hidden === 1 ? "" : "s") + " ≤ 0 not shown (log scale)";
    if (spec.note) title += "<br><span style='font-size:11px;color:#666'>" + spec.note + "</span>";
    const layout = {
      title: { text: title, font: { size: 14 } },
      height: spec.height || 300,
      margin: { l: 60, r: 10, t: 40 + 16 * ((title.match(/<br>/g) || []).length), b: 40 },
      legend: { orientation: "h", y: -0.25 },
      // A new revision per x mode and scale: zoom is kept across live appends, reset when the axes change.
      uirevision: [spec.id, xMode, scale, view.sharedY ? "shared" : "own"].join("|"),
      showlegend: true,
    };
    const stepSpan = steps.map((r) => (r[1] >= r[0] ? r[1] - r[0] : null));
    const gap = 0.04;
    const width = (1 - gap * (nCols - 1)) / nCols;
    const global = ranges.reduce((a, r) => [Math.min(a[0], r[0]), Math.max(a[1], r[1])], [0, 0]);
    for (let c = 0; c < nCols; c++) {
      const xa = { title: { text: c === 0 || columns ? X_TITLES[xMode] : "" } };
      const ya = {};
      if (columns) {
        xa.domain = [c * (width + gap), c * (width + gap) + width];
        xa.anchor = axisName("y", c);
        ya.anchor = axisName("x", c);
        if (c > 0 && view.sharedY) ya.matches = "y";
        if (c > 0 && view.sharedY) ya.showticklabels = false;
      }
      if (xMode === "wall") xa.type = "date";
      if (scale === "log") {
        ya.type = "log";
        // Under 3 decades plotly labels every digit of each decade (9 8 7 … 2 in small type, one
        // over the other); label 1, 2 and 5 of each decade instead.
        const pr = columns && !view.sharedY ? posRanges[c] : posRanges.reduce((a, r) => [Math.min(a[0], r[0]), Math.max(a[1], r[1])], [Infinity, -Infinity]);
        if (pr[0] <= pr[1] && Math.log10(pr[1] / pr[0]) < 3) ya.dtick = "D2";
      }
      if (scale === "symlog") {
        const r = columns && !view.sharedY ? ranges[c] : global;
        const ticks = symlogTicks(r[0], r[1]);
        ya.tickvals = ticks.vals;
        ya.ticktext = ticks.text;
        if (c === 0) ya.title = { text: "symlog" };
        // A margin around the data: a line (B = 1 for every step) would sit on the plot's edge,
        // where plotly drops its tick label, and read as no line at all.
        const lo = symlog(r[0]);
        const hi = symlog(r[1]);
        const pad = hi > lo ? 0.06 * (hi - lo) : 0.1;
        ya.range = [lo - pad, hi + pad];
      }
      // A handful of steps: whole steps only (plotly would tick 1.5, 2.5, … between logged steps).
      if (xMode === "step" && stepSpan[c] !== null && stepSpan[c] <= 10) xa.dtick = 1;
      layout[axisName("xaxis", c)] = xa;
      layout[axisName("yaxis", c)] = ya;
    }
    if (columns) {
      layout.annotations = columns.map((text, c) => ({
        text: text,
        showarrow: false,
        xref: "paper",
        yref: "paper",
        x: c * (width + gap) + width / 2,
        y: 1.0,
        yanchor: "bottom",
        font: { size: 12 },
      }));
      layout.margin.t += 16;
    }
    if (spec.zero_line) {
      layout.shapes = [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 0, y1: 0, line: { color: "#888", width: 1, dash: "dot" } }];
    }
    return { data: traces, layout: layout };
  }

  // Which modality leads at each step. Steps where every modality has a finite value are judged
  // exactly; when they are too few (series downsampled to different steps), the others are
  // interpolated onto the longest series' steps.
  function dominance(seriesByMod, metric) {
    const mods = Object.keys(seriesByMod).sort();
    const out = { steps: [], leaders: [], margins: [] };
    if (mods.length < 2) return out;
    const maps = mods.map((m) => {
      const s = seriesByMod[m];
      const vals = decodedValues(s);
      const mp = new Map();
      for (let i = 0; i < s.s.length; i++) mp.set(s.s[i], vals[i]);
      return mp;
    });
    const lengths = mods.map((m) => seriesByMod[m].s.length);
    const longest = mods[lengths.indexOf(Math.max.apply(null, lengths))];
    let steps = seriesByMod[longest].s.filter((st) => maps.every((mp) => mp.has(st)));
    let valueAt = (i, st) => maps[i].get(st);
    if (steps.length < 0.5 * Math.min.apply(null, lengths)) {
      steps = seriesByMod[longest].s.slice();
      const curves = mods.map((m) => ({ x: seriesByMod[m].s, y: decodedValues(seriesByMod[m]) }));
      valueAt = (i, st) => {
        const c = curves[i];
        const xs = c.x;
        if (!xs.length || st < xs[0] || st > xs[xs.length - 1]) return NaN;
        let lo = 0;
        let hi = xs.length - 1;
        while (hi - lo > 1) {
          const mid = (lo + hi) >> 1;
          if (xs[mid] <= st) lo = mid;
          else hi = mid;
        }
        if (xs[hi] === xs[lo]) return c.y[lo];
        return c.y[lo] + ((st - xs[lo]) * (c.y[hi] - c.y[lo])) / (xs[hi] - xs[lo]);
      };
    }
    for (const st of steps) {
      const row = mods.map((m, i) => [m, valueAt(i, st)]);
      if (!row.every((r) => Number.isFinite(r[1]))) continue;
      row.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
      const lead = row[0][1];
      const second = row[1][1];
      out.steps.push(st);
      out.leaders.push(row[0][0]);
      out.margins.push(metric === "grad_norm" ? (second > 0 ? lead / second : Infinity) : lead - second);
    }
    return out;
  }

  function formatMargin(metric, margin) {
    if (margin === null || !Number.isFinite(margin)) return metric === "grad_norm" ? "×∞" : "?";
    if (metric === "grad_norm") return "×" + String(Number(margin.toPrecision(3)));
    return (margin >= 0 ? "+" : "") + margin.toFixed(3);
  }

  // The dominance strip: a row per measure, at each step a mark coloured by the leading modality.
  // spec: {mods: [{name, color}], sids: {acc: {m: sid}, grad_norm: {m: sid}}, run}
  function buildDominanceFigure(spec, data, view) {
    const xMode = view.x === "epoch" ? "epoch" : "step";
    const ctx = runContext(data, data.run_id);
    const traces = [];
    const rows = spec.rows || DOMINANCE_ROWS; // the run's own name for ε ("dice" for segmentation)
    for (const [metric, row] of rows) {
      const sids = (spec.sids || {})[metric] || {};
      const byMod = {};
      for (const m of Object.keys(sids)) if (data.series[sids[m]]) byMod[m] = data.series[sids[m]];
      const d = dominance(byMod, metric);
      for (const mod of spec.mods) {
        const idx = [];
        for (let i = 0; i < d.leaders.length; i++) if (d.leaders[i] === mod.name) idx.push(i);
        const steps = idx.map((i) => d.steps[i]);
        traces.push({
          type: "scattergl",
          mode: "markers",
          x: xMode === "epoch" && ctx.epochOf ? steps.map(ctx.epochOf) : steps,
          y: idx.map(() => row),
          customdata: idx.map((i) => formatMargin(metric, d.margins[i])),
          marker: { symbol: "line-ns-open", size: 14, color: mod.color, line: { width: 2 } },
          name: mod.name,
          legendgroup: mod.name,
          showlegend: metric === "acc",
          hovertemplate: "%{x}: %{fullData.name} leads %{y} by %{customdata}<extra></extra>",
          meta: { metric: metric, modality: mod.key || mod.name },
        });
      }
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const t of traces) {
      for (const x of t.x) {
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
    }
    const xaxis = { title: { text: X_TITLES[xMode] } };
    if (xMode === "step" && hi >= lo && hi - lo <= 10) xaxis.dtick = 1; // a handful of steps: whole steps
    return {
      data: traces,
      layout: {
        title: { text: "dominance: which modality leads, over time", font: { size: 14 } },
        height: 180,
        margin: { l: 90, r: 10, t: 40, b: 30 },
        yaxis: { categoryorder: "array", categoryarray: rows.map((r) => r[1]).reverse() },
        xaxis: xaxis,
        uirevision: "dominance|" + xMode,
        legend: { orientation: "h", y: 1.25, x: 1, xanchor: "right" },
      },
    };
  }

  // A live tick's points into the page's data: only points after the last step drawn per series.
  // delta: {token, base, seq, groups: [{s, t, v: {sid: values}}], runs, panels, dominance}
  function mergeDelta(data, delta) {
    const series = Object.assign({}, data.series);
    const touched = new Set();
    for (const g of delta.groups || []) {
      for (const sid of Object.keys(g.v)) {
        const old = series[sid];
        const cur = old ? { s: old.s.slice(), v: old.v.slice(), t: old.t.slice(), r: old.r } : { s: [], v: [], t: [], r: data.run_id };
        const last = cur.s.length ? cur.s[cur.s.length - 1] : -Infinity;
        const vals = g.v[sid];
        for (let i = 0; i < g.s.length; i++) {
          if (g.s[i] > last) {
            cur.s.push(g.s[i]);
            cur.v.push(vals[i]);
            cur.t.push(g.t[i]);
            touched.add(sid);
          }
        }
        series[sid] = cur;
      }
    }
    const out = Object.assign({}, data, { series: series, seq: delta.seq, rev: (data.rev || 0) + 1 });
    if (delta.epochs) {
      // New epoch-end points: a new run context (its step → epoch map is rebuilt on first use).
      const runs = Object.assign({}, data.runs);
      for (const rid of Object.keys(delta.epochs)) {
        const old = runs[rid] || {};
        const ep = old.epochs || { s: [], v: [] };
        const add = delta.epochs[rid];
        const last = ep.s.length ? ep.s[ep.s.length - 1] : -Infinity;
        const keep = add.s.map((st, i) => i).filter((i) => add.s[i] > last);
        runs[rid] = Object.assign({}, old, {
          epochs: { s: ep.s.concat(keep.map((i) => add.s[i])), v: ep.v.concat(keep.map((i) => add.v[i])) },
        });
      }
      out.runs = runs;
    }
    if (delta.panels) {
      const panels = (data.panels || []).slice();
      for (const p of delta.panels) {
        const i = panels.findIndex((q) => q.id === p.id);
        if (i >= 0) panels[i] = p;
        else panels.push(p);
      }
      out.panels = panels;
    }
    if (delta.dominance) out.dominance = delta.dominance;
    const panelRev = Object.assign({}, data.panel_rev || {});
    for (const p of out.panels || []) {
      if ((p.traces || []).some((t) => touched.has(t.sid)) || (delta.panels || []).some((q) => q.id === p.id)) {
        panelRev[p.id] = (panelRev[p.id] || 0) + 1;
      }
    }
    out.panel_rev = panelRev;
    out.touched = Array.from(touched);
    return out;
  }

  // A chart not drawn yet: its title and why it is empty, no axes (an empty plotly figure shows
  // axes −1..6 with no title, which reads as a chart without data). figures.placeholder_figure
  // builds the same on the server ("drawing…"); a panel far down the page gets "scroll to draw".
  function placeholderFigure(title, text, height) {
    const hidden = { visible: false, showgrid: false, zeroline: false };
    return {
      data: [],
      layout: {
        title: { text: title || "", font: { size: 14 } },
        height: height || 300,
        margin: { l: 60, r: 10, t: 40, b: 40 },
        xaxis: hidden,
        yaxis: hidden,
        annotations: [{ text: text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { size: 13, color: "#888" }, name: "placeholder" }],
      },
    };
  }

  window.cggmPlot = {
    placeholderFigure: placeholderFigure,
    MODALITY_COLORS: MODALITY_COLORS,
    RUN_COLORS: RUN_COLORS,
    decode: decode,
    ema: ema,
    symlog: symlog,
    symlogTicks: symlogTicks,
    extremesIndices: extremesIndices,
    DRAW_MAX_POINTS: DRAW_MAX_POINTS,
    formatReal: formatReal,
    epochOf: epochOf,
    xValues: xValues,
    yValues: yValues,
    band: band,
    buildFigure: buildFigure,
    dominance: dominance,
    formatMargin: formatMargin,
    buildDominanceFigure: buildDominanceFigure,
    mergeDelta: mergeDelta,
  };
})();
