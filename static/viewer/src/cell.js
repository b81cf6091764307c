/* One image cell of the hanging: a Cornerstone3D stack viewport at full bit depth, the chest wall
 * facing the centre line, per-image window/level, a pixel-value probe, the information overlay,
 * and an SVG layer in image coordinates for findings, AI marks and the heatmap. */
import { Events, ImageQualityStatus, ViewportType, attributeText, csUtils, dicomAttributes, getEngine, imageIdFor, loadImage } from "./imaging.js";
import { SIDE_NAMES, el, svg, viewName } from "./util.js";
import { applyLinear, applyVoiLut, voiLutOf } from "./voilut.js";

const { windowLevel } = csUtils;

export function describeError(error) {
  if (!error) return "unknown error";
  const xhr = error.request || (error.error instanceof XMLHttpRequest ? error.error : null);
  if (xhr) {
    let message = `HTTP ${xhr.status}`;
    try {
      const body = JSON.parse(new TextDecoder().decode(xhr.response));
      if (body.error && body.error.message) message += `: ${body.error.message}`;
    } catch {
      /* not the portal's JSON error */
    }
    return message;
  }
  if (typeof error === "string") return error;
  if (error.message) return error.message;
  if (error.error) return describeError(error.error);
  return String(error);
}

/** Which edge is the chest wall: the tissue-heavy (brighter after the photometric) half. */
function chestWallOnLeft(image) {
  const pixels = image.getPixelData();
  const { columns, rows } = image;
  const step = Math.max(1, Math.floor(Math.min(columns, rows) / 64));
  let left = 0;
  let right = 0;
  for (let y = 0; y < rows; y += step) {
    const row = y * columns;
    for (let x = 0; x < columns; x += step) {
      if (x < columns / 2) left += pixels[row + x];
      else right += pixels[row + x];
    }
  }
  const photometric = attributeText(dicomAttributes(image.imageId), "PhotometricInterpretation");
  const monochrome1 = (photometric || image.photometricInterpretation) === "MONOCHROME1";
  return monochrome1 ? left <= right : left >= right;
}

export class Cell {
  /**
   * @param image the study API's image (laterality, view, id, prediction), with `source` and
   *   `regions` from the viewer data
   * @param side "R" (viewer's left, chest wall on the right edge), "L" or "U"
   */
  constructor(image, { side, prior = null, hooks }) {
    this.image = image;
    this.side = side;
    this.prior = prior;
    this.hooks = hooks;
    this.viewportId = `vp-${image.id}`;
    this.imageId = image.source ? imageIdFor(image.source) : null;
    this.loaded = false;
    this.failed = null;
    this.painted = new Promise((resolve) => (this.onPainted = resolve)); // settles on the first full-resolution paint or failure
    this.fitted = true;
    this.drag = null;
    this.element = el("div", { class: "vp-element" });
    this.marks = svg("svg", { class: "marks", "aria-hidden": "true" });
    this.label = el("div", { class: "vp-label" });
    this.info = el("div", { class: "vp-info" });
    this.readout = el("div", { class: "vp-readout" });
    this.probe = el("span", { class: "vp-probe" });
    this.wl = el("span", { class: "vp-wl" });
    this.readout.append(this.wl, this.probe);
    this.badge = el("div", { class: "vp-badge", role: "status" });
    this.enlarge = el("button", {
      type: "button",
      class: "vp-enlarge",
      title: "Enlarge this view, and back (double-click, E)",
      "aria-label": `Enlarge ${viewName(image)}`,
      onclick: () => hooks.toggleEnlarge(this),
    });
    this.el = el(
      "div",
      {
        class: `vp side-${side}${prior ? " prior" : ""}`,
        "data-image-id": image.id,
        "data-slot": `${image.laterality}-${image.view}`,
        "data-state": "loading",
        tabindex: "0",
        role: "img",
        "aria-label": `${SIDE_NAMES[image.laterality] || image.laterality} ${image.view} image #${image.id}${prior ? " (prior)" : ""}`,
      },
      this.element,
      this.marks,
      this.label,
      this.info,
      this.readout,
      this.badge,
      this.enlarge,
    );
    this.updateLabel();
    this.bind();
  }

  get viewport() {
    const engine = getEngine();
    return engine ? engine.getViewport(this.viewportId) : null;
  }

  /** Attach to the page (the element must have its size), then load and show the pixels. */
  async mount() {
    const engine = getEngine();
    engine.enableElement({
      viewportId: this.viewportId,
      type: ViewportType.STACK,
      element: this.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.hooks.registerViewport(this);
    if (!this.imageId) return this.fail("no pixel source for this image");
    this.showBadge("Loading…");
    try {
      performance.mark("viewer:image-requested", { detail: { image: this.image.id } });
      const { image, from } = await loadImage(this.imageId);
      this.el.dataset.source = from;
      performance.mark("viewer:image-loaded", { detail: { image: this.image.id, from } });
      if (!this.viewport) return null; // the layout changed while loading
      await this.viewport.setStack([this.imageId]);
      this.csImage = image;
      this.image.columns = image.columns;
      this.image.rows = image.rows;
      this.flip = this.side !== "U" && chestWallOnLeft(image) === (this.side === "R");
      this.el.dataset.flip = String(this.flip);
      this.attributes = dicomAttributes(this.imageId);
      this.voiLut = voiLutOf(this.attributes);
      this.initialVoi = this.viewport.getProperties().voiRange;
      this.initialInvert = Boolean(this.viewport.getProperties().invert);
      this.loaded = true;
      const lutChosen = this.hooks.savedLut(this);
      if (this.voiLut && (lutChosen ?? this.lutByDefault())) this.useVoiLut(false);
      if (this.hooks.savedVoi(this)) this.viewport.setProperties({ voiRange: this.hooks.savedVoi(this) });
      this.el.dataset.state = "loaded";
      this.el.dataset.photometric = attributeText(this.attributes, "PhotometricInterpretation") || image.photometricInterpretation || "";
      this.fit();
      this.showBadge("");
      this.renderInfo();
      this.updateWindow();
      return image;
    } catch (error) {
      return this.fail(describeError(error));
    }
  }

  fail(reason) {
    this.failed = reason;
    this.onPainted(false);
    this.el.dataset.state = "failed";
    this.el.classList.add("broken");
    this.showBadge(`${viewName(this.image)}: the pixel data could not be loaded (${reason}). The other images stay readable.`);
    return null;
  }

  unmount() {
    const engine = getEngine();
    if (engine && engine.getViewport(this.viewportId)) engine.disableElement(this.viewportId);
    this.el.remove();
  }

  showBadge(text) {
    this.badge.hidden = !text;
    this.badge.textContent = text || "";
  }

  progress(percent) {
    if (!this.loaded && !this.failed) this.showBadge(`Loading ${viewName(this.image)}: ${percent}%`);
  }

  updateLabel() {
    const p = this.image.prediction;
    let ai = p === undefined ? "" : "AI: not scored";
    let flagged = false;
    if (p) {
      if (p.status === "done") {
        flagged = this.hooks.flagged(p);
        ai = `AI ${Number(p.probability).toFixed(2)}${flagged ? " ⚑" : ""}`;
      } else if (p.status === "failed") ai = "AI failed";
      else ai = `AI ${p.status}…`;
    }
    const name = el("strong", { text: `${this.prior ? "Prior " : ""}${viewName(this.image)}` });
    // replaceChildren writes a null child as the text "null" (a prior image has no AI line).
    this.label.replaceChildren(...[name, ai ? el("span", { class: flagged ? "flag" : "", text: ai }) : null].filter(Boolean));
    this.el.classList.toggle("flagged", flagged);
  }

  setImage(image) {
    const { source, regions, columns, rows } = this.image;
    this.image = { ...image, source, regions, columns: columns || image.columns, rows: rows || image.rows };
    this.updateLabel();
    this.drawMarks();
  }

  // ------------------------------------------------------------ geometry

  toCanvas(x, y) {
    return this.viewport.worldToCanvas(csUtils.imageToWorldCoords(this.imageId, [x, y]));
  }

  toImage(cx, cy) {
    return csUtils.worldToImageCoords(this.imageId, this.viewport.canvasToWorld([cx, cy]));
  }

  /** Fit the whole image, chest wall on the centre line (R on the left half, L on the right); MLO at the top. */
  fit() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    this.fitting = true;
    vp.resetCamera();
    vp.setCamera({ flipHorizontal: Boolean(this.flip) });
    const { columns, rows } = this.image;
    const corners = [
      [0, 0],
      [columns, 0],
      [0, rows],
      [columns, rows],
    ].map(([x, y]) => this.toCanvas(x, y));
    const xs = corners.map((c) => c[0]);
    const ys = corners.map((c) => c[1]);
    const width = this.element.clientWidth;
    const alone = this.el.classList.contains("maximised");
    let dx = 0;
    if (!alone && this.side === "R") dx = width - Math.max(...xs);
    else if (!alone && this.side === "L") dx = -Math.min(...xs);
    const dy = this.image.view === "MLO" && !alone ? -Math.min(...ys) : 0;
    this.panCanvas(dx, dy);
    this.fitted = true;
    this.fitting = false;
    vp.render();
  }

  /** Move the image by (dx, dy) canvas pixels. */
  panCanvas(dx, dy) {
    const vp = this.viewport;
    const a = vp.canvasToWorld([0, 0]);
    const b = vp.canvasToWorld([dx, dy]);
    const camera = vp.getCamera();
    const d = [0, 1, 2].map((i) => b[i] - a[i]);
    vp.setCamera({
      focalPoint: camera.focalPoint.map((v, i) => v - d[i]),
      position: camera.position.map((v, i) => v - d[i]),
    });
  }

  /** Zoom so that an image-space box fills about two thirds of the cell, centred. */
  zoomTo({ x, y, width, height }) {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    const centre = csUtils.imageToWorldCoords(this.imageId, [x + width / 2, y + height / 2]);
    const top = csUtils.imageToWorldCoords(this.imageId, [x, y]);
    const corner = csUtils.imageToWorldCoords(this.imageId, [x + width, y + height]);
    const aspect = this.element.clientWidth / Math.max(1, this.element.clientHeight);
    const worldH = Math.abs(corner[1] - top[1]);
    const worldW = Math.abs(corner[0] - top[0]);
    const camera = vp.getCamera();
    const offset = camera.position.map((v, i) => v - camera.focalPoint[i]);
    vp.setCamera({
      focalPoint: centre,
      position: centre.map((v, i) => v + offset[i]),
      parallelScale: Math.max(worldH, worldW / aspect, 1) * 0.75,
    });
    this.fitted = false;
    vp.render();
  }

  // ------------------------------------------------------------ window/level

  /** Centre and width in stored units (after the Modality LUT), from the viewport's VOI range. */
  window() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return null;
    const range = vp.getProperties().voiRange;
    if (!range) return null;
    if (this.voiFunction() === "LINEAR_EXACT") return { centre: (range.lower + range.upper) / 2, width: range.upper - range.lower };
    const { windowWidth, windowCenter } = windowLevel.toWindowLevel(range.lower, range.upper);
    return { centre: windowCenter, width: windowWidth };
  }

  /** The image's VOI LUT Function (LINEAR, LINEAR_EXACT or SIGMOID): how its windows map values to grey. */
  voiFunction() {
    return (this.csImage && this.csImage.voiLUTFunction) || "LINEAR";
  }

  /** A linear window (replaces a VOI LUT table in use). */
  setWindow(centre, width, suppress = false) {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    const range = windowLevel.toLowHighRange(Math.max(1, width), centre, this.voiFunction());
    if (this.lutActive) {
      this.lutActive = false;
      this.hooks.lutChanged(this, false);
      applyLinear(vp, range, suppress);
    } else {
      vp.setProperties({ voiRange: range }, suppress);
      vp.render();
    }
    this.updateWindow();
  }

  /** The image's VOI LUT table is shown by default only when it has no window (DICOM lets the viewer
   * choose when it has both; the windows stay the default then, the table a preset). */
  lutByDefault() {
    return Boolean(this.voiLut) && [].concat(this.attributes.WindowCenter ?? []).length === 0;
  }

  /** Show the image through its VOI LUT table (windowing then stretches the table). */
  useVoiLut(announce = true) {
    const vp = this.viewport;
    if (!vp || !this.loaded || !this.voiLut) return;
    this.lutActive = applyVoiLut(vp, this.voiLut);
    this.hooks.lutChanged(this, this.lutActive);
    this.updateWindow();
    if (announce) this.hooks.windowChanged(this);
  }

  /** Cornerstone's initial display again: the VOI LUT table where it is the default. */
  resetDisplay() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    if (this.voiFunction() === "SIGMOID" && this.initialVoi) {
      // Cornerstone's reset looks for a colour map matching the sampled sigmoid, finds none and throws
      // (the image went black): the image's first window and inversion are set back instead.
      vp.setProperties({ invert: this.initialInvert, voiRange: { ...this.initialVoi } });
      vp.render();
    } else vp.resetProperties();
    this.lutActive = false;
    this.hooks.lutChanged(this, null);
    if (this.lutByDefault()) this.useVoiLut(false);
    this.updateWindow();
  }

  setVoiRange(range, suppress = true) {
    const vp = this.viewport;
    if (!vp || !this.loaded || !range) return;
    vp.setProperties({ voiRange: { ...range } }, suppress);
    vp.render();
    this.updateWindow();
  }

  updateWindow() {
    const w = this.window();
    const text = w ? `${this.lutActive ? "VOI LUT · " : ""}C ${Math.round(w.centre)} W ${Math.round(w.width)}` : "";
    this.wl.textContent = text;
    this.el.dataset.voi = this.lutActive ? "lut" : "linear";
    this.el.dataset.window = w ? `${Math.round(w.centre)}/${Math.round(w.width)}` : "";
    this.el.dataset.invert = String(Boolean(this.viewport && this.loaded && this.viewport.getProperties().invert));
  }

  /** The DICOM window presets (centre/width pairs) of this image, with their explanations. */
  presets() {
    const image = this.loaded ? this.csImage : null;
    if (!image) return [];
    const values = (keyword) => [].concat(this.attributes[keyword] ?? []);
    // The image's own windows (the loader's min/max window is no DICOM window: the full range is below).
    const centres = values("WindowCenter");
    const widths = values("WindowWidth");
    const names = values("WindowCenterWidthExplanation");
    const found = centres.map((c, i) => ({ centre: Number(c), width: Number(widths[i]), name: names[i] || `DICOM window ${i + 1}` }));
    if (this.voiLut) {
      const { first, last, name } = this.voiLut;
      found.push({ centre: (first + last) / 2, width: last - first + 1, name, lut: true });
    }
    const min = image.minPixelValue;
    const max = image.maxPixelValue;
    if (Number.isFinite(min) && Number.isFinite(max) && max > min) {
      found.push({ centre: (min + max) / 2, width: max - min + 1, name: "Full range of the image" });
    }
    return found.filter((p) => Number.isFinite(p.centre) && Number.isFinite(p.width) && p.width > 0);
  }

  toggleInvert() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    vp.setProperties({ invert: !vp.getProperties().invert });
    vp.render();
    this.updateWindow();
  }

  // ------------------------------------------------------------ probe and info

  /** The stored value under a canvas point, or null outside the image. */
  valueAt(cx, cy) {
    if (!this.loaded) return null;
    const image = this.csImage;
    const [x, y] = this.toImage(cx, cy);
    const col = Math.floor(x);
    const row = Math.floor(y);
    if (!image || col < 0 || row < 0 || col >= image.columns || row >= image.rows) return null;
    let value = image.getPixelData()[row * image.columns + col];
    const scaling = image.preScale && image.preScale.scaled ? image.preScale.scalingParameters : null;
    const modality = value;
    if (scaling && (scaling.rescaleSlope ?? 1) !== 0) {
      value = Math.round((value - (scaling.rescaleIntercept ?? 0)) / (scaling.rescaleSlope ?? 1));
    }
    return { x: col, y: row, stored: value, modality };
  }

  showProbe(cx, cy) {
    const hit = this.valueAt(cx, cy);
    if (!hit) {
      this.probe.textContent = "";
      delete this.el.dataset.probe;
      return;
    }
    const extra = hit.modality !== hit.stored ? ` (modality ${Math.round(hit.modality * 100) / 100})` : "";
    this.probe.textContent = `x ${hit.x} y ${hit.y}: ${hit.stored}${extra}`;
    this.el.dataset.probe = String(hit.stored);
  }

  /** Laterality, view, age at exam, date, vendor, kVp/mAs, and the ruler's calibration. */
  renderInfo() {
    const text = (keyword) => attributeText(this.attributes || {}, keyword).trim();
    const facts = this.hooks.studyFacts(this);
    const age = facts.age ?? (text("PatientAge") || null);
    const kvp = text("KVP");
    const mas = text("Exposure") || (text("ExposureInuAs") ? String(Number(text("ExposureInuAs")) / 1000) : "");
    const pixelSpacing = text("PixelSpacing");
    const imagerSpacing = text("ImagerPixelSpacing");
    let calibration = "Calibration unknown: the ruler measures pixels";
    if (pixelSpacing) calibration = `Pixel spacing ${pixelSpacing.split("\\")[0]} mm`;
    else if (imagerSpacing) calibration = `Imager pixel spacing ${imagerSpacing.split("\\")[0]} mm (at the detector)`;
    const lines = [
      `${SIDE_NAMES[this.image.laterality] || this.image.laterality} ${this.image.view}${this.prior ? " · prior" : ""}`,
      age !== null && age !== "" ? `Age ${age}` : null,
      facts.date ? `Date ${facts.date}` : null,
      this.image.manufacturer || text("Manufacturer") ? `Vendor ${this.image.manufacturer || text("Manufacturer")}` : null,
      kvp || mas ? [kvp ? `${kvp} kVp` : null, mas ? `${mas} mAs` : null].filter(Boolean).join(" · ") : null,
      calibration,
    ].filter(Boolean);
    this.info.replaceChildren(...lines.map((line) => el("div", { text: line })));
    this.el.dataset.calibrated = String(Boolean(pixelSpacing || imagerSpacing));
  }

  // ------------------------------------------------------------ marks

  /** Findings, AI regions and the heatmap, drawn in image coordinates through one matrix. */
  drawMarks() {
    const svgRoot = this.marks;
    svgRoot.replaceChildren();
    if (!this.loaded || !this.viewport) return;
    const [ox, oy] = this.toCanvas(0, 0);
    const [ax, ay] = this.toCanvas(1, 0);
    const [bx, by] = this.toCanvas(0, 1);
    const matrix = `matrix(${ax - ox} ${ay - oy} ${bx - ox} ${by - oy} ${ox} ${oy})`;
    const group = svg("g", { transform: matrix });
    const labels = svg("g", { class: "labels" });
    svgRoot.append(group, labels);
    const heat = this.hooks.heatmap(this);
    if (heat) {
      group.append(
        svg("image", {
          href: heat.url,
          x: 0,
          y: 0,
          width: this.image.columns,
          height: this.image.rows,
          preserveAspectRatio: "none",
          opacity: heat.opacity,
          class: "heatmap",
        }),
      );
    }
    const label = (x, y, text, cls) => {
      const [cx, cy] = this.toCanvas(x, y);
      const node = svg("text", { x: cx + 3, y: Math.max(12, cy - 4), class: cls });
      node.textContent = text;
      labels.append(node);
    };
    for (const [index, region] of this.hooks.aiRegions(this).entries()) {
      const rect = svg("rect", {
        x: region.x,
        y: region.y,
        width: region.width,
        height: region.height,
        class: "ai-mark",
        "data-region": index,
      });
      rect.addEventListener("click", (event) => {
        event.stopPropagation();
        this.hooks.activate(this);
        this.zoomTo(region);
      });
      group.append(rect);
      const [lx, ly] = [Math.min(region.x, region.x + region.width), region.y];
      label(this.flip ? lx + region.width : lx, ly, `AI ${Number(region.probability).toFixed(2)}`, "ai-mark-label");
    }
    for (const { finding, text, kind } of this.hooks.findings(this)) {
      if (finding.width > 0 || finding.height > 0) {
        group.append(
          svg("rect", { x: finding.x, y: finding.y, width: finding.width, height: finding.height, class: `finding ${kind}` }),
        );
        label(this.flip ? finding.x + finding.width : finding.x, finding.y, text, `finding-label ${kind}`);
      } else {
        const [cx, cy] = this.toCanvas(finding.x, finding.y);
        svgRoot.append(svg("circle", { cx, cy, r: 9, class: `finding ${kind}` }));
        label(finding.x, finding.y, text, `finding-label ${kind}`);
      }
    }
    if (this.drag && this.drag.moved) {
      const { x0, y0, x1, y1 } = this.drag;
      svgRoot.append(
        svg("rect", {
          x: Math.min(x0, x1),
          y: Math.min(y0, y1),
          width: Math.abs(x1 - x0),
          height: Math.abs(y1 - y0),
          class: "finding drawing",
        }),
      );
    }
  }

  /** The first paint of the loaded image: `data-painted` says at which quality ("full": every stored pixel,
   * what the DICOM loader gives), and a `viewer:image-painted` performance mark times it from navigation start. */
  markPainted() {
    if (!this.loaded || this.el.dataset.painted === "full") return;
    const full = this.csImage.imageQualityStatus === undefined || this.csImage.imageQualityStatus >= ImageQualityStatus.FULL_RESOLUTION;
    this.el.dataset.painted = full ? "full" : "low";
    if (!full) return;
    performance.mark("viewer:image-painted", { detail: { image: this.image.id } });
    this.onPainted(true);
  }

  // ------------------------------------------------------------ events

  bind() {
    const local = (event) => {
      const rect = this.element.getBoundingClientRect();
      return [event.clientX - rect.left, event.clientY - rect.top];
    };
    this.el.addEventListener("pointerdown", () => this.hooks.activate(this), true);
    this.el.addEventListener("focus", () => this.hooks.activate(this));
    this.el.addEventListener("contextmenu", (event) => event.preventDefault());
    this.el.addEventListener("dblclick", (event) => {
      if (this.hooks.mode() !== "mark" && event.target !== this.enlarge) this.hooks.toggleEnlarge(this);
    });
    this.element.addEventListener("mousemove", (event) => this.showProbe(...local(event)));
    this.element.addEventListener("mouseleave", () => this.showProbe(-1, -1));
    for (const name of [Events.CAMERA_MODIFIED, Events.IMAGE_RENDERED]) {
      this.element.addEventListener(name, () => {
        if (name === Events.CAMERA_MODIFIED) {
          this.hooks.cameraChanged(this);
          if (this.viewport) this.el.dataset.scale = this.viewport.getCamera().parallelScale.toFixed(3);
        }
        if (name === Events.IMAGE_RENDERED) this.markPainted();
        this.drawMarks();
      });
    }
    this.element.addEventListener(Events.VOI_MODIFIED, () => {
      this.updateWindow();
      this.hooks.windowChanged(this);
    });
    // Mark mode: the SVG layer takes the pointer (Cornerstone's tools do not see it).
    this.marks.addEventListener("pointerdown", (event) => {
      if (this.hooks.mode() !== "mark" || event.button !== 0 || !this.loaded) return;
      event.preventDefault();
      this.marks.setPointerCapture(event.pointerId);
      const [x, y] = local(event);
      this.drag = { x0: x, y0: y, x1: x, y1: y, moved: false };
    });
    this.marks.addEventListener("pointermove", (event) => {
      if (!this.drag) return;
      const [x, y] = local(event);
      Object.assign(this.drag, { x1: x, y1: y });
      if (Math.hypot(x - this.drag.x0, y - this.drag.y0) > 4) this.drag.moved = true;
      this.drawMarks();
    });
    const finish = (event) => {
      const drag = this.drag;
      if (!drag) return;
      this.drag = null;
      if (this.marks.hasPointerCapture(event.pointerId)) this.marks.releasePointerCapture(event.pointerId);
      if (event.type === "pointerup") this.addFinding(drag);
      this.drawMarks();
    };
    this.marks.addEventListener("pointerup", finish);
    this.marks.addEventListener("pointercancel", finish);
  }

  addFinding(drag) {
    const { columns, rows } = this.image;
    const inside = ([x, y]) => [Math.min(columns, Math.max(0, x)), Math.min(rows, Math.max(0, y))];
    const [px, py] = this.toImage(drag.x0, drag.y0);
    let finding;
    if (drag.moved) {
      const [ax, ay] = inside([px, py]);
      const [bx, by] = inside(this.toImage(drag.x1, drag.y1));
      finding = { x: Math.min(ax, bx), y: Math.min(ay, by), width: Math.abs(bx - ax), height: Math.abs(by - ay) };
      if (finding.width < 1 || finding.height < 1) return this.hooks.say("That box lies outside the image: draw it on the breast.");
    } else {
      if (px < 0 || py < 0 || px > columns || py > rows) return this.hooks.say("That point lies outside the image.");
      finding = { x: px, y: py, width: 0, height: 0 };
    }
    for (const key of ["x", "y", "width", "height"]) finding[key] = Math.round(finding[key] * 10) / 10;
    return this.hooks.addFinding(this, finding);
  }
}

