/* The first full-depth paint of an uncompressed grey DICOM image, made on the CPU at display size
 * (pixelworker.js runs it in a worker while the viewer bundle boots; firstpaint.js draws the result).
 *
 * It shows what the viewer's Cornerstone cell will show at fit-to-window: the stored values sampled at the
 * display's pixels as its WebGL texture is (bilinear, no mipmaps), the Modality LUT (rescale),
 * the header's first window (the VOI LUT Function: LINEAR, LINEAR_EXACT, SIGMOID) or the values' range when
 * the header has none, as Cornerstone's DICOM loader does, MONOCHROME1 inverted, and the chest wall where
 * the cell puts it (`chestWallOnLeft` in imaging.js, on the same sampled values). Anything else (compressed
 * or big-endian pixel data, colour, several frames, a Modality LUT or VOI LUT table) gets no early paint:
 * the reason says why, and the cell's own first paint is the first full-depth one. */
import dicomParser from "dicom-parser";

const PLAIN = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]);

function number(dataSet, tag, index, fallback) {
  const value = dataSet.floatString(tag, index);
  return Number.isFinite(value) ? value : fallback;
}

/** The stored values and what displaying them needs, or { reason } when this path cannot show the image. */
export function paintFacts(buffer) {
  let dataSet;
  try {
    dataSet = dicomParser.parseDicom(new Uint8Array(buffer));
  } catch (error) {
    return { reason: `not readable here (${error && error.exception ? error.exception : error})` };
  }
  const syntax = (dataSet.string("x00020010") || "").trim();
  if (!PLAIN.has(syntax)) return { reason: `transfer syntax ${syntax || "unknown"}` };
  const rows = dataSet.uint16("x00280010");
  const columns = dataSet.uint16("x00280011");
  const samples = dataSet.uint16("x00280002") ?? 1;
  const bits = dataSet.uint16("x00280100");
  const stored = dataSet.uint16("x00280101") ?? bits;
  const signed = dataSet.uint16("x00280103") === 1;
  const frames = dataSet.intString("x00280008") ?? 1;
  const photometric = (dataSet.string("x00280004") || "").trim().toUpperCase();
  const pixels = dataSet.elements.x7fe00010;
  if (!rows || !columns || samples !== 1 || frames > 1) return { reason: "not a single grey frame" };
  if (!["MONOCHROME1", "MONOCHROME2"].includes(photometric)) return { reason: `photometric ${photometric}` };
  if (bits !== 8 && bits !== 16) return { reason: `${bits} bits allocated` };
  if (dataSet.elements.x00283010 || dataSet.elements.x00283000) return { reason: "a LUT table" };
  const length = (rows * columns * bits) / 8;
  if (!pixels || pixels.encapsulatedPixelData || pixels.length < length) return { reason: "no plain pixel data" };
  const offset = dataSet.byteArray.byteOffset + pixels.dataOffset;
  let values;
  if (bits === 8) values = new (signed ? Int8Array : Uint8Array)(buffer, offset, rows * columns);
  else if (offset % 2 === 0) values = new (signed ? Int16Array : Uint16Array)(buffer, offset, rows * columns);
  else values = new (signed ? Int16Array : Uint16Array)(buffer.slice(offset, offset + length));
  const center = number(dataSet, "x00281050", 0, null);
  const width = number(dataSet, "x00281051", 0, null);
  const fn = (dataSet.string("x00281056") || "").trim().toUpperCase();
  return {
    rows,
    columns,
    values,
    shift: signed && stored < bits ? 32 - stored : 0, // sign extension of signed values stored in fewer bits
    slope: number(dataSet, "x00281053", 0, 1),
    intercept: number(dataSet, "x00281052", 0, 0),
    window: center !== null && width !== null && width > 0 ? { center, width } : null,
    voiFunction: ["LINEAR_EXACT", "SIGMOID"].includes(fn) ? fn : "LINEAR",
    monochrome1: photometric === "MONOCHROME1",
  };
}

/** The first VOI range Cornerstone shows (getVOIRangeFromWindowLevel): from the header's window, else from
 * the modality values' range (the DICOM loader's default window). */
export function initialRange(facts, min, max) {
  let { window } = facts;
  if (!window) window = { center: (min + max + 1) / 2, width: Math.abs(max - min) + 1 }; // windowLevel.toWindowLevel
  const { center, width } = window;
  if (facts.voiFunction === "LINEAR_EXACT") return { lower: center - width / 2, upper: center + width / 2 };
  return { lower: center - 0.5 - (width - 1) / 2, upper: center - 0.5 + (width - 1) / 2 };
}

/** imaging.js's chestWallOnLeft on the same grid of modality values. */
export function chestWallOnLeft(facts) {
  const { values, rows, columns, shift, slope, intercept, monochrome1 } = facts;
  const step = Math.max(1, Math.floor(Math.min(columns, rows) / 64));
  let left = 0;
  let right = 0;
  for (let y = 0; y < rows; y += step) {
    const row = y * columns;
    for (let x = 0; x < columns; x += step) {
      let v = values[row + x];
      if (shift) v = (v << shift) >> shift;
      v = v * slope + intercept;
      if (x < columns / 2) left += v;
      else right += v;
    }
  }
  return monochrome1 ? left <= right : left >= right;
}

/** The smallest and largest stored value (sign-extended). */
export function storedRange({ values, shift }) {
  let min = Infinity;
  let max = -Infinity;
  if (shift) {
    for (let i = 0; i < values.length; i += 1) {
      const v = (values[i] << shift) >> shift;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  } else {
    min = values[0];
    max = values[0];
    for (let i = 1; i < values.length; i += 1) {
      const v = values[i];
      if (v < min) min = v;
      else if (v > max) max = v;
    }
  }
  return { min, max };
}

/** The grey picture of the whole image at `width` x `height` display pixels, sampled as the viewer's WebGL
 * cell samples its texture (bilinear, at each display pixel's centre, no mipmaps), windowed as it first is:
 * RGBA bytes, the chest wall's side, the VOI range used. */
export function paintPicture(facts, { width, height }, knownRange = null) {
  const { values, rows, columns, shift, slope, intercept } = facts;
  let min = 0;
  let max = 0;
  if (!facts.window) {
    // The loader's default window is the whole range of the modality values: from the stored values' range
    // the server found when it rendered the image (`knownRange`), else from a pass over them here.
    const stored = knownRange ? { min: knownRange[0], max: knownRange[1] } : storedRange(facts);
    [min, max] = [stored.min * slope + intercept, stored.max * slope + intercept].sort((a, b) => a - b);
  }
  const range = initialRange(facts, min, max);
  const span = Math.max(1e-6, range.upper - range.lower);
  const center = (range.lower + range.upper) / 2;
  const sigmoid = facts.voiFunction === "SIGMOID";
  const value = shift ? (i) => (values[i] << shift) >> shift : (i) => values[i];
  const rgba = new Uint8ClampedArray(width * height * 4);
  const sx = columns / width;
  const sy = rows / height;
  for (let j = 0; j < height; j += 1) {
    const y = Math.min(rows - 1, Math.max(0, (j + 0.5) * sy - 0.5));
    const y0 = Math.floor(y);
    const y1 = Math.min(rows - 1, y0 + 1);
    const fy = y - y0;
    for (let i = 0; i < width; i += 1) {
      const x = Math.min(columns - 1, Math.max(0, (i + 0.5) * sx - 0.5));
      const x0 = Math.floor(x);
      const x1 = Math.min(columns - 1, x0 + 1);
      const fx = x - x0;
      const top = value(y0 * columns + x0) * (1 - fx) + value(y0 * columns + x1) * fx;
      const bottom = value(y1 * columns + x0) * (1 - fx) + value(y1 * columns + x1) * fx;
      const v = (top * (1 - fy) + bottom * fy) * slope + intercept;
      let grey = sigmoid ? 1 / (1 + Math.exp((-4 * (v - center)) / span)) : (v - range.lower) / span;
      grey = grey < 0 ? 0 : grey > 1 ? 1 : grey;
      if (facts.monochrome1) grey = 1 - grey;
      const g = Math.round(grey * 255);
      const k = (j * width + i) * 4;
      rgba[k] = g;
      rgba[k + 1] = g;
      rgba[k + 2] = g;
      rgba[k + 3] = 255;
    }
  }
  return { rgba, width, height, chestWallOnLeft: chestWallOnLeft(facts), range };
}
