/* A cell's readouts: the stored value under the pointer (synchronous, per mousemove: the modality value
 * too where a rescale applies) and the information overlay. Mixed into Cell. */
import { attributeText } from "./imaging.js";
import { SIDE_NAMES, el } from "./util.js";

export const overlay = {
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
  },

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
  },

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
  },
};
