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
      $("cost-map").textContent = JSON.stringify(h.model_cost_map, null, 2);
      $("client-cache").textContent = JSON.stringify(h.client_cache, null, 2);
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
    for (const k of body.keys || []) tb.appendChild(row([k.key_display || k.key_name || "", k.alias, (k.models || []).join(", "), k.spend, k.max_budget]));
  }
  document.addEventListener("DOMContentLoaded", () => {
    loadHealth();
    $("load-keys").addEventListener("click", loadKeys);
  });
})();
