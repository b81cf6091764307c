/* The portal's Content-Security-Policy has no 'unsafe-inline' for styles, so a style attribute set with
 * setAttribute is refused (a console error, and the style is lost), while the same declarations set through
 * the CSSOM (element.style) are allowed. Cornerstone3D's tools set one: drawTextBox (the ruler's and other
 * annotations' labels) writes `style="user-select: none; pointer-events: none; filter: url(#shadow-…)"` on
 * an SVG <text>. Its SVG elements get their `style` attribute through the CSSOM instead: same declarations,
 * nothing refused. Imported before Cornerstone draws anything; every other attribute is set as before. */
const nativeSetAttribute = Element.prototype.setAttribute;

Object.defineProperty(SVGElement.prototype, "setAttribute", {
  configurable: true,
  writable: true,
  value: function setAttribute(name, value) {
    if (String(name).toLowerCase() === "style") {
      this.style.cssText = String(value);
      return undefined;
    }
    return nativeSetAttribute.call(this, name, value);
  },
});
