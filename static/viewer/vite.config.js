// Bundles the case viewer (static/viewer/src) and Cornerstone3D into static/viewer/dist.
// Run by scripts/build_viewer.sh. Fixed entry names (the template links early.js, the first requests and first
// paint, which imports viewer.js); chunks, workers and the codecs' WASM get content hashes. No CDN: everything
// is served by Django.
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

// Two builds into one folder (scripts/build_viewer.sh runs both): the viewer (viewer.js, its chunks, workers and
// codecs) and, with `--mode early`, the page's early script (early.js) as one classic script with no chunk of
// its own to wait for: the modules both use (hanging, protocols, util, handover, prefetch) are in each;
// they hold no state (handover.js passes everything through the #viewer element).
export default defineConfig(({ mode }) => {
  const early = mode === "early";
  return {
    root: here,
    base: "./",
    logLevel: "error",
    publicDir: false,
    resolve: { alias: { events: resolve(here, "src/shims/events.js") } },
    build: {
      outDir: resolve(here, "dist"),
      emptyOutDir: !early,
      target: "es2022",
      chunkSizeWarningLimit: 6000,
      rollupOptions: {
        input: early ? { early: resolve(here, "src/early.js") } : { viewer: resolve(here, "src/main.js") },
        output: {
          // early.js is a classic async script (viewer.html): it runs as soon as it is here, where a module
          // script waited 0.1-0.35 s longer on this machine.
          format: early ? "iife" : "es",
          entryFileNames: "[name].js",
          chunkFileNames: "chunks/[name]-[hash].js",
          assetFileNames: "assets/[name]-[hash][extname]",
        },
      },
    },
    worker: { format: "es" },
  };
});
