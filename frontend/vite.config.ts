/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Every node's axum server serves `dist/` at `/` and answers `index.html` for unknown paths,
// so that the client-side routes (`/jobs/<id>`, `/workers`, …) load directly. Asset URLs are
// absolute: relative ones would resolve under `/jobs/` on a deep link.
export default defineConfig({
  base: '/',
  plugins: [react()],
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
    },
  },
  test: {
    environment: 'jsdom',
    // The browser test in e2e/ has its own config (vitest.e2e.config.ts) and needs a cluster.
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['./src/test/setup.ts'],
  },
});
