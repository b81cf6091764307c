/* The first paint of a case, before the viewer bundle and Cornerstone have started: a layer over the stage
 * laid out as the viewer will lay out the reader's hanging protocol (its first step, hanging.js), one canvas
 * per current image, showing at once the image's server-made preview (a small 8-bit JPEG of the display
 * rendition, the header's window applied, which the page preloads) and then its first full-depth picture
 * (every stored value, fastpaint.js), placed as the cell will place it (fitted, chest wall on the centre line,
 * MLO at the top). As each Cornerstone cell paints its image, that image's canvas here gives way (release); a
 * change of layout or enlargement removes the layer. Pointer events pass through to the cells beneath. */
import { paintFacts, paintPicture } from "./fastpaint.js";
import { layOut } from "./hanging.js";
import { savedProtocol } from "./protocols.js";
import { fitViewerToWindow } from "./util.js";

const PREVIEW = "preview";
const FULL = "full";

/** Where the fitted image lies in a canvas of `width` x `height`, as the viewer's Cell.fit places it. */
export function fittedBox({ width, height }, { columns, rows }, { side, view }) {
  const scale = Math.min(width / columns, height / rows);
  const w = columns * scale;
  const h = rows * scale;
  let x = (width - w) / 2;
  if (side === "R") x = width - w;
  else if (side === "L") x = 0;
  const y = view === "MLO" ? 0 : (height - h) / 2;
  return { x, y, w, h };
}

/** Whether a grey picture's brighter half (the breast: grey levels as shown) is on its left. */
function wallOnLeftOf(picture) {
  const small = document.createElement("canvas");
  small.width = 32;
  small.height = 32;
  const ctx = small.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(picture, 0, 0, 32, 32);
  const { data } = ctx.getImageData(0, 0, 32, 32);
  let left = 0;
  let right = 0;
  for (let i = 0; i < data.length; i += 4) {
    if ((i / 4) % 32 < 16) left += data[i];
    else right += data[i];
  }
  return left >= right;
}

class EarlyCell {
  constructor(image, side) {
    this.image = image;
    this.side = side;
    this.quality = null;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "early-canvas";
    // Not a `.vp`: the viewer's cells (and the tests) find theirs by that class and data-image-id.
    this.el = document.createElement("div");
    this.el.className = `early-cell side-${side}`;
    this.el.dataset.earlyImage = String(image.id);
    this.el.append(this.canvas);
  }

  /** The cell's size in device pixels. */
  size() {
    const box = this.el.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    return { width: Math.max(1, Math.round(box.width * ratio)), height: Math.max(1, Math.round(box.height * ratio)) };
  }

  /** Show this picture (an image or canvas) of the whole image; never a preview over the full picture. */
  show(source, wallOnLeft, quality) {
    if (this.released || (quality === PREVIEW && this.quality === FULL)) {
      if (source.close) source.close();
      return false;
    }
    if (this.source && this.source.close) this.source.close(); // the preview's bitmap, replaced
    Object.assign(this, { source, wallOnLeft, quality });
    this.paint();
    this.el.dataset.early = quality;
    performance.mark("viewer:image-shown", { detail: { image: this.image.id, quality } });
    return true;
  }

  /** Draw the held picture at the cell's present size (again after the stage changed size). */
  paint() {
    if (!this.source || this.released) return;
    const size = this.size();
    const { canvas } = this;
    if (canvas.width !== size.width || canvas.height !== size.height) {
      canvas.width = size.width;
      canvas.height = size.height;
    }
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    const flip = this.side !== "U" && this.wallOnLeft === (this.side === "R"); // as the viewer's cell mirrors it
    const { x, y, w, h } = fittedBox(size, this.image, { side: this.side, view: this.image.view });
    ctx.clearRect(0, 0, size.width, size.height);
    ctx.save();
    if (flip) {
      ctx.translate(x + w, y);
      ctx.scale(-1, 1);
      ctx.drawImage(this.source, 0, 0, w, h);
    } else ctx.drawImage(this.source, x, y, w, h);
    ctx.restore();
    this.el.dataset.flip = String(flip);
  }

  release() {
    this.released = true;
    if (this.source && this.source.close) this.source.close();
    this.source = null;
    this.el.classList.add("released");
    this.canvas.width = 0; // the picture's memory goes now
    this.canvas.height = 0;
  }
}

/** The previews the page preloaded (viewer.html), each decoded off the main thread into an ImageBitmap (an
 * <img> drawn on a canvas is decoded again, on this thread, 20-40 ms each): image id -> promise of the bitmap,
 * or of null when there is none (not rendered yet: its grey placeholder is no use) or it failed. */
export function decodePreviews(images) {
  const decoded = async (url) => {
    try {
      const img = new Image();
      img.src = url;
      await img.decode();
      return await createImageBitmap(img);
    } catch {
      return null;
    }
  };
  return new Map(images.map((image) => [image.id, image.preview ? decoded(image.preview) : Promise.resolve(null)]));
}

/**
 * Lay the layer out over the stage and show the previews as they arrive.
 * @param images the page's list (#viewer-pixels): { id, laterality, view, columns, rows, url, preview,
 *   stored_range }
 * @param previews decodePreviews(images), started early
 * @returns null when there is nothing to show; else the layer: full(imageId, bytes) (draws an image's full-depth
 *   picture from its DICOM bytes; false with the reason marked when it cannot) and the API handover.js describes.
 */
export function createFirstPaint(root, images, previews = decodePreviews(images)) {
  const stage = document.getElementById("stage");
  if (!stage || !images.length) return null;
  fitViewerToWindow(root); // the stage's final size, before anything is laid out in it
  const layer = document.createElement("div");
  layer.className = "early-stage";
  layer.setAttribute("aria-hidden", "true");
  const grid = document.createElement("div");
  grid.className = "hanging";
  const strip = document.createElement("div");
  strip.className = "extra-strip";
  layer.append(grid, strip);
  stage.prepend(layer);
  const cells = new Map(); // image id -> EarlyCell
  layOut({
    grid,
    strip,
    step: savedProtocol(root).steps[0],
    current: images,
    prior: null,
    makeCell: (image, side) => {
      const cell = new EarlyCell(image, side);
      cells.set(image.id, cell);
      return cell;
    },
  });
  for (const empty of layer.querySelectorAll(".vp.empty")) {
    // hanging.js's labelled empty slot: here a blank one (the viewer's cell says what is missing)
    empty.className = "early-cell empty";
    empty.removeAttribute("data-slot");
    empty.replaceChildren();
  }
  for (const [id, cell] of cells) {
    previews.get(id).then((bitmap) => bitmap && cell.show(bitmap, wallOnLeftOf(bitmap), PREVIEW));
  }
  let removed = false;
  const resized = new ResizeObserver(() => {
    for (const cell of cells.values()) cell.paint();
  });
  resized.observe(layer);

  const api = {
    /** The laid-out images' ids. */
    ids: () => [...cells.keys()],
    full(imageId, bytes) {
      const cell = cells.get(imageId);
      if (!cell || cell.released || removed) return false;
      const facts = paintFacts(bytes);
      if (facts.reason) {
        performance.mark("viewer:image-not-shown", { detail: { image: imageId, reason: facts.reason } });
        return false;
      }
      // At the size it shows (device pixels), so the canvas draws it 1:1 (scaled only after a resize).
      const { w, h } = fittedBox(cell.size(), facts, { side: cell.side, view: cell.image.view });
      const size = { width: Math.max(1, Math.round(w)), height: Math.max(1, Math.round(h)) };
      const { rgba, width, height, chestWallOnLeft } = paintPicture(facts, size, cell.image.stored_range);
      const picture = document.createElement("canvas");
      picture.width = width;
      picture.height = height;
      picture.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
      const shown = cell.show(picture, chestWallOnLeft, FULL);
      if (shown) root.dispatchEvent(new CustomEvent("viewer:early-shown", { detail: { image: imageId } }));
      return shown;
    },
    quality(imageId) {
      const cell = cells.get(imageId);
      return !removed && cell && !cell.released ? cell.quality : null;
    },
    release(imageId) {
      const cell = cells.get(imageId);
      if (!cell || cell.released) return;
      cell.release();
      if ([...cells.values()].every((c) => c.released)) api.releaseAll();
    },
    releaseAll() {
      if (removed) return;
      removed = true;
      for (const cell of cells.values()) cell.release();
      resized.disconnect();
      layer.remove();
    },
  };
  return api;
}
