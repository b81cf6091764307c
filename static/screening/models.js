"use strict";
// The model registry page: confirmations, the operating-point editor and training progress.
(function () {
  // Forms that change the registry ask first (data-confirm holds the question).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // Operating point editor: the trade-off of any threshold, from stored scores (no server round trip).
  const slider = document.getElementById("op-slider");
  if (slider) {
    const scores = JSON.parse(document.getElementById("op-scores").textContent);
    const exams = JSON.parse(document.getElementById("op-exams").textContent);
    const box = document.getElementById("op-threshold");
    const fmt = (x) => (x === null || Number.isNaN(x) ? "–" : x.toFixed(3));
    const show = (t) => {
      const pos = scores.filter((s) => s[0] === 1), neg = scores.filter((s) => s[0] === 0);
      const sens = pos.length ? pos.filter((s) => s[1] >= t).length / pos.length : null;
      const spec = neg.length ? neg.filter((s) => s[1] < t).length / neg.length : null;
      const recall = exams.length ? exams.filter((e) => e >= t).length / exams.length : null;
      document.getElementById("op-sens").textContent = fmt(sens);
      document.getElementById("op-spec").textContent = fmt(spec);
      document.getElementById("op-recall").textContent = fmt(recall);
    };
    slider.addEventListener("input", () => { box.value = Number(slider.value).toFixed(3); show(Number(slider.value)); });
    box.addEventListener("input", () => { slider.value = box.value; show(Number(box.value)); });
  }
  // Training progress: poll the run while it is queued or running.
  const active = JSON.parse(document.getElementById("active-run").textContent);
  if (!active) return;
  const url = document.getElementById("run-panel").dataset.statusUrl.replace("/0.json", "/" + active.id + ".json");
  const render = (run) => {
    const p = run.progress || {};
    document.getElementById("run-status").textContent = run.status;
    let stage = p.stage || run.status;
    if (p.stage === "features") stage = `features ${p.done}/${p.total}`;
    if (p.stage === "train") stage = `epoch ${p.epoch}/${p.epochs}: loss ${p.loss.toFixed(3)}` + (p.val_auc !== undefined ? `, early-stopping AUC ${p.val_auc.toFixed(3)}` : "");
    document.getElementById("run-stage").textContent = stage + (run.error ? " · " + run.error : "");
    const bar = document.getElementById("run-bar");
    bar.value = p.stage === "train" ? p.epoch / p.epochs : (p.stage === "done" ? 1 : 0);
    document.getElementById("run-history").innerHTML = (p.history || []).map((h) =>
      `<tr><td>${h.epoch}</td><td>${h.loss.toFixed(4)}</td><td>${h.val_auc === undefined ? "–" : h.val_auc.toFixed(3)}</td></tr>`).join("");
    return run.status === "queued" || run.status === "running";
  };
  const tick = () => fetch(url, {credentials: "same-origin"}).then((r) => r.json()).then((run) => {
    if (render(run)) setTimeout(tick, 2000); else setTimeout(() => window.location.reload(), 1500);
  }).catch(() => setTimeout(tick, 5000));
  render(active);
  tick();
})();
