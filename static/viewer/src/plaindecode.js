/* Uncompressed little-endian frames, "decoded" on the main thread instead of in a decode worker.
 *
 * Cornerstone's DICOM loader sends every frame to a worker (comlink): for an uncompressed 16-bit
 * mammogram that is a structured clone of 27 MB to the worker, which views it as 16-bit values, scans
 * min/max and copies it into a fresh typed array, and a second 27 MB clone back, each clone costing the
 * main thread about as much as the work itself (Chrome trace of a case open, issue 24). There is nothing
 * to decode in such a frame: this does the worker's post-processing (postProcessDecodedPixels in
 * @cornerstonejs/dicom-image-loader 5.14, for these transfer syntaxes) where the bytes already are, so
 * nothing is copied to or from a worker. Compressed frames, colour, 32-bit and anything unusual still
 * go to the workers as before. */
import { getWebWorkerManager } from "@cornerstonejs/core";

// Implicit and explicit VR little endian: the frame's bytes are its stored values.
const PLAIN = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]);

/** Whether this frame takes the main-thread path: grey, 8 or 16 bits, no target buffer asked for. */
export function isPlainFrame({ imageFrame, transferSyntax, pixelData, options }) {
  return (
    PLAIN.has(transferSyntax) &&
    imageFrame &&
    imageFrame.samplesPerPixel === 1 &&
    (imageFrame.bitsAllocated === 16 || imageFrame.bitsAllocated === 8) &&
    pixelData instanceof Uint8Array &&
    !(options && options.targetBuffer)
  );
}

function minMax(values) {
  let min = values[0];
  let max = values[0];
  for (let i = 1; i < values.length; i += 1) {
    const v = values[i];
    if (v < min) min = v;
    else if (v > max) max = v;
  }
  return { min, max };
}

/** The typed array the loader picks for values in [min, max] (getPixelDataTypeFromMinMax). */
export function arrayTypeFor(min, max) {
  if (Number.isInteger(min) && Number.isInteger(max)) {
    if (min >= 0) {
      if (max <= 255) return Uint8Array;
      if (max <= 65535) return Uint16Array;
      if (max <= 4294967295) return Uint32Array;
    } else if (min >= -128 && max <= 127) return Int8Array;
    else if (min >= -32768 && max <= 32767) return Int16Array;
  }
  return Float32Array;
}

function scaledRange(min, max, p) {
  if (p.modality === "PT" && typeof p.suvbw === "number" && !Number.isNaN(p.suvbw)) {
    return { min: p.suvbw * (min * p.rescaleSlope + p.rescaleIntercept), max: p.suvbw * (max * p.rescaleSlope + p.rescaleIntercept) };
  }
  if (p.modality === "RTDOSE" && typeof p.doseGridScaling === "number" && !Number.isNaN(p.doseGridScaling)) {
    return { min: min * p.doseGridScaling, max: max * p.doseGridScaling };
  }
  if (typeof p.rescaleSlope === "number" && typeof p.rescaleIntercept === "number") {
    return { min: p.rescaleSlope * min + p.rescaleIntercept, max: p.rescaleSlope * max + p.rescaleIntercept };
  }
  return { min, max };
}

function scaleInPlace(array, p) {
  const n = array.length;
  if (p.modality === "PT" && typeof p.suvbw === "number" && !Number.isNaN(p.suvbw)) {
    for (let i = 0; i < n; i += 1) array[i] = p.suvbw * (array[i] * p.rescaleSlope + p.rescaleIntercept);
  } else if (p.modality === "RTDOSE" && typeof p.doseGridScaling === "number" && !Number.isNaN(p.doseGridScaling)) {
    for (let i = 0; i < n; i += 1) array[i] = array[i] * p.doseGridScaling;
  } else {
    for (let i = 0; i < n; i += 1) array[i] = array[i] * p.rescaleSlope + p.rescaleIntercept;
  }
}

const requiresScaling = (p) =>
  (typeof p.rescaleSlope === "number" && typeof p.rescaleIntercept === "number") ||
  (p.modality === "RTDOSE" && typeof p.doseGridScaling === "number") ||
  (p.modality === "PT" && typeof p.suvbw === "number");

/** The decoded frame, as the worker returns it: stored values (sign-extended), the modality rescale
 * applied when the loader asked for it (preScale), their range. The input bytes are never modified. */
export function decodePlainFrame({ imageFrame, pixelData, options = {} }) {
  const start = Date.now();
  const frame = { ...imageFrame };
  let values = pixelData;
  if (frame.bitsAllocated === 16) {
    const bytes = pixelData.byteOffset % 2 ? pixelData.slice() : pixelData; // a 16-bit view needs an even offset
    const View = frame.pixelRepresentation === 1 ? Int16Array : Uint16Array;
    values = new View(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 2));
  }
  const shift = frame.pixelRepresentation === 1 && frame.bitsStored !== undefined ? 32 - frame.bitsStored : undefined;
  if (shift !== undefined) {
    values = values.slice(); // sign-extend a copy: the bytes stay as they arrived
    for (let i = 0; i < values.length; i += 1) values[i] = (values[i] << shift) >> shift;
  }
  frame.pixelDataLength = values.length;
  const before = minMax(values);
  const preScale = options.preScale || { enabled: false };
  const params = preScale.scalingParameters;
  const canRenderFloat = options.allowFloatRendering !== undefined ? options.allowFloatRendering : true;
  const floatRescale = preScale.enabled && params && Object.values(params).some((v) => typeof v === "number" && !Number.isInteger(v));
  const scale = Boolean(preScale.enabled && !(!canRenderFloat && floatRescale));
  if (scale && !params) throw new Error("options.preScale.scalingParameters must be defined if preScale.enabled is true");
  const range = scale ? scaledRange(before.min, before.max, params) : before;
  const Type = arrayTypeFor(range.min, range.max);
  let after = before;
  let out;
  if (scale && requiresScaling(params)) {
    out = new Type(values.length);
    out.set(values);
    scaleInPlace(out, params);
    frame.preScale = { ...preScale, scaled: true };
    after = range;
  } else {
    // No rescale: the loader copies the values into their own array next (setPixelDataType), so a view will do.
    if (values.constructor === Type) out = values;
    else {
      out = new Type(values.length);
      out.set(values);
    }
  }
  frame.pixelData = out;
  frame.smallestPixelValue = after.min;
  frame.largestPixelValue = after.max;
  frame.decodeTimeInMS = Date.now() - start;
  return frame;
}

/** Route the loader's decode tasks for plain frames to `decodePlainFrame`; everything else to the workers. */
export function decodePlainFramesHere() {
  const manager = getWebWorkerManager();
  if (!manager || manager.plainFramesHere) return;
  const executeTask = manager.executeTask.bind(manager);
  manager.executeTask = (worker, method, args, options) => {
    if (worker === "dicomImageLoader" && method === "decodeTask" && isPlainFrame(args || {})) {
      performance.mark("viewer:decode-here");
      return new Promise((resolve) => resolve(decodePlainFrame(args)));
    }
    return executeTask(worker, method, args, options);
  };
  manager.plainFramesHere = true;
}
