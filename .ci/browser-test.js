// The browser side of .ci/browser-test: in headless Chromium (Debian's, driven by Playwright),
// runs the page's self-test (?selftest=1) against each server given, then on the last one
// checks wheel zoom, drag and the readout with real input events (trusted, as a user's mouse
// makes them), and takes the README screenshot.
//
// Usage: node browser-test.js SCREENSHOT.png URL... (NODE_PATH must find playwright-core)
"use strict";
const { chromium } = require("playwright-core");

// Bounds for hangs only: a good run takes a few seconds.
const HANG_MS = 120000;

function fail(why) {
  throw new Error(why);
}

async function selftest(page, url) {
  const started = Date.now();
  await page.goto(url + "?selftest=1");
  try {
    await page.waitForSelector("#selftest[data-done]", { timeout: HANG_MS });
  } catch (e) {
    const last = await page.textContent("#selftest").catch(() => null);
    fail(`${url}: no self-test result within ${HANG_MS / 1000} s (last: ${last})`);
  }
  const result = await page.textContent("#selftest");
  console.log(`browser self-test ${url} (${((Date.now() - started) / 1000).toFixed(1)} s): ${result}`);
  if (!result.startsWith("PASS")) fail(`${url}: ${result}`);
}

// Real wheel, drag and hover on the XY view; each checked against the page's view state.
async function realInput(page) {
  const view = () => page.evaluate(() => ({ ...viewer.S.view, cross: { ...viewer.S.cross } }));
  const box = await page.locator("#xy").boundingBox();
  await page.evaluate(() => { viewer.fit(); return viewer.settled(); });
  // On whole pixels: a mouse event's position is.
  const p = { x: Math.round(box.x + box.width * 0.45), y: Math.round(box.y + box.height * 0.55) };
  const local = [p.x - box.x, p.y - box.y];
  await page.mouse.move(p.x, p.y);
  const anchor = await page.evaluate((q) => viewer.toSource(...q), local);
  const before = await view();
  await page.mouse.wheel(0, -300);
  await page.waitForFunction((s) => viewer.S.view.s > s * 1.5, before.s, { timeout: HANG_MS });
  const after = await page.evaluate((q) => viewer.toSource(...q), local);
  const moved = Math.hypot(after[0] - anchor[0], after[1] - anchor[1]);
  if (moved > 1e-6) fail(`real wheel: the voxel under the pointer moved by ${moved}`);
  console.log(`real wheel: zoom ${before.s.toFixed(3)} -> ${(await view()).s.toFixed(3)} about the pointer`);

  const v1 = await view();
  await page.mouse.down();
  await page.mouse.move(p.x + 80, p.y + 50, { steps: 8 });
  await page.mouse.up();
  const want = [v1.cx - 80 / v1.s, v1.cy - 50 / v1.s];
  await page.waitForFunction(([x, y]) => Math.abs(viewer.S.view.cx - x) < 1e-6 && Math.abs(viewer.S.view.cy - y) < 1e-6,
    want, { timeout: HANG_MS });
  const v2 = await view();
  if (v2.cross.x !== v1.cross.x || v2.cross.y !== v1.cross.y) fail("real drag: taken as a click");
  console.log(`real drag: centre (${v1.cx.toFixed(1)}, ${v1.cy.toFixed(1)}) -> (${v2.cx.toFixed(1)}, ${v2.cy.toFixed(1)})`);

  await page.mouse.move(p.x + 10, p.y + 10);
  await page.evaluate(() => viewer.readoutReady());
  const text = await page.textContent("#readout");
  if (!/x \d+ y \d+ z \d+/.test(text) || !/value \d/.test(text)) fail(`real hover: readout "${text}"`);
  console.log(`real hover: ${text}`);
}

async function screenshot(page, file) {
  // The slice at fit, the pointer over the upper bright ellipse, the self-test's line hidden.
  await page.evaluate(() => { document.getElementById("selftest").hidden = true; viewer.fit(); return viewer.settled(); });
  const box = await page.locator("#xy").boundingBox();
  const [x, y] = await page.evaluate(() => {
    const L = viewer.S.levels[0];
    return viewer.toScreen(L.width * 0.3, L.height * 0.3);
  });
  await page.mouse.move(box.x + x, box.y + y);
  await page.evaluate(() => Promise.all([viewer.readoutReady(), viewer.settled(), viewer.sectionsIdle()]));
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
}

async function main() {
  const [file, ...urls] = process.argv.slice(2);
  if (!file || !urls.length) fail("usage: node browser-test.js SCREENSHOT.png URL...");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    timeout: HANG_MS,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") console.log("  console: " + m.text()); });
    for (const url of urls) await selftest(page, url);
    await realInput(page);
    await screenshot(page, file);
    if (errors.length) fail("errors in the page: " + errors.join("; "));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error("FAIL " + e.message);
  process.exit(1);
});
