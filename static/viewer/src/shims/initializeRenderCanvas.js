/* Cornerstone3D's CPU rendering (cpuFallback/rendering/initializeRenderCanvas.js, core 5.14), without its
 * read-back. The original fills the full-resolution render canvas white and reads it back with
 * getImageData to get an opaque white ImageData (the grey level then goes into the alpha channel): for a
 * 3328x4096 mammogram that is a 54 MB fill and read-back of a software canvas, about 170 ms of the main
 * thread per image (Chrome trace, issue 24), more than windowing the image itself. The same ImageData is
 * made directly here. The canvas is left blank: every render puts the whole ImageData before drawing it.
 * vite.config.js swaps this in for the original and stops the build if the original changes. */
export default function initializeRenderCanvas(enabledElement, image) {
  const renderCanvas = enabledElement.renderingTools.renderCanvas;
  renderCanvas.width = image.width;
  renderCanvas.height = image.height;
  const canvasContext = renderCanvas.getContext("2d");
  const renderCanvasData = new ImageData(image.width, image.height);
  new Uint32Array(renderCanvasData.data.buffer).fill(0xffffffff); // opaque white, as the fill read back
  enabledElement.renderingTools.renderCanvasContext = canvasContext;
  enabledElement.renderingTools.renderCanvasData = renderCanvasData;
}
