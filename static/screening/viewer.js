/* Case viewer: screening hanging protocol on canvas, AI result, decision, history.
 *
 * Coordinates: every image is drawn into a box of its ORIGINAL size (columns x rows),
 * whatever the size of the PNG actually loaded (rendition, full resolution, heatmap),
 * so findings and heatmaps share one coordinate system, the one the server stores.
 * Screen (CSS px inside a viewport) = (flip ? columns - x : x) * scale + tx, y * scale + ty.
 */
"use strict";

(() => {
  const root = document.getElementById("viewer");
  if (!root) return;

  const config = {
    studyUrl: root.dataset.studyUrl,
    reviewsUrl: root.dataset.reviewsUrl,
    worklistUrl: root.dataset.worklistUrl || "/",
    nextUrl: root.dataset.nextUrl || null,
  };
  const POLL_MS = 3000;
  const DEFAULT_WL = { width: 255, level: 127.5 };
  const WL_PRESETS = {
    default: DEFAULT_WL,
    contrast: { width: 140, level: 135 },
    dense: { width: 120, level: 185 },
    fatty: { width: 170, level: 85 },
  };
  const TYPE_LABELS = {
    mass: "Mass",
    calcification: "Calcification",
    distortion: "Architectural distortion",
    asymmetry: "Asymmetry",
    other: "Other",
  };
  const SIDE_NAMES = { R: "right", L: "left", U: "unknown side" };
  const SLOTS = [
    ["R", "CC"],
    ["L", "CC"],
    ["R", "MLO"],
    ["L", "MLO"],
  ];

  const $ = (id) => document.getElementById(id);
  const stage = $("stage");
  const hanging = $("hanging");
  const strip = $("extra-strip");
  const form = $("decision-form");

  const state = {
    study: null,
    mode: "pan",
    heatmap: false,
    opacity: Number($("heatmap-opacity").value),
    wl: { ...DEFAULT_WL },
    invert: false,
    linked: true,
    viewports: [],
    active: null,
    findings: [],
    imageIds: "",
    submitting: false,
    dirty: false, // a decision or finding not submitted yet: warn before leaving the page
    attemptKey: null, // Idempotency-Key of this decision: a retry after a lost answer saves it once
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const prob = (p) => (p === null || p === undefined ? "—" : Number(p).toFixed(2));
  const viewName = (image) => `${image.laterality} ${image.view}`;
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  function say(message) {
    $("status-line").textContent = message;
  }

  function csrfToken() {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function loadImage(url) {
    const img = new Image();
    img.decoding = "async";
    img.src = url;
    return img.decode().then(() => img);
  }

  function aboveThreshold(p, threshold) {
    return p !== null && p !== undefined && threshold !== null && threshold !== undefined && p >= threshold;
  }

  /** The server's flag for the prediction's own model version; the exam threshold only as a fallback. */
  function predictionFlagged(p, threshold) {
    return typeof p.above_threshold === "boolean" ? p.above_threshold : aboveThreshold(p.probability, threshold);
  }

  /** Which edge is the chest wall: the tissue-heavy (brighter) half of the rendition. */
  function chestWallOnLeft(img) {
    const w = 64;
    const h = Math.max(1, Math.round((img.naturalHeight / img.naturalWidth) * w));
    const canvas = el("canvas", { width: w, height: h });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0, w, h);
    const data = ctx.getImageData(0, 0, w, h).data;
    let left = 0;
    let right = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = data[(y * w + x) * 4];
        if (x < w / 2) left += v;
        else right += v;
      }
    }
    return left >= right;
  }

  /** Heatmap (8-bit grey, 255 = most suspicious) to transparent -> yellow -> red. */
  function colourise(img) {
    const canvas = el("canvas", { width: img.naturalWidth, height: img.naturalHeight });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
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
    return canvas;
  }

  // --------------------------------------------------------------- viewport

  class Viewport {
    constructor(image, container, slotSide) {
      this.image = image;
      this.side = slotSide; // "R": shown on the viewer's left, chest wall to its right edge
      this.scale = 1;
      this.tx = 0;
      this.ty = 0;
      this.fitted = true;
      this.flip = false;
      this.rendition = null;
      this.full = null;
      this.fullState = "none";
      this.heat = null;
      this.heatUrl = null;
      this.drag = null;
      this.frame = 0;
      this.base = el("canvas", { class: "base" });
      this.overlay = el("canvas", {
        class: "overlay",
        role: "img",
        tabindex: "0",
      });
      this.label = el("div", { class: "vp-label" });
      this.badge = el("div", { class: "vp-badge", hidden: true });
      this.el = el(
        "div",
        {
          class: `vp side-${slotSide}`,
          "data-image-id": image.id,
          "data-slot": `${image.laterality}-${image.view}`,
        },
        this.base,
        this.overlay,
        this.label,
        this.badge,
      );
      container.append(this.el);
      this.bindPointer();
      this.updateLabel();
      this.observer = new ResizeObserver(() => this.resize());
      this.observer.observe(this.el);
      this.ready = loadImage(image.rendition_url).then(
        (img) => {
          this.rendition = img;
          const left = chestWallOnLeft(img);
          this.flip = (image.laterality === "R" && left) || (image.laterality === "L" && !left);
          this.el.dataset.flip = String(this.flip);
          this.el.dataset.source = "rendition";
          this.resize();
        },
        () => {
          this.el.classList.add("broken");
          this.label.textContent = `${viewName(image)}: image could not be loaded`;
        },
      );
      this.updateHeatmap();
    }

    get columns() {
      return this.image.columns || (this.rendition ? this.rendition.naturalWidth : 1);
    }

    get rows() {
      return this.image.rows || (this.rendition ? this.rendition.naturalHeight : 1);
    }

    get dpr() {
      return window.devicePixelRatio || 1;
    }

    setImage(image) {
      this.image = image;
      this.updateLabel();
      this.updateHeatmap();
      this.invalidate(false);
    }

    updateLabel() {
      const image = this.image;
      const p = image.prediction;
      const threshold = state.study ? state.study.threshold : null;
      let ai = "AI: not scored";
      let flagged = false;
      if (p) {
        if (p.status === "done") {
          flagged = predictionFlagged(p, threshold);
          ai = `AI ${prob(p.probability)}${flagged ? " ⚑" : ""}`;
        } else if (p.status === "failed") {
          ai = "AI failed";
        } else {
          ai = `AI ${p.status}…`;
        }
      }
      this.label.replaceChildren(
        el("strong", { text: viewName(image) }),
        el("span", { class: flagged ? "flag" : "", text: ai }),
      );
      this.el.classList.toggle("flagged", flagged);
      const side = SIDE_NAMES[image.laterality] || image.laterality;
      this.overlay.setAttribute(
        "aria-label",
        `${side} ${image.view} image #${image.id}; ${ai.replace("⚑", "flagged")}`,
      );
    }

    updateHeatmap() {
      const p = this.image.prediction;
      const url = p && p.status === "done" && p.heatmap_url ? p.heatmap_url : null;
      if (url === this.heatUrl) return;
      this.heatUrl = url;
      this.heat = null;
      this.el.dataset.heatmap = "none";
      if (!url) return;
      loadImage(url).then(
        (img) => {
          if (this.heatUrl !== url) return;
          this.heat = colourise(img);
          this.invalidate(false);
        },
        () => say(`The heatmap of ${viewName(this.image)} could not be loaded.`),
      );
    }

    resize() {
      const w = this.el.clientWidth;
      const h = this.el.clientHeight;
      if (!w || !h) return;
      for (const canvas of [this.base, this.overlay]) {
        canvas.width = Math.round(w * this.dpr);
        canvas.height = Math.round(h * this.dpr);
      }
      if (this.fitted) this.fit();
      else this.invalidate(true);
    }

    fitScale() {
      return Math.min(this.el.clientWidth / this.columns, this.el.clientHeight / this.rows);
    }

    fit() {
      const w = this.el.clientWidth;
      const h = this.el.clientHeight;
      this.scale = this.fitScale();
      const iw = this.columns * this.scale;
      const ih = this.rows * this.scale;
      const alone = this.el.classList.contains("maximised") || this.side === "U";
      // Chest walls meet at the centre line: R is pushed right, L is pushed left.
      this.tx = alone ? (w - iw) / 2 : this.side === "R" ? w - iw : 0;
      this.ty = this.image.view === "MLO" && !alone ? 0 : (h - ih) / 2;
      this.fitted = true;
      this.invalidate(true);
    }

    zoomAt(factor, sx, sy, follow = true) {
      const fit = this.fitScale();
      const next = clamp(this.scale * factor, fit / 4, Math.max(fit * 2, 12 / this.dpr));
      this.tx = sx - (sx - this.tx) * (next / this.scale);
      this.ty = sy - (sy - this.ty) * (next / this.scale);
      this.scale = next;
      this.fitted = false;
      this.invalidate(true);
      const partner = follow && this.partner();
      if (partner) partner.zoomAt(factor, partner.fromChestWall(this.toChestWall(sx)), sy, false);
    }

    /** The other breast's image of the same view, when linked: it mirrors this one's zoom and pan. */
    partner() {
      if (!state.linked || this.el.parentElement !== hanging || root.classList.contains("has-maximised")) return null;
      const side = { R: "L", L: "R" }[this.image.laterality];
      return (
        state.viewports.find(
          (vp) => vp.el.parentElement === hanging && vp.image.laterality === side && vp.image.view === this.image.view,
        ) || null
      );
    }

    /** Screen x as a distance from the centre line, where this cell's chest wall is. */
    toChestWall(sx) {
      return this.side === "R" ? this.el.clientWidth - sx : sx;
    }

    fromChestWall(d) {
      return this.side === "R" ? this.el.clientWidth - d : d;
    }

    zoomCentre(factor) {
      this.zoomAt(factor, this.el.clientWidth / 2, this.el.clientHeight / 2);
    }

    actualSize() {
      this.zoomCentre(1 / this.dpr / this.scale);
    }

    panBy(dx, dy, follow = true) {
      this.tx += dx;
      this.ty += dy;
      this.fitted = false;
      this.invalidate(true);
      const partner = follow && this.partner();
      if (partner) partner.panBy(-dx, dy, false);
    }

    toScreen(x, y) {
      const dx = this.flip ? this.columns - x : x;
      return [dx * this.scale + this.tx, y * this.scale + this.ty];
    }

    toImage(sx, sy) {
      const dx = (sx - this.tx) / this.scale;
      return [this.flip ? this.columns - dx : dx, (sy - this.ty) / this.scale];
    }

    /** Full resolution once one rendition pixel would cover more than one device pixel. */
    wantsFull() {
      if (!this.image.full_url || !this.rendition) return false;
      if (this.rendition.naturalWidth >= this.columns) return false; // small image: the rendition is full size
      return this.scale * this.dpr > (this.rendition.naturalWidth / this.columns) * 1.01;
    }

    maybeLoadFull() {
      if (!this.wantsFull() || this.fullState !== "none") return;
      this.fullState = "loading";
      this.showBadge("Loading full resolution…");
      loadImage(this.image.full_url).then(
        (img) => {
          this.full = img;
          this.fullState = "loaded";
          this.invalidate(true);
        },
        () => {
          this.fullState = "failed";
          this.showBadge("Full resolution unavailable");
        },
      );
    }

    showBadge(text) {
      this.badge.hidden = !text;
      this.badge.textContent = text || "";
    }

    invalidate(base) {
      this.dirtyBase = this.dirtyBase || base;
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        if (this.dirtyBase) this.drawBase();
        this.dirtyBase = false;
        this.drawOverlay();
      });
    }

    imageTransform(ctx) {
      const d = this.dpr;
      const s = this.scale;
      ctx.setTransform(
        d * s * (this.flip ? -1 : 1),
        0,
        0,
        d * s,
        d * (this.tx + (this.flip ? this.columns * s : 0)),
        d * this.ty,
      );
    }

    drawBase() {
      const ctx = this.base.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.base.width, this.base.height);
      this.el.dataset.scale = this.scale.toFixed(4);
      this.el.dataset.tx = this.tx.toFixed(2);
      this.el.dataset.ty = this.ty.toFixed(2);
      if (!this.rendition) return;
      this.maybeLoadFull();
      const useFull = this.fullState === "loaded" && this.wantsFull();
      const source = useFull ? this.full : this.rendition;
      this.el.dataset.source = useFull ? "full" : "rendition";
      if (this.fullState === "loaded") this.showBadge(useFull ? "Full resolution" : "");
      this.imageTransform(ctx);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(source, 0, 0, this.columns, this.rows);
    }

    drawOverlay() {
      const ctx = this.overlay.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      const showHeat = state.heatmap && this.heat;
      this.el.dataset.heatmap = showHeat ? "shown" : this.heat ? "hidden" : "none";
      if (showHeat) {
        this.imageTransform(ctx);
        ctx.globalAlpha = state.opacity;
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(this.heat, 0, 0, this.columns, this.rows);
        ctx.globalAlpha = 1;
      }
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      const latest = state.study && state.study.reviews && state.study.reviews[0];
      if (latest) {
        for (const f of latest.findings || []) {
          if (f.image === this.image.id) this.drawFinding(ctx, f, `v${latest.version} ${TYPE_LABELS[f.type] || f.type}`, "saved");
        }
      }
      state.findings.forEach((f, i) => {
        if (f.image === this.image.id) this.drawFinding(ctx, f, `${i + 1} ${TYPE_LABELS[f.type] || f.type}`, "new");
      });
      if (this.drag && this.drag.kind === "mark" && this.drag.moved) {
        const { x0, y0, x1, y1 } = this.drag;
        ctx.strokeStyle = "#ffd24d";
        ctx.lineWidth = 1.5;
        ctx.setLineDash([4, 3]);
        ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
        ctx.setLineDash([]);
      }
    }

    drawFinding(ctx, f, text, kind) {
      const colour = kind === "saved" ? "#4dd6ff" : "#ffd24d";
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 2;
      ctx.setLineDash(kind === "saved" ? [6, 4] : []);
      const [ax, ay] = this.toScreen(f.x, f.y);
      let labelX;
      let labelY;
      if (f.width > 0 || f.height > 0) {
        const [bx, by] = this.toScreen(f.x + f.width, f.y + f.height);
        const left = Math.min(ax, bx);
        const top = Math.min(ay, by);
        ctx.strokeRect(left, top, Math.abs(bx - ax), Math.abs(by - ay));
        labelX = left;
        labelY = top - 4;
      } else {
        ctx.beginPath();
        ctx.arc(ax, ay, 9, 0, 2 * Math.PI);
        ctx.moveTo(ax - 14, ay);
        ctx.lineTo(ax - 4, ay);
        ctx.moveTo(ax + 4, ay);
        ctx.lineTo(ax + 14, ay);
        ctx.stroke();
        labelX = ax + 12;
        labelY = ay - 12;
      }
      ctx.setLineDash([]);
      ctx.font = "600 12px system-ui, sans-serif";
      // Keep the label inside the viewport: a mark beside the centre line would lose it.
      const width = ctx.measureText(text).width;
      const x = clamp(labelX, 2, this.el.clientWidth - width - 2);
      const y = clamp(labelY, 12, this.el.clientHeight - 4);
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,.8)";
      ctx.strokeText(text, x, y);
      ctx.fillText(text, x, y);
    }

    bindPointer() {
      const canvas = this.overlay;
      const local = (event) => {
        const rect = canvas.getBoundingClientRect();
        return [event.clientX - rect.left, event.clientY - rect.top];
      };
      canvas.addEventListener("contextmenu", (event) => event.preventDefault());
      canvas.addEventListener("focus", () => setActive(this));
      canvas.addEventListener("pointerdown", (event) => {
        setActive(this);
        const [x, y] = local(event);
        let kind = state.mode;
        if (event.button === 2) kind = "wl";
        else if (event.button !== 0) return;
        if (kind === "mark" && !this.rendition) return;
        event.preventDefault();
        canvas.focus({ preventScroll: true }); // shortcuts work again after using a toolbar control
        canvas.setPointerCapture(event.pointerId);
        this.drag = { kind, x0: x, y0: y, x1: x, y1: y, lastX: x, lastY: y, moved: false, wl: { ...state.wl } };
      });
      canvas.addEventListener("pointermove", (event) => {
        if (!this.drag) return;
        const [x, y] = local(event);
        const drag = this.drag;
        if (Math.hypot(x - drag.x0, y - drag.y0) > 4) drag.moved = true;
        if (drag.kind === "pan") this.panBy(x - drag.lastX, y - drag.lastY);
        else if (drag.kind === "wl") {
          setWindow(drag.wl.width + (x - drag.x0), drag.wl.level + (y - drag.y0));
        } else if (drag.kind === "mark") this.invalidate(false);
        drag.lastX = drag.x1 = x;
        drag.lastY = drag.y1 = y;
      });
      const finish = (event) => {
        const drag = this.drag;
        if (!drag) return;
        this.drag = null;
        if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
        if (drag.kind === "mark" && event.type === "pointerup") this.addFinding(drag);
        this.invalidate(false);
      };
      canvas.addEventListener("pointerup", finish);
      canvas.addEventListener("pointercancel", finish);
      canvas.addEventListener(
        "wheel",
        (event) => {
          event.preventDefault();
          setActive(this);
          const [x, y] = local(event);
          const pixels = event.deltaY * (event.deltaMode === 1 ? 40 : event.deltaMode === 2 ? 400 : 1);
          this.zoomAt(Math.exp(-clamp(pixels, -600, 600) * 0.0015), x, y);
        },
        { passive: false },
      );
      canvas.addEventListener("dblclick", () => {
        if (state.mode !== "mark") toggleMaximised(this);
      });
    }

    addFinding(drag) {
      const cols = this.columns;
      const rows = this.rows;
      const clampPoint = ([x, y]) => [clamp(x, 0, cols), clamp(y, 0, rows)];
      const [ax, ay] = clampPoint(this.toImage(drag.x0, drag.y0));
      let finding;
      if (drag.moved) {
        const [bx, by] = clampPoint(this.toImage(drag.x1, drag.y1));
        finding = { x: Math.min(ax, bx), y: Math.min(ay, by), width: Math.abs(bx - ax), height: Math.abs(by - ay) };
        if (finding.width < 1 || finding.height < 1) {
          say("That box lies outside the image: draw it on the breast.");
          return;
        }
      } else {
        const [px, py] = this.toImage(drag.x0, drag.y0);
        if (px < 0 || py < 0 || px > cols || py > rows) {
          say("That point lies outside the image.");
          return;
        }
        finding = { x: ax, y: ay, width: 0, height: 0 };
      }
      for (const key of ["x", "y", "width", "height"]) finding[key] = Math.round(finding[key] * 10) / 10;
      state.findings.push({
        image: this.image.id,
        laterality: this.image.laterality,
        view: this.image.view,
        type: $("finding-type").value,
        ...finding,
      });
      renderFindings();
      say(`Marked ${TYPE_LABELS[$("finding-type").value]} on ${viewName(this.image)}.`);
    }
  }

  function setActive(vp) {
    if (state.active === vp) return;
    if (state.active) state.active.el.classList.remove("active");
    state.active = vp;
    if (vp) vp.el.classList.add("active");
  }

  function activeViewport() {
    return state.active || state.viewports[0] || null;
  }

  function toggleMaximised(vp) {
    const on = !vp.el.classList.contains("maximised");
    for (const other of state.viewports) other.el.classList.remove("maximised");
    vp.el.classList.toggle("maximised", on);
    root.classList.toggle("has-maximised", on);
    vp.fitted = true; // its resize (observed) fits it to the new size
  }

  function redrawAll(base) {
    for (const vp of state.viewports) vp.invalidate(base);
  }

  // ----------------------------------------------------------- image tools

  function setMode(mode) {
    state.mode = mode;
    root.dataset.mode = mode;
    for (const button of document.querySelectorAll("[data-mode]")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    }
    if (mode === "mark") say(`Mark mode: drag a box or click a point (${TYPE_LABELS[$("finding-type").value]}).`);
  }

  function applyWindow() {
    const { width, level } = state.wl;
    const identity = width === DEFAULT_WL.width && level === DEFAULT_WL.level && !state.invert;
    let slope = 255 / width;
    let intercept = -(level - width / 2) / width;
    if (state.invert) {
      slope = -slope;
      intercept = 1 - intercept;
    }
    for (const func of document.querySelectorAll("#wl-filter feComponentTransfer > *")) {
      func.setAttribute("slope", String(slope));
      func.setAttribute("intercept", String(intercept));
    }
    // Re-assign so that every canvas repaints with the changed filter.
    for (const vp of state.viewports) vp.base.style.filter = identity ? "none" : "url(#wl-filter)";
    $("wl-readout").textContent = identity ? "" : `W ${Math.round(width)} L ${Math.round(level)}${state.invert ? " · inverted" : ""}`;
    root.dataset.invert = String(state.invert);
    root.dataset.window = `${Math.round(width)}/${Math.round(level)}`;
    document.querySelector('[data-action="invert"]').setAttribute("aria-pressed", String(state.invert));
  }

  function setWindow(width, level, preset = "custom") {
    state.wl = { width: clamp(width, 2, 510), level: clamp(level, -64, 320) };
    $("wl-preset").value = preset;
    applyWindow();
  }

  function setPreset(name) {
    const preset = WL_PRESETS[name] || DEFAULT_WL;
    setWindow(preset.width, preset.level, name in WL_PRESETS ? name : "default");
  }

  function toggleInvert() {
    state.invert = !state.invert;
    applyWindow();
  }

  function setHeatmap(on) {
    state.heatmap = on;
    root.dataset.heatmap = on ? "on" : "off";
    document.querySelector('[data-action="heatmap"]').setAttribute("aria-pressed", String(on));
    if (on && !state.viewports.some((vp) => vp.heatUrl)) say("No heatmap yet: the AI has not finished these images.");
    redrawAll(false);
  }

  function setLinked(on) {
    state.linked = on;
    root.dataset.linked = String(on);
    document.querySelector('[data-action="link"]').setAttribute("aria-pressed", String(on));
  }

  function fitAll() {
    for (const vp of state.viewports) vp.fit();
  }

  function resetAll() {
    state.invert = false;
    setPreset("default");
    for (const vp of state.viewports) vp.el.classList.remove("maximised");
    root.classList.remove("has-maximised");
    fitAll();
  }

  // ---------------------------------------------------------------- layout

  function buildViewports(study) {
    for (const vp of state.viewports) {
      vp.observer.disconnect();
      vp.el.remove();
    }
    state.viewports = [];
    state.active = null;
    hanging.replaceChildren();
    strip.replaceChildren();
    const images = [...study.images].sort((a, b) => a.id - b.id);
    const used = new Set();
    const readies = [];
    for (const [side, view] of SLOTS) {
      const image = images.find((i) => !used.has(i.id) && i.laterality === side && i.view === view);
      if (image) {
        used.add(image.id);
        const vp = new Viewport(image, hanging, side);
        state.viewports.push(vp);
        readies.push(vp.ready);
      } else {
        hanging.append(
          el(
            "div",
            { class: `vp empty side-${side}`, "data-slot": `${side}-${view}` },
            el("span", { text: `No ${SIDE_NAMES[side]} ${view} image` }),
          ),
        );
      }
    }
    const extras = images.filter((i) => !used.has(i.id));
    strip.hidden = extras.length === 0;
    root.classList.toggle("has-extras", extras.length > 0);
    for (const image of extras) {
      const vp = new Viewport(image, strip, image.laterality === "L" ? "L" : image.laterality === "R" ? "R" : "U");
      state.viewports.push(vp);
      readies.push(vp.ready);
    }
    state.imageIds = images.map((i) => i.id).join(",");
    $("stage-message").hidden = images.length > 0;
    $("stage-message").textContent = images.length ? "" : "This study has no images.";
    applyWindow();
    // Ready once every image is loaded and painted (its draw is queued for the next frame).
    Promise.allSettled(readies).then(() =>
      requestAnimationFrame(() => requestAnimationFrame(() => (root.dataset.ready = "true"))),
    );
  }

  // -------------------------------------------------------------- AI panel

  function renderStudy(study) {
    const facts = $("study-facts");
    for (const dd of facts.querySelectorAll("[data-field]")) {
      const value = study[dd.dataset.field];
      dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value).replace("_", " ");
    }
    renderHistory(study);
    return renderAi(study);
  }

  /** Reading order: R CC, L CC, R MLO, L MLO, then any other view. */
  function hangingOrder(images) {
    const rank = (i) => {
      const slot = SLOTS.findIndex(([side, view]) => i.laterality === side && i.view === view);
      return slot < 0 ? SLOTS.length : slot;
    };
    return [...images].sort((a, b) => rank(a) - rank(b) || a.id - b.id);
  }

  function renderAi(study) {
    const threshold = study.threshold;
    const images = hangingOrder(study.images);
    const counts = { queued: 0, running: 0, done: 0, failed: 0, none: 0 };
    for (const image of images) counts[image.prediction ? image.prediction.status : "none"] += 1;
    const exam = $("ai-exam");
    exam.className = "ai-exam";
    if (study.exam_score !== null && study.exam_score !== undefined) {
      const flagged = study.exam_flag === true || aboveThreshold(study.exam_score, threshold);
      exam.replaceChildren(
        el("span", { class: "ai-label", text: "Exam probability " }),
        el("span", { class: `ai-value${flagged ? " flag" : ""}`, "data-testid": "exam-score", text: prob(study.exam_score) }),
        " ",
        flagged
          ? el("span", { class: "badge flag", text: "⚑ At or above operating point" })
          : el("span", { class: "badge", text: "Below operating point" }),
      );
      exam.classList.toggle("flagged", flagged);
    } else if (images.length === 0) {
      exam.textContent = "No images.";
    } else if (counts.none === images.length) {
      exam.textContent = "No AI model has scored this study.";
    } else {
      exam.textContent = "No exam probability yet.";
    }
    const pending = counts.queued + counts.running;
    if (pending) {
      exam.append(
        el("span", {
          class: "ai-progress",
          text: ` AI working: ${counts.done} of ${images.length} images done, ${counts.running} running, ${counts.queued} queued.`,
        }),
      );
    }
    for (const [id, value] of [
      ["ai-right", study.score_right],
      ["ai-left", study.score_left],
    ]) {
      const flagged = aboveThreshold(value, threshold);
      $(id).replaceChildren(el("span", { class: flagged ? "flag" : "", text: `${prob(value)}${flagged ? " ⚑" : ""}` }));
    }
    const list = $("ai-images");
    list.replaceChildren(
      ...images.map((image) => {
        const p = image.prediction;
        let text;
        let cls = "";
        if (!p) text = "not scored";
        else if (p.status === "done") {
          const flagged = predictionFlagged(p, threshold);
          text = `${prob(p.probability)}${flagged ? " ⚑" : ""}`;
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
    $("ai-model").textContent = model
      ? `Model ${model}${threshold !== null && threshold !== undefined ? ` · operating point ${prob(threshold)}` : ""}`
      : "";
    root.dataset.aiPending = String(pending);
    return pending;
  }

  // --------------------------------------------------------------- history

  function who(radiologist) {
    if (radiologist && typeof radiologist === "object") return radiologist.username || radiologist.name || String(radiologist.id);
    return radiologist || "unknown";
  }

  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function renderHistory(study) {
    const reviews = study.reviews || [];
    $("history-empty").hidden = reviews.length > 0;
    const byId = Object.fromEntries(study.images.map((i) => [i.id, i]));
    $("history").replaceChildren(
      ...reviews.map((review, index) => {
        const findings = review.findings || [];
        const agreement =
          review.agrees_with_ai === true ? "agrees with AI" : review.agrees_with_ai === false ? "differs from AI" : "";
        return el(
          "li",
          { class: index === 0 ? "latest" : "", "data-version": review.version },
          el(
            "p",
            { class: "history-head" },
            el("strong", { text: `v${review.version}` }),
            ` ${review.decision === "abnormal" ? "Abnormal" : "Normal"} · BI-RADS ${review.birads}`,
            review.density ? ` · density ${review.density}` : "",
            agreement ? el("span", { class: "muted", text: ` · ${agreement}` }) : null,
          ),
          el("p", { class: "muted", text: `${who(review.radiologist)}, ${when(review.created)}` }),
          review.note ? el("p", { class: "history-note", text: review.note }) : null,
          findings.length
            ? el(
                "ul",
                { class: "history-findings" },
                ...findings.map((f) => {
                  const image = byId[f.image];
                  const where = image ? viewName(image) : `${f.laterality} image #${f.image}`;
                  const shape = f.width > 0 || f.height > 0 ? "box" : "point";
                  return el("li", { text: `${TYPE_LABELS[f.type] || f.type}, ${where} (${shape})` });
                }),
              )
            : null,
          index === 0
            ? el("button", { type: "button", class: "secondary small", onclick: () => copyReview(review), text: `Start from v${review.version}` })
            : null,
        );
      }),
    );
    $("submit-decision").firstChild.textContent = reviews.length
      ? `Submit as v${reviews[0].version + 1} and next `
      : "Submit and next ";
  }

  function copyReview(review) {
    setChoice("decision", review.decision);
    setChoice("birads", String(review.birads));
    setChoice("density", review.density || "");
    $("note").value = review.note || "";
    const byId = Object.fromEntries(state.study.images.map((i) => [i.id, i]));
    state.findings = (review.findings || []).map((f) => ({
      image: f.image,
      laterality: f.laterality,
      view: byId[f.image] ? byId[f.image].view : "",
      type: f.type,
      x: f.x,
      y: f.y,
      width: f.width,
      height: f.height,
    }));
    renderFindings();
    say(`Form filled from v${review.version}: change what needs correcting, then submit.`);
  }

  // -------------------------------------------------------------- decision

  function setChoice(name, value) {
    const input = form.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) input.checked = true;
    changed();
  }

  function choice(name) {
    const input = form.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  /** The decision changed: unsaved, and a new submit is a new request. */
  function changed() {
    state.dirty = true;
    state.attemptKey = null;
  }

  function randomKey() {
    // crypto.randomUUID needs a secure context; reading rooms may use plain HTTP on the LAN.
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function renderFindings() {
    changed();
    const list = $("findings");
    $("finding-count").textContent = String(state.findings.length);
    $("finding-hint").hidden = state.findings.length > 0;
    list.replaceChildren(
      ...state.findings.map((f, i) => {
        const select = el(
          "select",
          {
            "aria-label": `Type of finding ${i + 1}`,
            onchange: (event) => {
              f.type = event.target.value;
              redrawAll(false);
            },
          },
          ...Object.entries(TYPE_LABELS).map(([value, label]) => el("option", { value, selected: value === f.type, text: label })),
        );
        const shape =
          f.width > 0 || f.height > 0
            ? `box ${Math.round(f.width)}×${Math.round(f.height)} px at ${Math.round(f.x)}, ${Math.round(f.y)}`
            : `point at ${Math.round(f.x)}, ${Math.round(f.y)}`;
        return el(
          "li",
          { "data-image-id": f.image },
          el("span", { class: "finding-where", text: `${f.laterality} ${f.view}` }),
          select,
          el("span", { class: "finding-shape", text: shape }),
          el("button", {
            type: "button",
            class: "link delete",
            "aria-label": `Delete finding ${i + 1}`,
            text: "Delete",
            onclick: () => {
              state.findings.splice(i, 1);
              renderFindings();
            },
          }),
        );
      }),
    );
    redrawAll(false);
  }

  function confirmAi() {
    const study = state.study;
    if (!study || study.exam_flag === null || study.exam_flag === undefined) {
      say("There is no AI exam result to confirm yet.");
      return;
    }
    if (study.exam_flag) {
      setChoice("decision", "abnormal");
      setChoice("birads", "0");
    } else {
      setChoice("decision", "normal");
      setChoice("birads", "1");
    }
    say(
      study.exam_flag
        ? "Pre-filled from the AI flag: abnormal, BI-RADS 0 (recall). Mark findings, check and submit."
        : "Pre-filled from the AI: normal, BI-RADS 1. Check and submit.",
    );
  }

  function chooseDecision(value) {
    setChoice("decision", value);
    if (value === "normal" && choice("birads") === null) setChoice("birads", "1");
  }

  function showError(message, fields) {
    const box = $("form-error");
    const parts = [message];
    if (fields && typeof fields === "object") {
      for (const [field, problems] of Object.entries(fields)) {
        const text = Array.isArray(problems) ? problems.join(" ") : typeof problems === "object" ? JSON.stringify(problems) : problems;
        if (text !== message) parts.push(`${field}: ${text}`); // a service error names its field with the same words
      }
    }
    box.textContent = parts.join(" — ");
    box.hidden = false;
  }

  async function submit() {
    if (state.submitting || !state.study) return;
    $("form-error").hidden = true;
    const decision = choice("decision");
    const birads = choice("birads");
    if (!decision || birads === null) {
      showError("Choose normal or abnormal and a BI-RADS category before submitting.");
      return;
    }
    const body = {
      decision,
      birads: Number(birads),
      density: choice("density") || "",
      note: $("note").value.trim(),
      findings: state.findings.map(({ image, type, x, y, width, height }) => ({ image, type, x, y, width, height })),
    };
    state.submitting = true;
    state.attemptKey = state.attemptKey || randomKey();
    $("submit-decision").disabled = true;
    say("Saving…");
    let saved = false;
    try {
      const response = await fetch(config.reviewsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrfToken(),
          "Idempotency-Key": state.attemptKey,
        },
        body: JSON.stringify(body),
      });
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      if (!response.ok) {
        const error = (payload && payload.error) || {};
        let message = error.message || `The server refused the decision (HTTP ${response.status}).`;
        if (response.status === 401 || response.status === 403) {
          message += " Your session may have ended: log in again in another tab, then submit again.";
        }
        showError(message, error.fields);
        say("Not saved.");
        return;
      }
      const review = payload.review || {};
      const summary = `Study #${state.study.id}: v${review.version} saved (${review.decision}, BI-RADS ${review.birads}).`;
      state.dirty = false;
      saved = true; // stays disabled while the next case loads: no second version by a double press
      sessionStorage.setItem("portal.saved", summary);
      say(summary);
      window.location.assign(payload.next_url || config.worklistUrl);
    } catch (error) {
      showError(`Could not reach the server: ${error.message}. Your decision is still here; try again.`);
      say("Not saved.");
    } finally {
      if (!saved) {
        state.submitting = false;
        $("submit-decision").disabled = false;
      }
    }
  }

  // ------------------------------------------------------------- polling

  function applyStudy(study) {
    state.study = study;
    const ids = [...study.images].map((i) => i.id).sort((a, b) => a - b).join(",");
    if (ids !== state.imageIds) buildViewports(study);
    else {
      const byId = Object.fromEntries(study.images.map((i) => [i.id, i]));
      for (const vp of state.viewports) vp.setImage(byId[vp.image.id]);
    }
    const pending = renderStudy(study);
    for (const vp of state.viewports) vp.updateLabel();
    redrawAll(false);
    return pending;
  }

  let polls = 0;
  let wasPending = 0;

  async function poll() {
    polls += 1;
    let pending = 0;
    try {
      const response = await fetch(config.studyUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) {
        let message = `HTTP ${response.status}`;
        try {
          message = (await response.json()).error.message || message;
        } catch {
          /* keep the status */
        }
        throw new Error(message);
      }
      pending = applyStudy(await response.json());
      if (wasPending && !pending) {
        // Announced once (the panel itself is re-rendered on every poll, so it is not a live region).
        const score = state.study.exam_score;
        say(score === null || score === undefined ? "AI finished." : `AI finished: exam probability ${prob(score)}.`);
      }
      wasPending = pending;
    } catch (error) {
      say(`Could not load the study: ${error.message}. Retrying…`);
      setTimeout(poll, POLL_MS * 3);
      return;
    }
    // Every few seconds while the AI works; less often after two minutes (a stopped worker).
    if (pending) setTimeout(poll, polls < 40 ? POLL_MS : POLL_MS * 5);
  }

  // ------------------------------------------------------------- keyboard

  function typing(target) {
    if (!target || !target.tagName) return false;
    if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
    return target.tagName === "INPUT" && !["radio", "checkbox", "button", "submit", "range"].includes(target.type);
  }

  function onKey(event) {
    const help = $("help");
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      submit();
      return;
    }
    if (help.open || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const vp = activeViewport();
    const actions = {
      h: () => setHeatmap(!state.heatmap),
      i: toggleInvert,
      l: () => setLinked(!state.linked),
      w: () => setMode(state.mode === "wl" ? "pan" : "wl"),
      m: () => setMode(state.mode === "mark" ? "pan" : "mark"),
      p: () => setMode("pan"),
      escape: () => setMode("pan"),
      f: fitAll,
      r: resetAll,
      x: () => vp && vp.actualSize(),
      "+": () => vp && vp.zoomCentre(1.25),
      "=": () => vp && vp.zoomCentre(1.25),
      "-": () => vp && vp.zoomCentre(0.8),
      _: () => vp && vp.zoomCentre(0.8),
      n: () => chooseDecision("normal"),
      a: () => chooseDecision("abnormal"),
      c: confirmAi,
      "?": () => help.showModal(),
      delete: () => {
        if (state.findings.length) {
          const gone = state.findings.pop();
          renderFindings();
          say(`Deleted finding ${state.findings.length + 1} (${TYPE_LABELS[gone.type]}, ${gone.laterality} ${gone.view}).`);
        }
      },
    };
    const key = event.key.toLowerCase();
    const arrows = { arrowleft: [-1, 0], arrowright: [1, 0], arrowup: [0, -1], arrowdown: [0, 1] };
    if (key in arrows && vp && (event.target === document.body || event.target.classList.contains("overlay"))) {
      event.preventDefault();
      const step = event.shiftKey ? 200 : 40;
      vp.panBy(arrows[key][0] * step, arrows[key][1] * step);
      return;
    }
    if (/^[0-6]$/.test(key)) {
      setChoice("birads", key);
      event.preventDefault();
      return;
    }
    const action = actions[key] || (key === "backspace" ? actions.delete : null);
    if (action) {
      event.preventDefault();
      action();
    }
  }

  // ------------------------------------------------------------------ wiring

  function fitToWindow() {
    const top = root.getBoundingClientRect().top + window.scrollY;
    root.style.setProperty("--viewer-top", `${Math.ceil(top) + 12}px`);
  }

  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", fitToWindow);
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  const buttonActions = {
    "zoom-in": () => activeViewport() && activeViewport().zoomCentre(1.25),
    "zoom-out": () => activeViewport() && activeViewport().zoomCentre(0.8),
    fit: fitAll,
    actual: () => activeViewport() && activeViewport().actualSize(),
    invert: toggleInvert,
    reset: resetAll,
    heatmap: () => setHeatmap(!state.heatmap),
    link: () => setLinked(!state.linked),
    help: () => $("help").showModal(),
  };
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => buttonActions[button.dataset.action]());
  }
  $("wl-preset").addEventListener("change", (event) => setPreset(event.target.value));
  $("heatmap-opacity").addEventListener("input", (event) => {
    state.opacity = Number(event.target.value);
    redrawAll(false);
  });
  $("finding-type").addEventListener("change", () => {
    if (state.mode !== "mark") setMode("mark");
  });
  $("confirm-ai").addEventListener("click", confirmAi);
  for (const input of form.querySelectorAll('input[name="decision"]')) {
    input.addEventListener("change", () => chooseDecision(input.value));
  }
  for (const type of ["change", "input"]) form.addEventListener(type, changed);
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty) event.preventDefault();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  const saved = sessionStorage.getItem("portal.saved");
  if (saved) {
    sessionStorage.removeItem("portal.saved");
    say(saved);
    $("status-line").classList.add("saved");
  }
  fitToWindow();
  setMode("pan");
  setHeatmap(false);
  setLinked(true);
  applyWindow();
  poll();
})();
