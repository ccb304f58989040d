// Renders the OpenAPI document as a list of operations (no CDN: the page
// must work offline and under any root path).
(function () {
  document.addEventListener("DOMContentLoaded", async () => {
    const main = document.getElementById("docs");
    try {
      const doc = await (await fetch(document.body.dataset.openapi)).json();
      main.innerHTML = "";
      const h = document.createElement("p");
      h.textContent = doc.info.title + " " + doc.info.version + " — server: " + doc.servers[0].url;
      main.appendChild(h);
      for (const [path, ops] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(ops)) {
          const div = document.createElement("div"); div.className = "op";
          const m = document.createElement("span"); m.className = "method"; m.textContent = method.toUpperCase();
          const code = document.createElement("code"); code.textContent = path;
          div.appendChild(m); div.appendChild(code);
          div.appendChild(document.createTextNode(" — " + (op.summary || "") + (op.security ? " (auth)" : "")));
          main.appendChild(div);
        }
      }
    } catch (e) {
      main.textContent = "cannot load the OpenAPI document: " + e;
    }
  });
})();
