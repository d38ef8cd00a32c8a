// drive.mjs — the console in Debian's Chromium through Playwright, for
// tests/integration/test_console.py. Argument: one JSON object
//   {url, cert, key, shots, pages: [...], live: {filter, want, absent, timeout_ms},
//    picture: {want, absent}, sharing: {want, absent}}
// Prints one JSON line: per page the console errors seen and what was asked of it.
import { chromium } from "playwright-core";

const a = JSON.parse(process.argv[2]);
const origin = new URL(a.url).origin;
const browser = await chromium.launch({ executablePath: a.chromium || "/usr/bin/chromium", args: ["--no-sandbox"] });
const ctx = await browser.newContext({
  clientCertificates: [{ origin, certPath: a.cert, keyPath: a.key }],
  ignoreHTTPSErrors: true, // the node's development CA is not the browser's
  viewport: { width: 1280, height: 720 },
});
const out = { pages: {} };
const page = await ctx.newPage();
let errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
page.on("pageerror", (e) => errors.push(String(e)));

// Polls in Node (page.waitForFunction evaluates a string, which the console's CSP forbids).
async function until(fn, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await page.waitForTimeout(100);
  }
}

async function visit(name, ready) {
  errors = [];
  await page.goto(`${a.url}#/${name}`, { waitUntil: "load" });
  await page.waitForSelector(ready, { timeout: 15000 });
  await page.waitForTimeout(500);
  const r = { errors, text: await page.locator("main").innerText(), symbols: await page.locator(".sym").count() };
  if (a.shots) await page.screenshot({ path: `${a.shots}/${name}.png` });
  return r;
}

try {
  for (const name of a.pages || []) {
    const ready = { overview: "#ov-records", live: "#lv-status", picture: "#pc-rows tr", sharing: "#sh-cols li",
      connections: "#ce-rows tr", audit: "#au-rows tr" }[name];
    out.pages[name] = await visit(name, ready);
  }
  if (a.live) {
    errors = [];
    await page.goto(`${a.url}#/live`, { waitUntil: "load" });
    await page.fill("#lv-filter", a.live.filter);
    await page.click("form.bar button[type=submit]");
    const status = page.locator("#lv-status");
    if (!(await until(async () => (await status.innerText()).startsWith("subscribed to " + a.live.filter), 15000)))
      throw new Error("the live view did not subscribe: " + (await status.innerText()));
    console.error("LIVE-READY");
    const rows = page.locator("#lv-rows");
    const seen = await until(async () => (await rows.innerText()).includes(a.live.want), a.live.timeout_ms || 20000);
    const text = await page.locator("#lv-rows").innerText();
    out.live = { seen, absent_seen: (a.live.absent || []).filter((s) => text.includes(s)), errors, rows: text,
      status: await page.locator("#lv-status").innerText() };
    if (a.shots) await page.screenshot({ path: `${a.shots}/live-records.png` });
  }
  if (a.task) { // the Picture page: create a task for an agent, then cancel it
    errors = [];
    await page.goto(`${a.url}#/picture`, { waitUntil: "load" });
    await until(async () => (await page.locator("#tk-assignee option").count()) > 0, 15000);
    await page.fill("#tk-kind", a.task.kind);
    await page.click("#tk-create");
    const note = page.locator("#tk-note");
    await until(async () => /created|not created/.test(await note.innerText()), 10000);
    const created = await note.innerText();
    const id = (created.match(/task (\S+) created/) || [])[1];
    let state = "";
    if (id) {
      await until(async () => (await page.locator(`[data-cancel="${id}"]`).count()) > 0, 10000);
      await page.click(`[data-cancel="${id}"]`);
      const cell = page.locator(`[data-state="${id}"]`);
      await until(async () => (await cell.count()) > 0 && /CANCEL/.test(await cell.innerText()), 10000);
      state = await cell.innerText();
    }
    out.task = { created, id, state, errors };
    if (a.shots) await page.screenshot({ path: `${a.shots}/picture-tasks.png`, fullPage: true });
  }
  if (a.objects) { // the Sharing page: what the first collection lists for this identity
    await page.goto(`${a.url}#/sharing`, { waitUntil: "load" });
    await page.waitForSelector("[data-collection]", { timeout: 15000 });
    await page.click("[data-collection]");
    const note = page.locator("#sh-note");
    await until(async () => / shown/.test(await note.innerText()), 10000);
    out.objects = await page.locator("#sh-rows").innerText();
  }
  if (a.import) { // the Sharing page: import a bundle file, filter, open an object
    errors = [];
    await page.goto(`${a.url}#/sharing`, { waitUntil: "load" });
    await page.waitForSelector("[data-collection]", { timeout: 15000 });
    await page.click("[data-collection]");
    const note = page.locator("#sh-note");
    await until(async () => / shown/.test(await note.innerText()), 10000);
    await page.setInputFiles("#sh-file", a.import.file);
    await page.click("#sh-import");
    await until(async () => /accepted|refused/.test(await note.innerText()), 20000);
    const imported = await note.innerText();
    let paged = "";
    if (await page.locator("#sh-more").isEnabled()) { // a page smaller than the collection: More
      await page.click("#sh-more");
      await until(async () => !(await note.innerText()).includes("accepted"), 10000);
      paged = await note.innerText();
    }
    await page.fill("#sh-type", "indicator");
    await page.selectOption("#sh-tlp", a.import.tlp);
    await page.click("form.bar button[type=submit]");
    await until(async () => / shown/.test(await note.innerText()) && !(await note.innerText()).includes("accepted"), 10000);
    await until(async () => (await page.locator("#sh-rows tr").count()) > 0, 10000);
    const rows = await page.locator("#sh-rows").innerText();
    await page.click("#sh-rows tr");
    await until(async () => (await page.locator("#sh-vers li").count()) > 0, 10000);
    out.import = { imported, paged, rows, detail: await page.locator("#sh-detail").innerText(),
      versions: await page.locator("#sh-vers").innerText(), errors };
    if (a.shots) await page.screenshot({ path: `${a.shots}/sharing-import.png` });
  }
  if (a.verify) { // the Audit page's chain check
    errors = [];
    await page.goto(`${a.url}#/audit`, { waitUntil: "load" });
    await page.waitForSelector("#au-rows tr", { timeout: 15000 });
    await page.click("#au-verify");
    const v = page.locator("#au-verdict");
    await until(async () => (await v.innerText()).startsWith("chain "), 20000);
    out.verify = { verdict: await v.innerText(), errors };
  }
  if (a.revoke) { // the Connections page: Revoke, then the in-page confirmation
    errors = [];
    await page.goto(`${a.url}#/connections`, { waitUntil: "load" });
    const rows = page.locator("#cn-rows");
    out.listed = await until(async () => (await rows.innerText()).includes(a.revoke.client_id), 10000);
    await page.click(`[data-revoke="${a.revoke.serial}"]`);
    await page.click(`[data-confirm="${a.revoke.serial}"]`);
    const note = page.locator("#cn-note");
    await until(async () => (await note.innerText()).length > 0, 10000);
    out.revoke = { note: await note.innerText(), errors };
    if (a.revoke.token_for) { // and an enrolment token from the same page
      await page.fill("#tok-id", a.revoke.token_for);
      await page.click("#tok-form button[type=submit]");
      const t = page.locator("#tok-out");
      await until(async () => /token|no token/.test(await t.innerText()), 10000);
      out.token = await t.innerText();
    }
    if (a.shots) await page.screenshot({ path: `${a.shots}/connections.png` });
  }
} catch (e) {
  out.error = String(e);
}
console.log(JSON.stringify(out));
await browser.close();
