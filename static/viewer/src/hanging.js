/* Lays out one step of a hanging protocol (protocols.js): right breast on the viewer's left, left on the
 * right, chest walls facing; a row with no image at all is dropped (an MLO-only study fills the stage), a
 * missing image in a shown row is labelled. The current study's images no slot took go to a strip below
 * when the step asks for it. */
import { SIDE_NAMES, el } from "./util.js";

function pick(images, side, view, used) {
  const image = images.find((i) => !used.has(i.id) && i.laterality === side && i.view === view);
  if (image) used.add(image.id);
  return image || null;
}

function emptyCell(side, view, prior) {
  const what = view === "OTHER" ? "other view" : view;
  return el(
    "div",
    { class: `vp empty side-${side}${prior ? " prior" : ""}`, "data-slot": `${side}-${view}` },
    el("span", { text: `No ${prior ? "prior " : ""}${SIDE_NAMES[side]} ${what} image` }),
  );
}

/**
 * Lay out cells in `grid` (and `strip`) for `step`; makeCell(image, side, prior) returns a Cell.
 * Returns the cells created, in reading order.
 */
export function layOut({ grid, strip, step, current, prior, makeCell }) {
  grid.replaceChildren();
  strip.replaceChildren();
  const sets = {
    current: { images: [...current].sort((a, b) => a.id - b.id), prior: null, used: new Set() },
    prior: { images: prior ? [...prior.images].sort((a, b) => a.id - b.id) : [], prior, used: new Set() },
  };
  const has = (slot) => sets[slot.study].images.some((i) => i.laterality === slot.side && i.view === slot.view);
  const rows = step.rows.filter((row) => row.some(has));
  const cells = [];
  for (const row of rows) {
    for (const slot of row) {
      const set = sets[slot.study];
      const image = pick(set.images, slot.side, slot.view, set.used);
      if (image) {
        const cell = makeCell(image, slot.side, set.prior);
        cells.push(cell);
        grid.append(cell.el);
      } else grid.append(emptyCell(slot.side, slot.view, set.prior));
    }
  }
  const columns = Math.max(1, ...rows.map((row) => row.length));
  grid.style.setProperty("--rows", String(Math.max(1, rows.length)));
  grid.style.setProperty("--cols", String(columns));
  grid.dataset.layout = sets.prior.used.size ? "comparison" : "current";
  grid.hidden = rows.length === 0;
  const extras = step.strip || !rows.length ? sets.current.images.filter((i) => !sets.current.used.has(i.id)) : [];
  strip.hidden = extras.length === 0;
  for (const image of extras) {
    const cell = makeCell(image, rows.length ? (["R", "L"].includes(image.laterality) ? image.laterality : "U") : "U", null);
    cells.push(cell);
    strip.append(cell.el);
  }
  strip.classList.toggle("only", !rows.length);
  return cells;
}
