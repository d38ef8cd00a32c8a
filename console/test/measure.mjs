// measure.mjs — the console's targets (docs/CONSOLE.md "Measured"), for bench/console.py:
//   {url, cert, key, runs, live: {filter}}
// 1. first page interactive: from navigation to the Overview's figures drawn, in a fresh
//    browser context each run (nothing cached, a new TLS connection), then a reload of it
//    (bundles from the cache, index.html revalidated);
// 2. live view under load: subscribed, it prints LIVE-READY on stderr and waits for "GO" on
//    stdin (the load runs meanwhile), then reports what it drew, what it said it did not
//    draw, and the gaps between animation frames while the load ran.
// The page's CSP is bypassed here only to read frame times (page.evaluate); bench, not test.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const a = JSON.parse(process.argv[2]);
const origin = new URL(a.url).origin;
const browser = await chromium.launch({ executablePath: a.chromium || "/usr/bin/chromium", args: ["--no-sandbox"] });
const opts = { clientCertificates: [{ origin, certPath: a.cert, keyPath: a.key }], ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 720 }, bypassCSP: true };
const out = { cold_ms: [], warm_ms: [] };

async function firstPage(page, reload) {
  const t0 = Date.now();
  if (reload) await page.reload({ waitUntil: "commit" });
  else await page.goto(`${a.url}#/overview`, { waitUntil: "commit" });
  await page.waitForFunction(() => (document.querySelector("#ov-records") || {}).textContent > "", null, { timeout: 20000, polling: 10 });
  return Date.now() - t0;
}

for (let i = 0; i < (a.runs || 5); i++) {
  const ctx = await browser.newContext(opts);
  const page = await ctx.newPage();
  out.cold_ms.push(await firstPage(page));
  out.warm_ms.push(await firstPage(page, true));
  await ctx.close();
}

if (a.live) {
  const ctx = await browser.newContext(opts);
  const page = await ctx.newPage();
  await page.goto(`${a.url}#/live`, { waitUntil: "load" });
  await page.fill("#lv-filter", a.live.filter);
  await page.click("form.bar button[type=submit]");
  await page.waitForFunction((f) => document.querySelector("#lv-status").textContent.startsWith("subscribed to " + f),
    a.live.filter, { timeout: 20000 });
  await page.evaluate(() => {
    window.__gaps = [];
    let last = performance.now();
    const tick = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  console.error("LIVE-READY");
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) if (line.trim() === "GO") break;
  const r = await page.evaluate(() => {
    const g = window.__gaps.slice(1).sort((x, y) => x - y);
    return { frames: g.length, gap_p50_ms: g[Math.floor(g.length * 0.5)], gap_p99_ms: g[Math.floor(g.length * 0.99)],
      gap_max_ms: g[g.length - 1], rows: document.querySelectorAll("#lv-rows tr").length,
      status: document.querySelector("#lv-status").textContent };
  });
  out.live = r;
}
console.log(JSON.stringify(out));
await browser.close();
