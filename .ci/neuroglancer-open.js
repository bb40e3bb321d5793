// Opens a Neuroglancer viewer URL in headless Chromium (Debian's, driven by Playwright) with
// WebGL on SwiftShader, and keeps it open until stdin closes (the Python side takes the
// screenshot through the viewer's own connection). Page errors and failed requests are printed.
//
// Usage: node neuroglancer-open.js URL (NODE_PATH must find playwright-core)
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox"],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  page.on("console", (m) => { if (m.type() === "error") console.error("console:", m.text()); });
  page.on("requestfailed", (r) => console.error("request failed:", r.url(), r.failure() && r.failure().errorText));
  page.on("response", (r) => { if (r.status() >= 500) console.error("HTTP", r.status(), r.url()); });
  await page.goto(process.argv[2]);
  console.log("opened");
  process.stdin.resume();
  process.stdin.on("end", async () => { await browser.close(); process.exit(0); });
})().catch((e) => { console.error(e); process.exit(1); });
