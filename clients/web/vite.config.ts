import { defineConfig } from "vite";

// `npm run build` (in clients/) writes dist/, which is committed: the gateway serves it
// at `/` with CHAT_WEB_CLIENT=1, so neither CI nor `./taskw up` needs a build.
export default defineConfig({
  root: __dirname,
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
  server: {
    // `npm run dev` in clients/: the page on :5173 (an allowed origin of the dev stack)
    // talks to the gateway of `./taskw up`.
    port: 5173,
    proxy: { "/web-config.json": "http://127.0.0.1:8080", "/dev": "http://127.0.0.1:8080", "/v1": "http://127.0.0.1:8080" },
  },
});
