// Bundles the case viewer (static/viewer/src) and Cornerstone3D into static/viewer/dist.
// Run by scripts/build_viewer.sh. Fixed entry names (the template links early.js, the first requests, and
// viewer.js); chunks, workers and the codecs' WASM get content hashes. No CDN: everything is served by Django.
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: here,
  base: "./",
  logLevel: "error",
  publicDir: false,
  resolve: { alias: { events: resolve(here, "src/shims/events.js") } },
  build: {
    outDir: resolve(here, "dist"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 6000,
    rollupOptions: {
      input: { early: resolve(here, "src/early.js"), viewer: resolve(here, "src/main.js") },
      output: {
        entryFileNames: "[name].js",
        chunkFileNames: "chunks/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  worker: { format: "es" },
});
