// How fast the console shows a large fleet, in Debian's Chromium: `tests/tests/console.rs`
// fills the database with simulated hosts and runs this script. It checks what is shown
// (every host counted, one page of rows, filtering and sorting work) and prints the times
// it measured: the page's load until the login form is usable (`load`), from pressing
// "Log in" to the fleet table drawn (`login`, which includes the server's password hash),
// from the Fleet link to the table drawn (`fleet`), a sort and a filter. Exits 0 when the checks pass; the times are
// reported, not asserted.

import { chromium } from "playwright-core";

const BASE = process.env.SCO_CONSOLE_URL.replace(/\/$/, "");
const PASSWORD = process.env.SCO_CONSOLE_ADMIN_PASSWORD;
const HOSTS = Number(process.env.SCO_CONSOLE_HOSTS ?? 1000);
const RUNS = Number(process.env.SCO_CONSOLE_RUNS ?? 5);
const CHROMIUM = process.env.SCO_CONSOLE_CHROMIUM ?? "/usr/bin/chromium";

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let code = 1;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const times = { load: [], login: [], fleet: [], sort: [], filter: [] };
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    let t = Date.now();
    await page.goto(`${BASE}/console/`);
    await page.getByRole("button", { name: "Log in" }).waitFor();
    times.load.push(Date.now() - t);

    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(PASSWORD);
    t = Date.now();
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForFunction((n) => document.querySelector('[data-testid="fleet-summary"]')?.textContent?.startsWith(`${n} hosts`), HOSTS);
    await page.locator("tr[data-host]").nth(49).waitFor();
    times.login.push(Date.now() - t);
    assert((await page.locator("tr[data-host]").count()) === 50, "one page of 50 rows");
    const pager = await page.locator("nav.pager span").innerText();
    assert(pager.includes(`of ${Math.ceil(HOSTS / 50)}`), pager);

    // The fleet page alone (logged in): its two requests, and the table drawn.
    await page.getByRole("link", { name: "Policies", exact: true }).click();
    await page.locator("#policies-title").waitFor();
    t = Date.now();
    await page.getByRole("link", { name: "Fleet", exact: true }).click();
    await page.waitForFunction((n) => document.querySelector('[data-testid="fleet-summary"]')?.textContent?.startsWith(`${n} hosts`), HOSTS);
    await page.locator("tr[data-host]").nth(49).waitFor();
    times.fleet.push(Date.now() - t);

    t = Date.now();
    await page.getByRole("button", { name: "Host", exact: true }).click();
    await page.waitForFunction(() => document.querySelector("th[aria-sort='ascending'] button")?.textContent?.startsWith("Host"));
    times.sort.push(Date.now() - t);
    const firstId = await page.locator("tr[data-host]").first().getAttribute("data-host");
    assert(firstId === "sim-0000", `sorted by id, first ${firstId}`);

    t = Date.now();
    await page.getByRole("searchbox").first().fill("rack=r07");
    await page.waitForFunction(() => document.querySelector("nav.pager span")?.textContent?.includes("· 20 hosts"));
    times.filter.push(Date.now() - t);
    await context.close();
  }
  for (const [k, v] of Object.entries(times)) {
    console.log(`${k}: median ${median(v)} ms, max ${Math.max(...v)} ms over ${v.length} runs (${v.join(", ")})`);
  }
  code = 0;
} catch (e) {
  console.error(`FAILED: ${e?.stack ?? e}`);
} finally {
  await browser.close();
}
process.exit(code);
