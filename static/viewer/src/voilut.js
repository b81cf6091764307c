/* DICOM VOI LUT tables (the VOI LUT Sequence). Cornerstone3D 5.14 neither reads the table (its VOI LUT
 * metadata module has only window centre/width) nor applies one on the WebGL path, so the viewer does:
 * the first table becomes the stack viewport's grey transfer function, one node per entry over the
 * table's input range (first value mapped .. + entries - 1, values after the Modality LUT), each output
 * scaled to 0..1; values outside the range take the first or last entry (DICOM), as the function clamps.
 * The viewport's VOI range is then that input range: windowing stretches the table, a window preset
 * (linear) replaces it, and MONOCHROME1 or a user inversion inverts its outputs as it does a window's. */

/** Numbers of a naturalised attribute value: an array of numbers, a typed array or (OW) byte buffers. */
function numbers(value, bits) {
  if (value === undefined || value === null) return [];
  const view = (buffer) => {
    const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    if (bits === 8) return Array.from(bytes);
    return Array.from(new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + (bytes.byteLength & ~1))));
  };
  if (value instanceof ArrayBuffer) return view(value);
  if (ArrayBuffer.isView(value)) return value.BYTES_PER_ELEMENT === 1 ? view(value) : Array.from(value);
  if (Array.isArray(value)) {
    if (value.length && (value[0] instanceof ArrayBuffer || ArrayBuffer.isView(value[0]))) return value.flatMap((part) => numbers(part, bits));
    return value.map(Number);
  }
  return [Number(value)];
}

/** The image's first VOI LUT table, or null: { first, last, outputs (0..1), name }. */
export function voiLutOf(attributes) {
  const item = [].concat(attributes?.VOILUTSequence ?? [])[0];
  if (!item) return null;
  const descriptor = numbers(item.LUTDescriptor);
  if (descriptor.length < 3) return null;
  const [count, firstMapped, bits] = descriptor;
  const entries = count === 0 ? 65536 : count;
  let data = numbers(item.LUTData, bits);
  if (bits === 8 && data.length === 2 * entries) data = numbers(item.LUTData, 16); // 8-bit entries stored in 16 bits
  if (data.length < entries || entries < 2) return null;
  data = data.slice(0, entries);
  // Signed first value when the Modality LUT output is signed (US descriptors carry it as 0..65535).
  const signed = Number(attributes.PixelRepresentation) === 1 && firstMapped > 32767;
  const first = signed ? firstMapped - 65536 : firstMapped;
  // The output range: 2^bits - 1, but vendors who declare 16 bits and fill 12 are read as 12 (as dcmtk does).
  const max = data.reduce((a, b) => Math.max(a, b), 0);
  const outputBits = Math.max(1, Math.min(bits || 16, Math.max(1, Math.ceil(Math.log2(max + 1)))));
  const top = 2 ** outputBits - 1;
  const explanation = String(item.LUTExplanation ?? "").trim();
  return { first, last: first + entries - 1, outputs: data.map((v) => Math.min(1, v / top)), name: explanation ? `VOI LUT: ${explanation}` : "VOI LUT" };
}

function transferFunction(viewport) {
  const entry = viewport.getDefaultActor && viewport.getDefaultActor();
  const property = entry && entry.actor && entry.actor.getProperty();
  return property ? property.getRGBTransferFunction(0) : null;
}

function setNodes(viewport, xs, greys) {
  const fn = transferFunction(viewport);
  if (!fn) return false;
  const invert = Boolean(viewport.getProperties().invert);
  const points = [];
  xs.forEach((x, i) => {
    const g = invert ? 1 - greys[i] : greys[i];
    points.push(x, g, g, g);
  });
  fn.applyColorMap({ RGBPoints: points });
  return true;
}

/** Show the image through the table: its input range becomes the VOI range (events suppressed). */
export function applyVoiLut(viewport, lut) {
  viewport.setProperties({ voiRange: { lower: lut.first, upper: lut.last } }, true);
  const xs = lut.outputs.map((_, i) => lut.first + i);
  const applied = setNodes(viewport, xs, lut.outputs);
  viewport.render();
  return applied;
}

/** Back to a linear window over `range` (replaces a table). */
export function applyLinear(viewport, range, suppress = false) {
  setNodes(viewport, [range.lower, range.upper], [0, 1]);
  viewport.setProperties({ voiRange: { ...range } }, suppress);
  viewport.render();
}
