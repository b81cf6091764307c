/* The AI panel (exam and per-image probabilities), the AI marks (the prediction's top regions,
 * toggled with K) and the heatmap overlay (H). Works when the page carries no AI result at all
 * (not scored, or left out for a blinded reader). */
import { $, aboveThreshold, el, predictionFlagged, prob, viewName } from "./util.js";

const SLOTS = ["R CC", "L CC", "R MLO", "L MLO"];

/** Reading order: R CC, L CC, R MLO, L MLO, then any other view. */
function readingOrder(images) {
  const rank = (i) => {
    const slot = SLOTS.indexOf(viewName(i));
    return slot < 0 ? SLOTS.length : slot;
  };
  return [...images].sort((a, b) => rank(a) - rank(b) || a.id - b.id);
}

/** Render the panel; returns how many predictions are still pending. */
export function renderAi(root, study) {
  const threshold = study.threshold; // breast level: the exam follows its breasts
  const levels = study.thresholds || { image: threshold, breast: threshold, region: threshold };
  const images = readingOrder(study.images || []);
  const counts = { queued: 0, running: 0, done: 0, failed: 0, none: 0 };
  for (const image of images) counts[image.prediction ? image.prediction.status : "none"] += 1;
  const exam = $("ai-exam");
  exam.className = "ai-exam";
  if (study.exam_score !== null && study.exam_score !== undefined) {
    // The exam is flagged exactly when one of its breasts is (the server's flag; the breast threshold as a fallback).
    const flagged =
      typeof study.exam_flag === "boolean"
        ? study.exam_flag
        : [study.score_right, study.score_left].some((v) => aboveThreshold(v, threshold));
    exam.replaceChildren(
      el("span", { class: "ai-label", text: "Exam probability " }),
      el("span", { class: `ai-value${flagged ? " flag" : ""}`, "data-testid": "exam-score", text: prob(study.exam_score) }),
      " ",
      flagged
        ? el("span", { class: "badge flag", "data-testid": "exam-flag", text: "⚑ Exam flagged: a breast is at or above its operating point" })
        : el("span", { class: "badge", "data-testid": "exam-flag", text: "Not flagged: no breast at or above its operating point" }),
    );
    exam.classList.toggle("flagged", flagged);
  } else if (images.length === 0) exam.textContent = "No images.";
  else if (!("exam_score" in study)) exam.textContent = "AI result not shown.";
  else if (counts.none === images.length) exam.textContent = "No AI model has scored this study.";
  else exam.textContent = "No exam probability yet.";
  const pending = counts.queued + counts.running;
  if (pending) {
    exam.append(
      el("span", {
        class: "ai-progress",
        text: ` AI working: ${counts.done} of ${images.length} images done, ${counts.running} running, ${counts.queued} queued.`,
      }),
    );
  }
  for (const [id, value, serverFlag] of [
    ["ai-right", study.score_right, study.flag_right],
    ["ai-left", study.score_left, study.flag_left],
  ]) {
    const flagged = typeof serverFlag === "boolean" ? serverFlag : aboveThreshold(value, threshold);
    $(id).replaceChildren(
      el("span", { class: flagged ? "flag" : "", "data-level": "breast", text: `${prob(value)}${flagged ? " ⚑ breast" : ""}` }),
    );
  }
  $("ai-images").replaceChildren(
    ...images.map((image) => {
      const p = image.prediction;
      let text;
      let cls = "";
      if (!p) text = "not scored";
      else if (p.status === "done") {
        const flagged = predictionFlagged(p, levels.image);
        text = `${prob(p.probability)}${flagged ? " ⚑ image" : ""}`;
        cls = flagged ? "flag" : "";
      } else if (p.status === "failed") {
        text = `failed: ${p.error || "no reason given"}`;
        cls = "error";
      } else text = p.status;
      const version = p && p.model_version && p.model_version !== study.exam_model ? ` (${p.model_version})` : "";
      return el(
        "li",
        { "data-image-id": image.id, "data-status": p ? p.status : "none" },
        el("span", { class: "ai-view", text: viewName(image) }),
        el("span", { class: `ai-value ${cls}`, text: text + version }),
      );
    }),
  );
  const model = study.exam_model || (images.find((i) => i.prediction) || {}).prediction?.model_version;
  const points =
    threshold !== null && threshold !== undefined
      ? ` · operating points: breast ${prob(levels.breast)}, image ${prob(levels.image)}, marks from ${prob(levels.region)}`
      : "";
  $("ai-model").textContent = model ? `Model ${model}${points}` : "";
  root.dataset.aiPending = String(pending);
  return pending;
}

/** The regions to draw on an image: only for a finished prediction, only while marks are on, only at or above
 * the model's region threshold (the server leaves the others out too). */
export function regionsOf(image, marksOn, regionThreshold = null) {
  const p = image.prediction;
  if (!marksOn || !p || p.status !== "done") return [];
  return drawable(image.regions, regionThreshold);
}

/** A prior image's AI regions (the layer of the prior's AI result, toggled with J): the viewer data carry them
 * only for a finished prediction, at or above its model's region threshold, and only when the reader may see
 * that study's AI. */
export function priorRegionsOf(image, layerOn) {
  return layerOn ? drawable(image.regions, null) : [];
}

/** The vendor's CAD marks on an image (the viewer data's `cad`, from the study's Mammography CAD SR), while the
 * layer is on: the server sends none to a reader from whom the study's AI is hidden. */
export function cadMarksOf(image, layerOn) {
  if (!layerOn) return [];
  return (image.cad || [])
    .filter((m) => m && [m.x, m.y, m.width, m.height].every(Number.isFinite))
    .map((m) => {
      const score = m.probability ?? m.certainty;
      return { ...m, text: `CAD ${m.finding}${score === null || score === undefined ? "" : ` ${prob(score)}`}` };
    });
}

function drawable(regions, regionThreshold) {
  return (regions || []).filter(
    (r) =>
      r &&
      [r.x, r.y, r.width, r.height].every(Number.isFinite) &&
      r.width > 0 &&
      r.height > 0 &&
      (regionThreshold === null || regionThreshold === undefined || r.probability >= regionThreshold),
  );
}

/** The heatmap's colour scale, as colourise() draws it: calibrated probability 0 (clear) to 1 (red). */
export function heatmapLegend() {
  const stops = [];
  for (let i = 0; i <= 10; i += 1) {
    const t = i / 10;
    const alpha = t < 0.15 ? 0 : Math.min(1, (t - 0.15) / 0.6);
    stops.push(`rgba(255, ${Math.round(235 * (1 - t))}, 0, ${alpha.toFixed(2)}) ${i * 10}%`);
  }
  const bar = el("span", { class: "legend-bar" });
  bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`; // CSSOM, not a style attribute (CSP)
  return el(
    "div",
    { class: "heatmap-legend", "data-testid": "heatmap-legend" },
    el("span", { class: "legend-title", text: "Heatmap: calibrated probability of each model cell" }),
    bar,
    el(
      "span",
      { class: "legend-scale" },
      el("span", { text: "0" }),
      el("span", { text: "0.25" }),
      el("span", { text: "0.5" }),
      el("span", { text: "0.75" }),
      el("span", { text: "1" }),
    ),
  );
}

const heatmaps = new Map(); // heatmap URL -> data: URL of the colourised map (or a pending promise)

/** Heatmap (8-bit grey, 255 = most suspicious) to transparent -> yellow -> red, as a data: URL. */
async function colourise(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = el("canvas", { width: bitmap.width, height: bitmap.height });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const t = d[i] / 255;
    d[i] = 255;
    d[i + 1] = Math.round(235 * (1 - t));
    d[i + 2] = 0;
    d[i + 3] = t < 0.15 ? 0 : Math.round(255 * Math.min(1, (t - 0.15) / 0.6));
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png");
}

/** The colourised heatmap of an image if ready; starts loading it otherwise (onReady redraws). */
export function heatmapOf(image, onReady) {
  const p = image.prediction;
  const url = p && p.status === "done" && p.heatmap_url ? p.heatmap_url : null;
  if (!url) return null;
  const known = heatmaps.get(url);
  if (typeof known === "string") return known;
  if (!known) {
    heatmaps.set(
      url,
      colourise(url).then(
        (data) => {
          heatmaps.set(url, data);
          onReady();
        },
        () => heatmaps.set(url, ""),
      ),
    );
  }
  return null;
}
