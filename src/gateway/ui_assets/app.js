// Admin page: reads /health and /ui/activity (public) and, with the master
// key, /key/list and the keys' activity.
// Every URL is built from data-root so the page works under any root path.
(function () {
  const root = document.body.dataset.root || "";
  const $ = (id) => document.getElementById(id);
  const text = (s) => document.createTextNode(s == null ? "" : String(s));
  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) { const td = document.createElement("td"); td.appendChild(text(c)); tr.appendChild(td); }
    return tr;
  }
  // A Unix time in seconds as a local date and time.
  function when(secs) {
    if (!secs) return "never";
    return new Date(secs * 1000).toLocaleString();
  }
  // Fills a two-column table (label, value) in place of its old rows.
  function table(el, rows) {
    const tb = el.querySelector("tbody"); tb.innerHTML = "";
    for (const [k, v] of rows) {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.appendChild(text(k)); tr.appendChild(th);
      const td = document.createElement("td"); td.appendChild(text(v)); tr.appendChild(td);
      tb.appendChild(tr);
    }
  }
  async function loadHealth() {
    try {
      const r = await fetch(root + "/health");
      const h = await r.json();
      const stale = h.model_cost_map && h.model_cost_map.stale;
      $("status").innerHTML = "";
      const s = document.createElement("span");
      s.className = stale ? "stale" : "ok";
      s.appendChild(text(h.status + (stale ? " — cost map is STALE: " + (h.model_cost_map.reason || "") : "")));
      $("status").appendChild(s);
      $("models").innerHTML = "";
      for (const m of h.models || []) { const li = document.createElement("li"); li.appendChild(text(m)); $("models").appendChild(li); }
      const tb = $("deployments").querySelector("tbody"); tb.innerHTML = "";
      for (const d of h.deployments || []) tb.appendChild(row([d.id, d.model_name, d.provider, d.model, d.api_base, d.available === false ? "unavailable: " + d.unavailable_reason : "available"]));
      const cm = h.model_cost_map || {};
      table($("cost-map"), [
        ["State", cm.stale ? "STALE: " + (cm.reason || "the last reload failed") : "current"],
        ["Source", cm.source],
        ["Models priced", cm.model_count],
        ["Loaded", when(cm.loaded_at)],
        ["Last reload attempt", when(cm.last_attempt_at) + (cm.last_attempt_ok === false ? " (failed)" : cm.last_attempt_at ? " (succeeded)" : "")],
        ["Bundled copy in use", cm.using_bundled ? "yes" : "no"],
      ]);
      $("stale-banner").hidden = !stale;
      $("stale-banner").textContent = stale ? "The cost map is stale: " + (cm.reason || "its last reload failed") + ". Prices come from the last good copy." : "";
      const cc = h.client_cache || {};
      table($("client-cache"), [
        ["Clients cached", (cc.entries ?? "") + " of " + (cc.capacity ?? "")],
        ["Idle lifetime", cc.ttl_secs != null ? cc.ttl_secs + " s" : ""],
        ["Hits / misses", (cc.hits ?? 0) + " / " + (cc.misses ?? 0)],
        ["Evicted (capacity, expired, explicit)", [cc.evictions_capacity, cc.evictions_expired, cc.evictions_explicit].map((n) => n ?? 0).join(", ")],
        ["Evicted while in use", cc.evicted_while_in_use ?? 0],
        ["Shut down", cc.shutdowns ?? 0],
      ]);
      // Shared state: what goes through Redis now, and what each instance
      // counts on its own while it is away.
      const rd = h.redis || {};
      table($("redis"), rd.configured ? [
        ["Connected", rd.connected ? "yes" : "NO: virtual keys' limits and budgets are counted by this instance alone until Redis is back; spend is buffered"],
        ["Shared now", (rd.shared || []).join(", ") || "nothing"],
        ["Last error", rd.last_error || "none"],
      ] : [["Configured", "no: each instance counts virtual keys' limits and budgets on its own"]]);
    } catch (e) {
      $("status").textContent = "cannot load " + root + "/health: " + e;
    }
  }
  async function loadKeys() {
    const key = $("master-key").value;
    loadActivity(key);
    const r = await fetch(root + "/key/list", { headers: { Authorization: "Bearer " + key } });
    const tb = $("keys").querySelector("tbody"); tb.innerHTML = "";
    if (!r.ok) { tb.appendChild(row(["error " + r.status])); return; }
    const body = await r.json();
    for (const k of body.keys || []) tb.appendChild(row([k.masked || "", k.alias, (k.models || []).join(", ") || "all", "$" + Number(k.spend || 0).toFixed(6), k.max_budget == null ? "none" : "$" + k.max_budget]));
  }

  // ---- Activity charts: the last hour from /ui/activity, drawn as inline
  // SVG (no library: the page works offline and under any root path).
  const SVG = "http://www.w3.org/2000/svg";
  const TOP = 5; // series drawn on their own; the rest are summed as "other"
  const COLORS = ["#2f6db5", "#d9822b", "#3a9e5c", "#b8415a", "#7d5bb5"];
  const OTHER_COLOR = "#9a9a9a";
  const W = 640, H = 220, L = 76, R = 12, T = 12, B = 34;
  function svgEl(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }
  function hhmm(secs) {
    return new Date(secs * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  const usd = (x) => x === 0 ? "$0" : "$" + (x >= 1 ? x.toFixed(2) : x >= 0.01 ? x.toFixed(4) : x.toPrecision(2));
  const ms = (x) => x == null ? "—" : x === 0 ? "0 ms" : x >= 1000 ? (x / 1000).toFixed(2) + " s" : x.toFixed(x >= 10 ? 0 : x >= 1 ? 1 : 2) + " ms";
  const sum = (a) => a.reduce((s, x) => s + (x || 0), 0);
  // The series drawn: the first TOP as sent (biggest spenders first), the
  // rest and the server's own "other" merged into one "other".
  function topSeries(all) {
    const named = all.filter((s) => !s.other);
    const shown = named.slice(0, TOP).map((s, i) => Object.assign({ color: COLORS[i % COLORS.length] }, s));
    const rest = named.slice(TOP).concat(all.filter((s) => s.other));
    if (rest.length) {
      const n = rest[0].requests.length;
      const o = { name: "other", other: true, color: OTHER_COLOR, requests: [], errors: [], spend_usd: [], latency_mean_ms: [], latency_max_ms: [] };
      for (let i = 0; i < n; i++) {
        let req = 0, err = 0, spend = 0, lat = 0, max = null;
        for (const s of rest) {
          req += s.requests[i]; err += s.errors[i]; spend += s.spend_usd[i];
          if (s.latency_mean_ms[i] != null) { lat += s.latency_mean_ms[i] * s.requests[i]; max = Math.max(max ?? 0, s.latency_max_ms[i]); }
        }
        o.requests.push(req); o.errors.push(err); o.spend_usd.push(spend);
        o.latency_mean_ms.push(req ? lat / req : null); o.latency_max_ms.push(max);
      }
      const lat = sum(rest.map((s) => (s.total.latency_mean_ms || 0) * s.total.requests));
      o.total = { requests: sum(o.requests), errors: sum(o.errors), spend_usd: sum(o.spend_usd),
        latency_mean_ms: sum(o.requests) ? lat / sum(o.requests) : null,
        latency_max_ms: rest.reduce((m, s) => s.total.latency_max_ms == null ? m : Math.max(m ?? 0, s.total.latency_max_ms), null) };
      shown.push(o);
    }
    return shown;
  }
  function label(s) { return s.alias && s.key ? s.alias + " (" + s.key + ")" : s.name; }
  // A round step for about four ticks up to max.
  function ticks(max) {
    if (!(max > 0)) return [0];
    const raw = max / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
    const out = []; for (let v = 0; v <= max * 1.0001 + step / 2 && out.length < 8; v += step) out.push(v);
    if (out[out.length - 1] < max) out.push(out[out.length - 1] + step);
    return out;
  }
  // The frame both charts share: axes, grid, tick labels, axis titles, and
  // the title and summary a screen reader reads.
  function frame(title, summary, minutes, yTicks, fmt, yTitle) {
    const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", class: "chart-svg" });
    const id = "c" + Math.random().toString(36).slice(2);
    svgEl("title", { id: id + "t" }, svg).textContent = title;
    svgEl("desc", { id: id + "d" }, svg).textContent = summary;
    svg.setAttribute("aria-labelledby", id + "t " + id + "d");
    const yMax = yTicks[yTicks.length - 1] || 1;
    const x = (i) => L + (i + 0.5) * (W - L - R) / minutes.length;
    const y = (v) => T + (H - T - B) * (1 - v / yMax);
    const axes = svgEl("g", { class: "axes" }, svg);
    for (const v of yTicks) {
      svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "grid" }, axes);
      svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, axes).textContent = fmt(v);
    }
    for (let i = 0; i < minutes.length; i += 15) {
      svgEl("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, axes).textContent = hhmm(minutes[i]);
    }
    svgEl("text", { x: x(minutes.length - 1), y: H - B + 16, "text-anchor": "end" }, axes).textContent = "now";
    svgEl("text", { x: 12, y: T + (H - T - B) / 2, transform: "rotate(-90 12 " + (T + (H - T - B) / 2) + ")", "text-anchor": "middle", class: "axis-title" }, axes).textContent = yTitle;
    svgEl("text", { x: L + (W - L - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis-title" }, axes).textContent = "minute (last hour)";
    return { svg, x, y, barWidth: (W - L - R) / minutes.length - 1 };
  }
  function legend(series, note) {
    const ul = document.createElement("ul"); ul.className = "legend";
    for (const s of series) {
      const li = document.createElement("li"); li.dataset.series = s.name;
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = s.color;
      li.appendChild(sw); li.appendChild(text(label(s))); ul.appendChild(li);
    }
    if (note) { const li = document.createElement("li"); li.className = "note"; li.appendChild(text(note)); ul.appendChild(li); }
    return ul;
  }
  function figure(kind, title, svg, leg) {
    const f = document.createElement("figure"); f.className = "chart " + kind;
    const c = document.createElement("figcaption"); c.appendChild(text(title)); f.appendChild(c);
    f.appendChild(svg); f.appendChild(leg);
    return f;
  }
  // Spend per minute, stacked: one group of bars per series, each bar with
  // its numbers on hover.
  function spendChart(what, minutes, series) {
    const totals = minutes.map((_, i) => sum(series.map((s) => s.spend_usd[i])));
    const all = sum(totals);
    const title = "Spend per minute by " + what + ", last hour";
    const summary = "Total " + usd(all) + ": " + series.map((s) => label(s) + " " + usd(s.total.spend_usd)).join(", ") + ".";
    const f = frame(title, summary, minutes, ticks(Math.max(...totals)), usd, "USD per minute");
    const base = minutes.map(() => 0);
    for (const s of series) {
      const g = svgEl("g", { class: "series", "data-series": s.name, fill: s.color }, f.svg);
      s.spend_usd.forEach((v, i) => {
        if (!(v > 0)) return;
        const top = f.y(base[i] + v), bottom = f.y(base[i]);
        const r = svgEl("rect", { x: f.x(i) - f.barWidth / 2, y: top, width: Math.max(f.barWidth, 1), height: Math.max(bottom - top, 1) }, g);
        svgEl("title", {}, r).textContent = label(s) + ", " + hhmm(minutes[i]) + ": " + usd(v) + " (" + s.requests[i] + " requests)";
        base[i] += v;
      });
    }
    return figure("spend", title, f.svg, legend(series));
  }
  // Latency to the answer's first byte: mean (solid line) and max (dashed)
  // per minute, one group per series; each minute's point shows its numbers
  // and is ringed in red when the minute had errors.
  function latencyChart(what, minutes, series) {
    const max = Math.max(0, ...series.flatMap((s) => s.latency_max_ms.filter((v) => v != null)));
    const title = "Latency per minute by " + what + " (to the first byte), last hour";
    const summary = series.map((s) => label(s) + ": mean " + ms(s.total.latency_mean_ms) + ", max " + ms(s.total.latency_max_ms)).join("; ") + ".";
    const f = frame(title, summary, minutes, ticks(max), ms, "milliseconds");
    for (const s of series) {
      const g = svgEl("g", { class: "series", "data-series": s.name, stroke: s.color, fill: s.color }, f.svg);
      for (const [values, cls] of [[s.latency_max_ms, "max"], [s.latency_mean_ms, "mean"]]) {
        let d = "", pen = "M";
        values.forEach((v, i) => {
          if (v == null) { pen = "M"; return; }
          d += pen + f.x(i).toFixed(1) + " " + f.y(v).toFixed(1) + " "; pen = "L";
        });
        if (d) svgEl("path", { d, class: "line " + cls, fill: "none" }, g);
      }
      s.latency_mean_ms.forEach((v, i) => {
        if (v == null) return;
        const c = svgEl("circle", { cx: f.x(i), cy: f.y(v), r: 3, class: s.errors[i] > 0 ? "has-errors" : "" }, g);
        svgEl("title", {}, c).textContent = label(s) + ", " + hhmm(minutes[i]) + ": mean " + ms(v) + ", max " + ms(s.latency_max_ms[i]) + ", " + s.requests[i] + " requests, " + s.errors[i] + " errors";
      });
    }
    return figure("latency", title, f.svg, legend(series, "solid: mean · dashed: max · red ring: a minute with errors"));
  }
  // The numbers behind the charts, for those who would rather read.
  function numbers(series) {
    const d = document.createElement("details");
    const s = document.createElement("summary"); s.appendChild(text("Numbers")); d.appendChild(s);
    const t = document.createElement("table"); t.className = "activity-numbers";
    const head = document.createElement("tr");
    for (const h of ["series", "requests", "errors", "spend", "mean latency", "max latency"]) { const th = document.createElement("th"); th.appendChild(text(h)); head.appendChild(th); }
    const thead = document.createElement("thead"); thead.appendChild(head); t.appendChild(thead);
    const tb = document.createElement("tbody");
    for (const x of series) tb.appendChild(row([label(x), x.total.requests, x.total.errors, usd(x.total.spend_usd), ms(x.total.latency_mean_ms), ms(x.total.latency_max_ms)]));
    t.appendChild(tb); d.appendChild(t);
    return d;
  }
  function renderActivity(el, what, minutes, all) {
    // A refresh keeps the numbers table open if it was.
    const open = !!(el.querySelector("details") || {}).open;
    el.innerHTML = "";
    if (!all || !all.length) {
      const p = document.createElement("p"); p.className = "empty"; p.appendChild(text("No traffic in the last hour.")); el.appendChild(p);
      return;
    }
    const series = topSeries(all);
    el.appendChild(spendChart(what, minutes, series));
    el.appendChild(latencyChart(what, minutes, series));
    const table = numbers(series); table.open = open;
    el.appendChild(table);
  }
  // Per model for everyone; per key only with the master key (the server
  // sends no `keys` member otherwise). Redrawn every minute, with the key
  // that last loaded the keys' charts.
  let activityKey = "";
  async function loadActivity(key) {
    const headers = key ? { Authorization: "Bearer " + key } : {};
    try {
      const r = await fetch(root + "/ui/activity", { headers });
      if (!r.ok) { if (key) $("activity-keys").textContent = "cannot load the keys' activity: error " + r.status; return; }
      const a = await r.json();
      renderActivity($("activity-models"), "model", a.minutes, a.models);
      if (a.keys) { renderActivity($("activity-keys"), "key", a.minutes, a.keys); activityKey = key; }
    } catch (e) {
      $("activity-models").textContent = "cannot load " + root + "/ui/activity: " + e;
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    loadHealth();
    loadActivity("");
    setInterval(() => loadActivity(activityKey), 60000);
    $("load-keys").addEventListener("click", loadKeys);
  });
})();
