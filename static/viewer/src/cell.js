/* One image cell of the hanging: a Cornerstone3D stack viewport at full bit depth, the chest wall
 * facing the centre line (setDisplayArea), per-image window/level (windowing.js), the probe and the
 * information overlay (overlay.js), and findings, AI marks and the heatmap as Cornerstone annotations
 * (marks.js). */
import {
  Events,
  ImageQualityStatus,
  ViewportType,
  attributeText,
  chestWallOnLeft,
  csUtils,
  describeError,
  dicomAttributes,
  getEngine,
  imageIdFor,
  loadImage,
} from "./imaging.js";
import { firstPaint } from "./handover.js";
import { bindMarking, clearMarks, dragBox, drawMarks } from "./marks.js";
import { overlay } from "./overlay.js";
import { SIDE_NAMES, el, viewName } from "./util.js";
import { voiLutOf } from "./voilut.js";
import { windowing } from "./windowing.js";


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
    if (firstPaint().quality(this.image.id) !== "full") this.showBadge("Loading…"); // else the first-paint layer shows it
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
      this.drawMarks();
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
    firstPaint().release(this.image.id);
    this.onPainted(false);
    this.el.dataset.state = "failed";
    this.el.classList.add("broken");
    this.showBadge(`${viewName(this.image)}: the pixel data could not be loaded (${reason}). The other images stay readable.`);
    return null;
  }

  unmount() {
    clearMarks(this);
    const engine = getEngine();
    if (engine && engine.getViewport(this.viewportId)) engine.disableElement(this.viewportId);
    this.el.remove();
  }

  showBadge(text) {
    this.badge.hidden = !text;
    this.badge.textContent = text || "";
  }

  progress(percent) {
    if (!this.loaded && !this.failed && firstPaint().quality(this.image.id) !== "full") this.showBadge(`Loading ${viewName(this.image)}: ${percent}%`);
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

  /** Fit the whole image, chest wall on the centre line (R on the left half, L on the right); MLO at the top.
   * With `scale` (device pixels per stored pixel: 1 is 1:1, navigation.js computes true size) the image is
   * shown at that scale from the same anchor instead. setDisplayArea's points are fractions of the shown
   * (flipped) image and of the canvas; it starts from the fit-to-canvas camera, which is made the mirrored
   * one first (else it would undo the flip). */
  fit(scale = null) {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    this.fitting = true;
    vp.resetCamera();
    vp.setCamera({ flipHorizontal: Boolean(this.flip) });
    vp.setFitToCanvasCamera(vp.getCamera());
    const alone = this.el.classList.contains("maximised");
    let x = 0.5;
    if (!alone && this.side === "R") x = 1;
    else if (!alone && this.side === "L") x = 0;
    const y = this.image.view === "MLO" && !alone ? 0 : 0.5;
    const anchor = { imageCanvasPoint: { imagePoint: [x, y], canvasPoint: [x, y] } };
    vp.setDisplayArea(scale ? { type: "SCALE", scale, ...anchor } : { imageArea: [1, 1], ...anchor });
    this.fitted = !scale;
    this.fitting = false;
    vp.render();
    this.showGeometry();
  }

  /** The camera for tests: half the shown height in world units (mm when calibrated), and where the image's
   * centre is on the canvas (CSS pixels). */
  showGeometry() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    this.el.dataset.scale = vp.getCamera().parallelScale.toFixed(3);
    const [cx, cy] = this.toCanvas(this.image.columns / 2, this.image.rows / 2);
    this.el.dataset.centre = `${cx.toFixed(1)},${cy.toFixed(1)}`;
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

  // ------------------------------------------------------------ marks

  /** Findings, AI regions, the heatmap and the box being drawn, as the cell's annotations (marks.js). */
  drawMarks() {
    drawMarks(this, {
      heat: this.hooks.heatmap(this),
      regions: this.hooks.aiRegions(this),
      cad: this.hooks.cadMarks(this),
      findings: this.hooks.findings(this),
      drawingBox: dragBox(this),
    });
  }

  /** The first paint of the loaded image: `data-painted` says at which quality ("full": every stored pixel,
   * what the DICOM loader gives), and a `viewer:image-painted` performance mark times it from navigation start. */
  markPainted() {
    if (!this.loaded || this.el.dataset.painted === "full") return;
    const full = this.csImage.imageQualityStatus === undefined || this.csImage.imageQualityStatus >= ImageQualityStatus.FULL_RESOLUTION;
    this.el.dataset.painted = full ? "full" : "low";
    if (!full) return;
    performance.mark("viewer:image-painted", { detail: { image: this.image.id } });
    firstPaint().release(this.image.id); // the early picture of it gives way to this cell (firstpaint.js)
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
    // An AI mark (an element of Cornerstone's SVG layer that takes the pointer, see viewer.css) zooms to its region.
    this.el.addEventListener("click", (event) => {
      const mark = event.target.closest && event.target.closest(".ai-mark");
      const region = mark ? this.hooks.aiRegions(this)[Number(mark.dataset.region)] : null;
      if (!region) return;
      event.stopPropagation();
      this.hooks.activate(this);
      this.zoomTo(region);
    });
    this.element.addEventListener("mousemove", (event) => this.showProbe(...local(event)));
    this.element.addEventListener("mouseleave", () => this.showProbe(-1, -1));
    this.element.addEventListener(Events.CAMERA_MODIFIED, () => {
      this.showGeometry();
      this.hooks.cameraChanged(this);
    });
    this.element.addEventListener(Events.IMAGE_RENDERED, () => this.markPainted());
    this.element.addEventListener(Events.VOI_MODIFIED, () => {
      this.updateWindow();
      this.hooks.windowChanged(this);
    });
    bindMarking(this);
  }
}

Object.assign(Cell.prototype, windowing, overlay);
