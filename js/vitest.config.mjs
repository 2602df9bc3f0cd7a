import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // JupyterLab packages ship ES modules without "type": "module"; let vite transform them.
    server: { deps: { inline: [/@jupyterlab\//, /@lumino\//] } }
  }
});
