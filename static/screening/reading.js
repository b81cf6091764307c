// The case lock: kept alive while the case is open, released when the reader leaves it.
(function () {
  "use strict";
  const status = document.getElementById("reading-status");
  if (!status) return;
  const token = status.querySelector("input[name=csrfmiddlewaretoken]");
  const lockUrl = status.dataset.lockUrl;
  const KEEP_ALIVE = 60000;
  if (lockUrl) {
    setInterval(() => {
      if (document.hidden) return;
      fetch(lockUrl, { method: "POST", headers: { "X-CSRFToken": token ? token.value : "" }, credentials: "same-origin" })
        .catch(() => { /* offline for a moment: the lock runs to its time-out */ });
    }, KEEP_ALIVE);
  }
  window.addEventListener("pagehide", () => {
    if (!lockUrl) return;
    const form = new FormData();
    if (token) form.append("csrfmiddlewaretoken", token.value);
    navigator.sendBeacon(status.dataset.releaseUrl, form);
  });
})();
