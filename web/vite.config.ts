// Vite builds the bundle that confer embeds (web/dist, committed). Hashed file names so
// the server can mark them immutable; no inline scripts or styles, so the server's
// Content-Security-Policy can forbid them; nothing that varies between builds (no
// timestamps, no absolute paths), so a fresh build equals the committed one.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    target: 'es2022',
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/files': 'http://127.0.0.1:8080',
      '/socket.io': { target: 'http://127.0.0.1:8080', ws: true },
    },
  },
});
