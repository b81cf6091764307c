/* Window/level of a cell, on the viewport's stored-value VOI range: the DICOM windows and VOI LUT table
 * as presets, linear windows in the image's VOI LUT Function, invert and reset. Mixed into Cell. */
import { csUtils } from "./imaging.js";
import { applyLinear, applyVoiLut } from "./voilut.js";

const { windowLevel } = csUtils;

export const windowing = {
  /** Centre and width in stored units (after the Modality LUT), from the viewport's VOI range. */
  window() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return null;
    const range = vp.getProperties().voiRange;
    if (!range) return null;
    if (this.voiFunction() === "LINEAR_EXACT") return { centre: (range.lower + range.upper) / 2, width: range.upper - range.lower };
    const { windowWidth, windowCenter } = windowLevel.toWindowLevel(range.lower, range.upper);
    return { centre: windowCenter, width: windowWidth };
  },

  /** The image's VOI LUT Function (LINEAR, LINEAR_EXACT or SIGMOID): how its windows map values to grey. */
  voiFunction() {
    return (this.csImage && this.csImage.voiLUTFunction) || "LINEAR";
  },

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
  },

  /** The image's VOI LUT table is shown by default only when it has no window (DICOM lets the viewer
   * choose when it has both; the windows stay the default then, the table a preset). */
  lutByDefault() {
    return Boolean(this.voiLut) && [].concat(this.attributes.WindowCenter ?? []).length === 0;
  },

  /** Show the image through its VOI LUT table (windowing then stretches the table). */
  useVoiLut(announce = true) {
    const vp = this.viewport;
    if (!vp || !this.loaded || !this.voiLut) return;
    this.lutActive = applyVoiLut(vp, this.voiLut);
    this.hooks.lutChanged(this, this.lutActive);
    this.updateWindow();
    if (announce) this.hooks.windowChanged(this);
  },

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
  },

  setVoiRange(range, suppress = true) {
    const vp = this.viewport;
    if (!vp || !this.loaded || !range) return;
    vp.setProperties({ voiRange: { ...range } }, suppress);
    vp.render();
    this.updateWindow();
  },

  updateWindow() {
    const w = this.window();
    const text = w ? `${this.lutActive ? "VOI LUT · " : ""}C ${Math.round(w.centre)} W ${Math.round(w.width)}` : "";
    this.wl.textContent = text;
    this.el.dataset.voi = this.lutActive ? "lut" : "linear";
    this.el.dataset.window = w ? `${Math.round(w.centre)}/${Math.round(w.width)}` : "";
    this.el.dataset.invert = String(Boolean(this.viewport && this.loaded && this.viewport.getProperties().invert));
  },

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
  },

  toggleInvert() {
    const vp = this.viewport;
    if (!vp || !this.loaded) return;
    vp.setProperties({ invert: !vp.getProperties().invert });
    vp.render();
    this.updateWindow();
  },
};
