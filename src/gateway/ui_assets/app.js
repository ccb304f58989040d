// Admin page: reads /health (public) and, with the master key, /key/list.
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
    } catch (e) {
      $("status").textContent = "cannot load " + root + "/health: " + e;
    }
  }
  async function loadKeys() {
    const key = $("master-key").value;
    const r = await fetch(root + "/key/list", { headers: { Authorization: "Bearer " + key } });
    const tb = $("keys").querySelector("tbody"); tb.innerHTML = "";
    if (!r.ok) { tb.appendChild(row(["error " + r.status])); return; }
    const body = await r.json();
    for (const k of body.keys || []) tb.appendChild(row([k.masked || "", k.alias, (k.models || []).join(", ") || "all", "$" + Number(k.spend || 0).toFixed(6), k.max_budget == null ? "none" : "$" + k.max_budget]));
  }
  document.addEventListener("DOMContentLoaded", () => {
    loadHealth();
    $("load-keys").addEventListener("click", loadKeys);
  });
})();
