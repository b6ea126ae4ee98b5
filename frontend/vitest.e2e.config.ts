// The browser test (e2e/): run by `cargo test -p idunno-cli --test browser`, which starts the
// cluster it drives. Not part of `npm test`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.test.ts'],
    environment: 'node',
    testTimeout: 480_000,
    hookTimeout: 60_000,
  },
});
