"use strict";
// The research export page: while an export is queued or running, poll its progress and reload when it ends.
(function () {
  for (const row of document.querySelectorAll("tr[data-status-url]")) {
    const cell = row.querySelector(".progress");
    const tick = () => fetch(row.dataset.statusUrl, {credentials: "same-origin"}).then((r) => r.json()).then((e) => {
      if (e.progress && e.progress.total) cell.textContent = `${e.progress.done} / ${e.progress.total} images`;
      if (e.status === "queued" || e.status === "running") setTimeout(tick, 2000);
      else window.location.reload();
    }).catch(() => setTimeout(tick, 5000));
    setTimeout(tick, 2000);
  }
})();
