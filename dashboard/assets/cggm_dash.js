/*
 * Dash's clientside callbacks (dash_clientside.cggm.*): the glue between the page's stores and
 * the pure builders of cggm_plot.js. Toggles (smoothing, x axis, scale, shared axes, bands) run
 * here, without a server round trip; a live tick's points are merged here into what the page holds.
 */
(function () {
  "use strict";
  const P = () => window.cggmPlot;
  const NO = () => window.dash_clientside.no_update;
  // What each graph last drew, so that a tick redraws only the panels whose series grew.
  const drawn = {};
  const watching = {};

  // Dash renders a dict id as its JSON with sorted keys.
  function domId(id) {
    return JSON.stringify(Object.keys(id).sort().reduce((o, k) => ((o[k] = id[k]), o), {}));
  }

  // A panel more than a screen away is drawn when it comes near (a redraw of every panel on each
  // toggle or tick would cost the ones in view their speed). Its `<type>-vis` store wakes its callback.
  function visId(gid) {
    return { type: gid.type.replace(/graph$/, "vis"), name: gid.name };
  }

  // Where a panel is can be told only once the page's graphs have their height. Dash loads the
  // graph's code after the page's first callbacks may have run; until then each graph is a
  // 0 px high `dash-graph--pending` div, every panel sits near the top, and one far down looks near.
  function layoutSettled(el) {
    return !!el && el.getBoundingClientRect().height > 0 && !document.querySelector(".dash-graph--pending");
  }

  // Panels asked for before the layout settled, woken together (their vis stores) once no graph
  // is pending, or after 30 s. A woken panel is placed as it is then: one that still cannot be
  // measured (hidden, gone) is drawn rather than left "drawing…".
  const waiting = {};
  const woken = {};
  let settleTimer = null;
  function wakeWhenSettled(key, gid) {
    waiting[key] = gid;
    if (settleTimer !== null) return;
    const started = Date.now();
    const check = () => {
      if (document.querySelector(".dash-graph--pending") && Date.now() - started < 30000) {
        settleTimer = setTimeout(check, 50);
        return;
      }
      settleTimer = null;
      const gids = Object.entries(waiting);
      for (const [k, g] of gids) {
        delete waiting[k];
        woken[k] = true;
        window.dash_clientside.set_props(visId(g), { data: Date.now() });
      }
    };
    settleTimer = setTimeout(check, 50);
  }

  // "far", "near", or "unknown" while the layout has not settled.
  function placement(gid) {
    const el = document.getElementById(domId(gid));
    if (!("IntersectionObserver" in window)) return "near";
    if (!layoutSettled(el)) return "unknown";
    const r = el.getBoundingClientRect();
    const h = window.innerHeight || 1000;
    if (r.bottom > -h && r.top < 2 * h) return "near";
    const key = gid.type + "|" + gid.name;
    if (!watching[key]) {
      watching[key] = new IntersectionObserver(
        (entries) => {
          if (!entries.some((e) => e.isIntersecting)) return;
          watching[key].disconnect();
          delete watching[key];
          window.dash_clientside.set_props(visId(gid), { data: Date.now() });
        },
        { rootMargin: "100% 0px 100% 0px" },
      );
      watching[key].observe(el);
    }
    return "far";
  }

  function hasTraces(gid) {
    const el = document.getElementById(domId(gid));
    const gd = el && el.querySelector(".js-plotly-plot");
    return !!(gd && gd.data && gd.data.length);
  }

  function draw(data, gid, view) {
    if (!data || !data.panels) return NO();
    const spec = data.panels.find((p) => p.id === gid.name);
    if (!spec) return NO();
    const key = gid.type + "|" + gid.name;
    const memo = JSON.stringify([data.token, (data.panel_rev || {})[spec.id] || 0, view, spec]);
    if (drawn[key] === memo) return NO();
    const where = placement(gid);
    if (where === "unknown" && !woken[key]) {
      // Asked again once the layout has settled; the graph keeps "drawing…" till then.
      wakeWhenSettled(key, gid);
      return NO();
    }
    delete woken[key];
    if (where === "far") {
      // Not drawn yet: say so under the panel's title (once per render); a drawn panel keeps its figure.
      const mark = "placeholder|" + data.token;
      if (drawn[key] === mark || hasTraces(gid)) return NO();
      drawn[key] = mark;
      return P().placeholderFigure(spec.title, "scroll to draw", spec.height);
    }
    drawn[key] = memo;
    return P().buildFigure(spec, data, view);
  }

  function setParam(params, name, value, dflt) {
    if (value === undefined || value === null || value === "" || String(value) === String(dflt)) params.delete(name);
    else params.set(name, String(value));
  }

  function replaceUrl(params) {
    const search = params.toString();
    const url = window.location.pathname + (search ? "?" + search : "");
    if (url !== window.location.pathname + window.location.search) window.history.replaceState(window.history.state, "", url);
    return search;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    cggm: {
      drawRunPanel: function (data, smoothing, xMode, scale, digest, _vis, gid) {
        if (!data || !data.panels) return NO();
        const spec = data.panels.find((p) => p.id === gid.name);
        const stats = spec && spec.title_from && digest && digest[spec.title_from] ? digest[spec.title_from] : "";
        // Exact statistics under the title (a second line: a long title would be cut at the panel's edge).
        const extra = stats ? "<br><span style='font-size:11px'>" + stats + "</span>" : "";
        return draw(data, gid, { smoothing: Number(smoothing) || 0, x: xMode || "step", scale: scale, extraTitle: extra });
      },

      drawComparePanel: function (data, smoothing, xMode, scale, shared, bandHow, _vis, gid) {
        return draw(data, gid, {
          smoothing: Number(smoothing) || 0,
          x: xMode || "step",
          scale: scale,
          sharedY: Array.isArray(shared) ? shared.includes("shared") : !!shared,
          band: bandHow || "std",
        });
      },

      drawDominance: function (data, xMode) {
        if (!data || !data.dominance) return NO();
        const key = "dominance";
        const memo = JSON.stringify([data.token, data.rev || 0, xMode]);
        if (drawn[key] === memo) return NO();
        drawn[key] = memo;
        return P().buildDominanceFigure(data.dominance, data, { x: xMode || "step" });
      },

      // A tick's delta into the data store; a delta computed from another state than the page
      // holds is ignored (the next tick's acknowledgement tells the server where the page is).
      merge: function (delta, data) {
        if (!delta || !data) return [NO(), NO()];
        if (delta.reload) {
          window.dash_clientside.set_props("run-reload", { data: Date.now() });
          return [NO(), NO()];
        }
        if (delta.token !== data.token || delta.base !== data.seq) return [NO(), NO()];
        const merged = P().mergeDelta(data, delta);
        // Text outputs that changed (status, progress, timing, …), grouped per component.
        const byId = {};
        for (const name of Object.keys(delta.texts || {})) {
          const target = (data.text_outputs || {})[name];
          if (!target) continue;
          (byId[target[0]] = byId[target[0]] || {})[target[1]] = delta.texts[name];
        }
        if (delta.log && delta.log.length) {
          merged.log = (data.log || []).concat(delta.log).slice(-(data.log_max || 200));
          byId["run-log"] = { children: merged.log };
        }
        for (const id of Object.keys(byId)) window.dash_clientside.set_props(id, byId[id]);
        return [merged, { token: delta.token, seq: delta.seq }];
      },

      // View settings into the address bar (replaceState: no navigation, no re-render), so that a
      // bookmark or a shared link opens the same view. Defaults are left out.
      runUrl: function (smoothing, xMode, scales, scaleIds, data) {
        const params = new URLSearchParams(window.location.search);
        setParam(params, "smoothing", smoothing, 0);
        setParam(params, "x", xMode, "step");
        const panels = (data && data.panels) || [];
        (scaleIds || []).forEach((gid, i) => {
          const spec = panels.find((p) => p.id === gid.name);
          if (spec) setParam(params, "scale." + spec.family, scales[i], spec.scale);
        });
        return replaceUrl(params);
      },

      compareUrl: function (smoothing, xMode, shared, band, groupBy, keys, scales, scaleIds, data) {
        const params = new URLSearchParams(window.location.search);
        setParam(params, "smoothing", smoothing, 0);
        setParam(params, "x", xMode, "step");
        setParam(params, "axes", Array.isArray(shared) && shared.includes("shared") ? "shared" : "own", "own");
        setParam(params, "band", band, "std");
        setParam(params, "group", groupBy, "");
        setParam(params, "keys", Array.isArray(keys) ? keys.join(",") : keys, "");
        const panels = (data && data.panels) || [];
        (scaleIds || []).forEach((gid, i) => {
          const spec = panels.find((p) => p.id === gid.name);
          if (spec) setParam(params, "scale." + spec.id, scales[i], spec.scale);
        });
        return replaceUrl(params);
      },
    },
  });
})();
