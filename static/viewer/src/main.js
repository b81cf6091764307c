/* The case viewer: Cornerstone3D cells in the hanging protocol, the reading tools, priors,
 * AI panel and marks, and the decision form. Data: the study API (polled while the AI works)
 * and the viewer data (pixel sources, AI regions, priors) from the portal. */
import "./csp.js"; // first: Cornerstone's SVG style attributes go through the CSSOM (allowed by the CSP)
import { cadMarksOf, renderAi, heatmapLegend, heatmapOf, priorRegionsOf, regionsOf } from "./ai.js";
import { Cell } from "./cell.js";
import { MARK_TOOLS } from "./marks.js";
import { createDecision } from "./decision.js";
import { renderFacts } from "./facts.js";
import { layOut } from "./hanging.js";
import { firstPaint } from "./handover.js";
import { getEngine, initImaging } from "./imaging.js";
import { bindKeyboard } from "./keyboard.js";
import { followMirrored, showAtScale } from "./navigation.js";
import { prefetch } from "./prefetch.js";
import { renderPriors, renderThumbnails } from "./priors.js";
import { PROTOCOLS, protocolById, saveProtocol, savedProtocol, withComparison } from "./protocols.js";
import { addViewport, setupTools, useMode } from "./tools.js";
import { $, TYPE_LABELS, el, fetchJson, fitViewerToWindow, predictionFlagged, prob, say, viewName } from "./util.js";
import { eventTarget } from "@cornerstonejs/core";

const POLL_MS = 3000;
const root = $("viewer");

const config = {
  studyUrl: root.dataset.studyUrl,
  reviewsUrl: root.dataset.reviewsUrl,
  dataUrl: root.dataset.viewerDataUrl,
  worklistUrl: root.dataset.worklistUrl || "/",
  corrects: root.dataset.corrects || "", // the version this reader's submission corrects, if any
}; // the bundle is only linked from the viewer page

const state = {
  study: null,
  data: null,
  cells: [],
  active: null,
  mode: "pan",
  heatmap: false,
  opacity: Number($("heatmap-opacity").value),
  marks: true,
  linkWl: false,
  comparison: false,
  protocol: savedProtocol(root),
  step: 0, // index in the protocol's sequence
  prior: 0, // index of the prior compared with
  syncPanZoom: false,
  priorAi: true, // the prior's AI regions as a layer on its images
  cad: true, // the vendor's CAD marks (Mammography CAD SR) as a layer on the current images
  findings: [],
  voi: new Map(), // image id -> VOI range kept across layout changes
  lut: new Map(), // image id -> whether its VOI LUT table is shown (chosen or left), kept likewise
  imageIds: "",
  submitting: false,
  dirty: false,
  attemptKey: null,
  correctionStarted: false, // the form started from the read it corrects (decision.startCorrection)
  prefetch: null, // the next case's pixel data: fetched once, after this case's first paint
  built: false, // whether the cells were built once (the first-paint layer shows only the first layout)
};

const decision = createDecision({ state, config, redraw: () => redrawMarks() });

// ------------------------------------------------------------------ cells

function redrawMarks() {
  for (const cell of state.cells) cell.drawMarks();
}

const hooks = {
  registerViewport: (cell) => addViewport(cell.viewportId),
  savedVoi: (cell) => state.voi.get(cell.image.id) || null,
  savedLut: (cell) => state.lut.get(cell.image.id) ?? null,
  lutChanged: (cell, on) => (on === null ? state.lut.delete(cell.image.id) : state.lut.set(cell.image.id, on)),
  flagged: (p) => predictionFlagged(p, state.study ? state.study.threshold : null),
  mode: () => state.mode,
  say,
  activate: (cell) => setActive(cell),
  toggleEnlarge: (cell) => toggleEnlarge(cell),
  addFinding: (cell, box) => decision.addFinding(cell.image, box),
  aiRegions: (cell) =>
    cell.prior
      ? priorRegionsOf(cell.image, state.priorAi)
      : regionsOf(cell.image, state.marks, state.study?.thresholds ? state.study.thresholds.region : null),
  cadMarks: (cell) => (cell.prior ? [] : cadMarksOf(cell.image, state.cad)),
  heatmap: (cell) => {
    if (!state.heatmap || cell.prior) return null;
    const url = heatmapOf(cell.image, redrawMarks);
    return url ? { url, opacity: state.opacity } : null;
  },
  findings: (cell) => {
    if (cell.prior) return [];
    const out = [];
    const latest = state.study && state.study.reviews && state.study.reviews[0];
    // a mark is labelled with its finding's number: the same number on CC and MLO is one finding
    const savedNumber = new Map(((latest && latest.reported_findings) || []).flatMap((r) => r.marks.map((id) => [id, r.number])));
    for (const f of (latest && latest.findings) || []) {
      const n = savedNumber.has(f.id) ? ` F${savedNumber.get(f.id)}` : "";
      if (f.image === cell.image.id) out.push({ finding: f, text: `v${latest.version}${n} ${TYPE_LABELS[f.type] || f.type}`, kind: "saved" });
    }
    state.findings.forEach((f) => {
      const n = f.reported ? state.reported.indexOf(f.reported) + 1 : 0;
      if (f.image === cell.image.id) out.push({ finding: f, text: `F${n} ${TYPE_LABELS[f.type] || f.type}`, kind: "new" });
    });
    return out;
  },
  studyFacts: (cell) => {
    const facts = cell.prior || (state.data && state.data.study) || {};
    return { age: facts.age ?? null, date: facts.study_date || null };
  },
  cameraChanged: (cell) => {
    if (!cell.fitting) cell.fitted = false;
    if (state.syncPanZoom) followMirrored(cell, state.cells);
  },
  windowChanged: (cell) => {
    state.voi.set(cell.image.id, cell.viewport.getProperties().voiRange);
    if (cell === activeCell()) showWindow(cell);
    if (state.linkWl && !state.linking) {
      state.linking = true;
      const range = cell.viewport.getProperties().voiRange;
      for (const other of state.cells) {
        if (other !== cell && other.loaded) {
          other.setVoiRange(range);
          state.voi.set(other.image.id, range);
        }
      }
      state.linking = false;
    }
  },
};

function setActive(cell) {
  if (state.active === cell) return;
  if (state.active) state.active.el.classList.remove("active");
  state.active = cell;
  if (cell) {
    cell.el.classList.add("active");
    showWindow(cell);
  }
}

function activeCell() {
  return state.active && state.cells.includes(state.active) ? state.active : state.cells.find((c) => c.loaded) || null;
}

function toggleEnlarge(cell) {
  const on = !cell.el.classList.contains("maximised");
  firstPaint().releaseAll();
  for (const other of state.cells) other.el.classList.remove("maximised");
  cell.fitted = true; // fitted again to its new size
  cell.el.classList.toggle("maximised", on);
  root.classList.toggle("has-maximised", on);
  root.dataset.enlarged = on ? String(cell.image.id) : "";
  resizeAll();
}

let resizeFrame = 0;
function resizeAll() {
  if (resizeFrame) return;
  resizeFrame = requestAnimationFrame(() => {
    resizeFrame = 0;
    const engine = getEngine();
    if (!engine) return;
    engine.resize(true, true);
    for (const cell of state.cells) if (cell.fitted) cell.fit();
  });
}

function imagesWithSources(images, sources) {
  return images.map((image) => ({ ...image, ...(sources[image.id] || {}) }));
}

/** (Re)build the cells for the current layout; ready when every cell has loaded or failed. */
async function build() {
  if (state.built) firstPaint().releaseAll(); // the first-paint layer shows the first layout only
  state.built = true;
  for (const cell of state.cells) cell.unmount();
  state.cells = [];
  state.active = null;
  root.classList.remove("has-maximised");
  root.dataset.ready = "false";
  const sources = (state.data && state.data.images) || {};
  const prior = chosenPrior();
  const priorView = prior ? { ...prior, images: imagesWithSources(prior.images, {}) } : null;
  const step = withComparison(state.protocol.steps[state.step], state.comparison);
  const cells = layOut({
    grid: $("hanging"),
    strip: $("extra-strip"),
    step,
    current: imagesWithSources(state.study.images, sources),
    prior: priorView,
    makeCell: (image, side, priorStudy) => new Cell(image, { side, prior: priorStudy, hooks }),
  });
  state.cells = cells;
  const count = state.study.images.length;
  $("stage-message").hidden = count > 0;
  $("stage-message").textContent = count ? "" : "This study has no images.";
  root.dataset.layout = cells.some((c) => c.prior) ? "comparison" : "current";
  root.dataset.protocol = state.protocol.id;
  root.dataset.step = String(state.step);
  $("hanging-step").textContent = `${state.step + 1}/${state.protocol.steps.length} ${state.protocol.steps[state.step].name}`;
  await new Promise((resolve) => requestAnimationFrame(resolve));
  await Promise.allSettled(cells.map((cell) => cell.mount()));
  const failed = cells.filter((c) => c.failed).length;
  if (failed) say(`${failed} image(s) could not be loaded: see the cells. The decision can still be made.`);
  resizeAll();
  showWindow(activeCell());
  requestAnimationFrame(() => requestAnimationFrame(() => (root.dataset.ready = "true")));
  afterPaint(cells);
}

/** Once the case's images have painted at full resolution (a `viewer:case-painted` mark), fetch the next
 * case's at low priority, when the page is idle: once per page. */
async function afterPaint(cells) {
  if (state.prefetch) return;
  state.prefetch = "waiting";
  const loaded = cells.filter((c) => c.loaded);
  const settle = new Promise((resolve) => setTimeout(resolve, 10_000)); // a cell unmounted mid-load never paints
  await Promise.race([Promise.all(loaded.map((c) => c.painted)), settle]);
  if (state.cells === cells) performance.mark("viewer:case-painted");
  const next = (state.data && state.data.next) || null;
  const urls = next ? next.sources.map((s) => s.url) : [];
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 200));
  await new Promise((resolve) => idle(resolve, { timeout: 2000 }));
  root.dataset.prefetch = "running";
  const leaving = new AbortController();
  window.addEventListener("pagehide", () => leaving.abort(), { once: true });
  try {
    const held = await prefetch(urls, { signal: leaving.signal });
    root.dataset.prefetch = `done:${held}`;
    performance.mark("viewer:next-prefetched", { detail: { held, study: next && next.id } });
  } catch {
    root.dataset.prefetch = "failed"; // the next case loads from the network as usual
  }
}

// ------------------------------------------------------------------ tools

function setMode(mode) {
  state.mode = mode;
  root.dataset.mode = mode;
  useMode(mode);
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  if (mode === "mark") say(`Mark mode: drag a box or click a point (${TYPE_LABELS[$("finding-type").value]}).`);
}

function showWindow(cell) {
  const w = cell ? cell.window() : null;
  $("wl-readout").textContent = w ? `C ${Math.round(w.centre)} / W ${Math.round(w.width)}` : "";
  root.dataset.window = w ? `${Math.round(w.centre)}/${Math.round(w.width)}` : "";
  const select = $("wl-preset");
  const presets = cell ? cell.presets() : [];
  select.replaceChildren(
    el("option", { value: "", text: "Presets…" }),
    ...presets.map((p, i) =>
      el("option", { value: String(i), text: p.lut ? p.name : `${p.name} (C ${Math.round(p.centre)} W ${Math.round(p.width)})` }),
    ),
  );
  select.disabled = presets.length === 0;
}

function applyPreset(index) {
  const cell = activeCell();
  const preset = cell && cell.presets()[Number(index)];
  if (preset && preset.lut) cell.useVoiLut();
  else if (preset) cell.setWindow(preset.centre, preset.width);
  $("wl-preset").value = "";
}

function setToggle(action, on) {
  const button = document.querySelector(`[data-action="${action}"]`);
  if (button) button.setAttribute("aria-pressed", String(on));
}

function setHeatmap(on) {
  state.heatmap = on;
  root.dataset.heatmap = on ? "on" : "off";
  const legend = $("heatmap-legend");
  if (legend) {
    if (!legend.firstChild) legend.append(heatmapLegend());
    legend.hidden = !on;
  }
  setToggle("heatmap", on);
  if (on && !state.cells.some((c) => c.image.prediction && c.image.prediction.heatmap_url)) {
    say("No heatmap: the AI has not finished these images, or its result is not shown.");
  }
  redrawMarks();
}

/** A layer of marks on or off: the AI's (K), the prior's AI (J), the vendor's CAD (V). */
function setLayer(key, action, on) {
  state[key] = on;
  root.dataset[key === "marks" ? "aiMarks" : key] = on ? "on" : "off";
  setToggle(action, on);
  redrawMarks();
}

function setLinkWl(on) {
  state.linkWl = on;
  root.dataset.linkWl = String(on);
  setToggle("link-wl", on);
  if (on && activeCell()) hooks.windowChanged(activeCell());
}

function toggleClass(action, name) {
  const on = !root.classList.contains(name);
  root.classList.toggle(name, on);
  setToggle(action, on);
}

function chosenPrior() {
  const priors = (state.data && state.data.priors) || [];
  const wanted = state.comparison || state.protocol.needsPrior;
  return wanted && priors.length ? priors[Math.min(state.prior, priors.length - 1)] : null;
}

function toggleComparison() {
  const prior = state.data && state.data.priors && state.data.priors[state.prior];
  if (!prior) {
    say("This woman has no earlier study in the portal.");
    return;
  }
  state.comparison = !state.comparison;
  setToggle("compare", state.comparison);
  build();
  say(state.comparison ? `Comparison with the prior study of ${prior.study_date || "unknown date"}.` : "Current study only.");
}

/** Compare with the index-th prior (newest first). */
function choosePrior(index) {
  state.prior = index;
  state.comparison = false;
  showPriors();
  toggleComparison();
}

function showPriors() {
  const priors = (state.data && state.data.priors) || [];
  renderPriors(priors, state.prior, choosePrior);
  renderThumbnails(state.study || { images: [] }, priors, {
    showCurrent: (image) => {
      const cell = state.cells.find((c) => !c.prior && c.image.id === image.id);
      if (cell) toggleEnlarge(cell);
      else say(`${viewName(image)} is not hung in this step: step on with ] or choose another protocol.`);
    },
    showPrior: choosePrior,
  });
}

function setProtocol(id) {
  state.protocol = protocolById(id);
  state.step = 0;
  saveProtocol(root, state.protocol.id, say);
  $("hanging-protocol").value = state.protocol.id;
  if (state.protocol.needsPrior && !chosenPrior()) say("This woman has no earlier study in the portal: the current study alone.");
  if (state.study) build();
}

/** One step on (or back) through the protocol's sequence. */
function stepProtocol(delta) {
  const count = state.protocol.steps.length;
  if (count < 2) {
    say(`${state.protocol.name} has one step: choose the screening sequence to step through views.`);
    return;
  }
  state.step = (state.step + delta + count) % count;
  build();
  say(`${state.protocol.name}: ${state.protocol.steps[state.step].name} (${state.step + 1} of ${count}).`);
}

function setSyncPanZoom(on) {
  state.syncPanZoom = on;
  root.dataset.syncPanZoom = String(on);
  setToggle("sync", on);
}

function showScale(mode) {
  const refused = showAtScale(state.cells, mode);
  root.dataset.display = mode;
  if (mode === "true" && refused) say(`${refused} image(s) have no pixel spacing: true size needs a calibrated image.`);
  else say(mode === "true" ? "True size: 1 mm on the screen is 1 mm at the detector (at 96 CSS pixels to the inch)." : "1:1: one stored pixel on one screen pixel.");
}

function zoomActive(factor) {
  const cell = activeCell();
  const vp = cell && cell.viewport;
  if (!vp || !cell.loaded) return;
  const camera = vp.getCamera();
  vp.setCamera({ parallelScale: camera.parallelScale / factor });
  vp.render();
}

function fitAll() {
  for (const cell of state.cells) cell.fit();
  root.dataset.display = "fit";
}

function resetAll() {
  for (const cell of state.cells) {
    cell.el.classList.remove("maximised");
    if (cell.loaded) {
      cell.resetDisplay();
      state.voi.delete(cell.image.id);
    }
  }
  root.classList.remove("has-maximised");
  root.dataset.enlarged = "";
  resizeAll();
  fitAll();
  showWindow(activeCell());
}

// ------------------------------------------------------------------ data

function applyStudy(study) {
  state.study = study;
  renderFacts(study, state.data && state.data.identity);
  decision.renderHistory(study);
  decision.startCorrection(study);
  const pending = renderAi(root, study);
  const ids = [...study.images].map((i) => i.id).sort((a, b) => a - b).join(",");
  if (ids !== state.imageIds) {
    state.imageIds = ids;
    build();
  } else {
    const byId = Object.fromEntries(study.images.map((i) => [i.id, i]));
    for (const cell of state.cells) if (!cell.prior && byId[cell.image.id]) cell.setImage(byId[cell.image.id]);
  }
  return pending;
}

let polls = 0;
let wasPending = 0;

async function poll() {
  polls += 1;
  let pending = 0;
  try {
    const [study, data] = await Promise.all([fetchJson(config.studyUrl), fetchJson(config.dataUrl)]);
    state.data = data;
    state.study = study;
    showPriors();
    pending = applyStudy(study);
    if (wasPending && !pending) {
      const score = state.study.exam_score;
      say(score === null || score === undefined ? "AI finished." : `AI finished: exam probability ${prob(score)}.`);
    }
    wasPending = pending;
  } catch (error) {
    say(`Could not load the study: ${error.message}. Retrying…`);
    setTimeout(poll, POLL_MS * 3);
    return;
  }
  if (pending) setTimeout(poll, polls < 40 ? POLL_MS : POLL_MS * 5);
}

// ------------------------------------------------------------------ wiring

function wire() {
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  const buttonActions = {
    "zoom-in": () => zoomActive(1.25),
    "zoom-out": () => zoomActive(0.8),
    fit: fitAll,
    invert: () => activeCell() && activeCell().toggleInvert(),
    reset: resetAll,
    heatmap: () => setHeatmap(!state.heatmap),
    marks: () => setLayer("marks", "marks", !state.marks),
    "link-wl": () => setLinkWl(!state.linkWl),
    info: () => toggleClass("info", "info-off"),
    annotations: () => toggleClass("annotations", "annotations-off"),
    compare: toggleComparison,
    sync: () => setSyncPanZoom(!state.syncPanZoom),
    "prior-ai": () => setLayer("priorAi", "prior-ai", !state.priorAi),
    cad: () => setLayer("cad", "cad", !state.cad),
    pixel: () => showScale("pixel"),
    "true-size": () => showScale("true"),
    "next-step": () => stepProtocol(1),
    "previous-step": () => stepProtocol(-1),
    help: () => $("help").showModal(),
  };
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => buttonActions[button.dataset.action]());
  }
  $("wl-preset").addEventListener("change", (event) => event.target.value !== "" && applyPreset(event.target.value));
  $("heatmap-opacity").addEventListener("input", (event) => {
    state.opacity = Number(event.target.value);
    redrawMarks();
  });
  const protocols = $("hanging-protocol");
  protocols.replaceChildren(...PROTOCOLS.map((p) => el("option", { value: p.id, text: p.name, title: p.title })));
  protocols.value = state.protocol.id;
  protocols.addEventListener("change", (event) => setProtocol(event.target.value));
  $("finding-type").addEventListener("change", () => state.mode !== "mark" && setMode("mark"));
  bindKeyboard({
    help: $("help"),
    submit: decision.submit,
    onKey: (key) => key !== "c" && decision.armed && decision.disarm(),
    actions: {
      h: buttonActions.heatmap,
      k: buttonActions.marks,
      i: buttonActions.invert,
      l: buttonActions["link-wl"],
      o: buttonActions.info,
      t: buttonActions.annotations,
      b: toggleComparison,
      s: buttonActions.sync,
      j: buttonActions["prior-ai"],
      v: buttonActions.cad,
      x: buttonActions.pixel,
      z: buttonActions["true-size"],
      "]": buttonActions["next-step"],
      arrowright: buttonActions["next-step"],
      "[": buttonActions["previous-step"],
      arrowleft: buttonActions["previous-step"],
      w: () => setMode(state.mode === "wl" ? "pan" : "wl"),
      m: () => setMode(state.mode === "mark" ? "pan" : "mark"),
      d: () => setMode(state.mode === "ruler" ? "pan" : "ruler"),
      g: () => setMode(state.mode === "magnify" ? "pan" : "magnify"),
      p: () => setMode("pan"),
      escape: () => setMode("pan"),
      e: () => activeCell() && toggleEnlarge(activeCell()),
      f: fitAll,
      r: resetAll,
      "+": () => zoomActive(1.25),
      "=": () => zoomActive(1.25),
      "-": () => zoomActive(0.8),
      _: () => zoomActive(0.8),
      n: () => decision.chooseDecision("normal"),
      a: () => decision.chooseDecision("abnormal"),
      c: decision.confirmAi,
      digit: (key) => decision.setBirads(key),
      "?": buttonActions.help,
      delete: decision.deleteLast,
    },
  });
  eventTarget.addEventListener("cornerstoneimageloadprogress", (event) => {
    const { imageId, percentComplete } = event.detail || {};
    for (const cell of state.cells) if (cell.imageId === imageId && percentComplete !== undefined) cell.progress(percentComplete);
  });
  root.addEventListener("viewer:early-shown", (event) => {
    for (const cell of state.cells) if (cell.image.id === event.detail.image && !cell.loaded && !cell.failed) cell.showBadge("");
  });
  root.addEventListener("viewer:pixel-progress", (event) => {
    const { url, percent } = event.detail; // bytes the early script fetches (early.js)
    for (const cell of state.cells) if (cell.imageId === `wadouri:${url}`) cell.progress(percent);
  });
  new ResizeObserver(resizeAll).observe($("stage"));
  const fitToWindow = () => fitViewerToWindow(root); // done first by the early script (firstpaint.js)
  window.addEventListener("resize", fitToWindow);
  fitToWindow();
}

async function start() {
  const saved = sessionStorage.getItem("portal.saved");
  if (saved) {
    sessionStorage.removeItem("portal.saved");
    say(saved);
    $("status-line").classList.add("saved");
  }
  wire();
  try {
    await initImaging();
    setupTools(MARK_TOOLS);
  } catch (error) {
    $("stage-message").hidden = false;
    $("stage-message").textContent = `The image viewer could not start (${error.message}). The decision can still be made.`;
  }
  setMode("pan");
  setHeatmap(false);
  setLayer("marks", "marks", true);
  setLinkWl(false);
  setSyncPanZoom(false);
  setLayer("priorAi", "prior-ai", true);
  setLayer("cad", "cad", true);
  poll();
}

if (root) start();
