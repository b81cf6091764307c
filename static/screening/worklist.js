// The worklist refreshes itself, so new studies and arriving AI scores appear without reloading.
(function () {
  "use strict";
  const table = document.getElementById("worklist");
  if (!table) return;
  const INTERVAL = 15000;
  async function refresh() {
    if (document.hidden || document.activeElement.closest("form")) return;
    try {
      const r = await fetch(window.location.href, { headers: { "X-Requested-With": "fetch" } });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const selector of ["#worklist tbody", ".counts"]) {
        const fresh = doc.querySelector(selector);
        const current = document.querySelector(selector);
        if (fresh && current && fresh.innerHTML !== current.innerHTML) current.innerHTML = fresh.innerHTML;
      }
    } catch (err) { /* offline for a moment: next time */ }
  }
  setInterval(refresh, INTERVAL);
})();
