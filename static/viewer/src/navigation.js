/* Navigation across the cells: 1:1 pixels and true size (setDisplayArea at a scale, from the chest-wall
 * anchor of the fit), and synchronised pan and zoom of mirrored pairs (R CC with L CC, R MLO with L MLO of
 * the same study): the partner gets the same zoom, and its image's centre goes to the mirrored place. */

/** A CSS pixel in mm: browsers define 96 CSS pixels to the inch (a screen's own pitch is not known to a page). */
export const CSS_PIXEL_MM = 25.4 / 96;

/** The scale (device pixels per stored pixel) of a display mode; null when the image cannot be shown so
 * (true size needs a calibrated image: Cornerstone's world unit is then the mm of its pixel spacing). */
export function scaleFor(cell, mode) {
  const ratio = window.devicePixelRatio || 1;
  if (mode === "pixel") return 1;
  if (mode !== "true" || cell.el.dataset.calibrated !== "true") return null;
  const spacing = cell.viewport.getImageData().spacing[1];
  return (spacing * ratio) / CSS_PIXEL_MM;
}

/** Show every loaded cell at 1:1 pixels ("pixel") or true size ("true"); returns how many cells could not be. */
export function showAtScale(cells, mode) {
  let refused = 0;
  for (const cell of cells) {
    if (!cell.loaded) continue;
    const scale = scaleFor(cell, mode);
    if (scale === null) refused += 1;
    else cell.fit(scale);
  }
  return refused;
}

/** The mirrored partner of a cell: the other breast's image of the same view in the same study. */
export function partnerOf(cell, cells) {
  const { laterality, view } = cell.image;
  if (!["R", "L"].includes(laterality)) return null;
  const other = laterality === "R" ? "L" : "R";
  return (
    cells.find((c) => c !== cell && c.loaded && c.prior === cell.prior && c.image.laterality === other && c.image.view === view) ||
    null
  );
}

let syncing = false;

/** After the reader moved or zoomed `cell`: its partner follows, mirrored about the line between them. */
export function followMirrored(cell, cells) {
  if (syncing || cell.fitting || !cell.loaded) return;
  const partner = partnerOf(cell, cells);
  if (!partner || !partner.viewport) return;
  syncing = true;
  try {
    const vp = partner.viewport;
    vp.setCamera({ parallelScale: cell.viewport.getCamera().parallelScale });
    const [x, y] = cell.toCanvas(cell.image.columns / 2, cell.image.rows / 2);
    const [px, py] = partner.toCanvas(partner.image.columns / 2, partner.image.rows / 2);
    const width = partner.element.clientWidth;
    const targetX = width * (1 - x / Math.max(1, cell.element.clientWidth));
    partner.panCanvas(targetX - px, y - py);
    partner.fitted = false;
    vp.render();
  } finally {
    syncing = false;
  }
}
