// The model registry and the learnt remediation preferences in Debian's Chromium
// (playwright-core), against a running control plane and agent that `tests/tests/console.rs`
// prepared: a model uploaded and rolled out to the host, and a rule with candidates whose
// first candidate ran and verified once. It can also be run by hand against any control
// plane in that state (the variables below).
//
// What it does: as a viewer, the Models page lists the version with its number and the
// complete rollout, the host runs it in sync, and the Remediation page shows the rule's
// candidates with the verified success and no Reset button; as an operator, Reset… and
// confirm forget what was learnt (the card goes, REST says nothing is left); a viewer is
// offered no upload form and no Roll out. As an admin, the upload form is given real files
// (the model directory SCO_CONSOLE_UPLOAD_DIR): first a manifest whose sha256 is wrong, whose
// refusal shows the server's message, then the right one; the new version is listed, its
// "Roll out" form starts a rollout to the host at once, and the per-host table shows the host
// running it in sync. Every page is checked for Content-Security-Policy violations, page
// errors and requests to other origins. Exits 0 only when every step passed.

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

const BASE = need("SCO_CONSOLE_URL").replace(/\/$/, "");
const VIEWER_USER = need("SCO_CONSOLE_VIEWER_USER");
const VIEWER_PASSWORD = need("SCO_CONSOLE_VIEWER_PASSWORD");
const OPERATOR_USER = need("SCO_CONSOLE_OPERATOR_USER");
const OPERATOR_PASSWORD = need("SCO_CONSOLE_OPERATOR_PASSWORD");
const HOST = process.env.SCO_CONSOLE_HOST ?? "agent-1";
const MODEL = need("SCO_CONSOLE_MODEL_VERSION");
const MODEL_NUMBER = need("SCO_CONSOLE_MODEL_NUMBER");
const RULE = need("SCO_CONSOLE_LEARNT_RULE");
const CONTEXT = need("SCO_CONSOLE_LEARNT_CONTEXT");
const ADMIN_USER = process.env.SCO_CONSOLE_ADMIN_USER ?? "admin";
const ADMIN_PASSWORD = need("SCO_CONSOLE_ADMIN_PASSWORD");
// A model directory as models/shipped/ holds one, its manifest naming UPLOAD_VERSION, and
// `manifest-bad.json` beside it (a wrong sha256).
const UPLOAD_DIR = need("SCO_CONSOLE_UPLOAD_DIR");
const UPLOAD_VERSION = need("SCO_CONSOLE_UPLOAD_VERSION");
const SHOTS = process.env.SCO_CONSOLE_SCREENSHOTS ?? "console-screenshots";
const PATIENCE = Number(process.env.SCO_CONSOLE_PATIENCE_MS ?? 120_000);
const CHROMIUM = process.env.SCO_CONSOLE_CHROMIUM ?? "/usr/bin/chromium";

mkdirSync(SHOTS, { recursive: true });

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);

async function step(name, f) {
  const t = Date.now();
  log(`${name}…`);
  await f();
  log(`${name}: ok (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

const violations = [];
const foreign = [];

function watch(page, who) {
  page.on("console", (m) => {
    const text = m.text();
    if (/Content Security Policy|Refused to (load|execute|apply|connect)/i.test(text)) violations.push(`${who}: ${text}`);
  });
  page.on("pageerror", (e) => violations.push(`${who}: uncaught ${e.message}`));
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith(BASE + "/") && !url.startsWith("data:")) foreign.push(`${who}: ${url}`);
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function login(page, user, password) {
  await page.goto(`${BASE}/console/`);
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("whoami").waitFor({ timeout: PATIENCE });
  const who = await page.getByTestId("whoami").innerText();
  assert(who.startsWith(user), `logged in as ${user}, header says ${who}`);
}

/** The learnt card of RULE in CONTEXT. */
function card(page) {
  return page.locator(`li[data-preference="${RULE}"][data-context="${CONTEXT}"]`);
}

let browser;
let code = 1;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });

  const viewer = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const vpage = await viewer.newPage();
  watch(vpage, "viewer");
  vpage.setDefaultTimeout(PATIENCE);

  await step("log in as a viewer", () => login(vpage, VIEWER_USER, VIEWER_PASSWORD));

  await step(`the Models page lists ${MODEL} with its number and its complete rollout`, async () => {
    await vpage.getByRole("link", { name: "Models", exact: true }).click();
    const row = vpage.locator(`tr[data-model="${MODEL}"]`);
    await row.waitFor();
    assert((await row.getAttribute("data-number")) === MODEL_NUMBER, `number ${MODEL_NUMBER}: ${await row.innerText()}`);
    await row.locator('td[data-model-rollout="complete"]').waitFor();
    const newest = vpage.locator('section[aria-labelledby="model-rollout-title"] [data-rollout-state="complete"]');
    await newest.waitFor();
    assert((await newest.getAttribute("data-rollout-number")) === MODEL_NUMBER, await newest.innerText());
    assert((await newest.innerText()).includes(MODEL), `the newest rollout names ${MODEL}: ${await newest.innerText()}`);
  });

  await step(`${HOST} runs ${MODEL}, in sync, on the per-host table`, async () => {
    const host = vpage.locator(`section[data-model-status="${MODEL}"] tr[data-model-host="${HOST}"][data-in-sync="true"]`);
    await host.waitFor();
    assert((await host.getAttribute("data-applied")) === MODEL_NUMBER, await host.innerText());
    assert((await host.innerText()).includes(MODEL), `running ${MODEL}: ${await host.innerText()}`);
    await shot(vpage, "models");
  });

  await step(`the Remediation page shows what ${RULE} learnt, without a Reset for a viewer`, async () => {
    await vpage.getByRole("link", { name: "Remediation", exact: true }).click();
    const c = card(vpage);
    await c.waitFor();
    const first = c.locator("tbody tr").nth(0);
    assert((await first.getAttribute("data-candidate")) === "journal_vacuum", await c.innerText());
    assert((await first.getAttribute("data-successes")) === "1", `one verified success: ${await c.innerText()}`);
    assert((await first.getAttribute("data-failures")) === "0", await c.innerText());
    const second = c.locator("tbody tr").nth(1);
    assert((await second.getAttribute("data-candidate")) === "restart_service", await c.innerText());
    assert((await second.getAttribute("data-successes")) === "0" && (await second.getAttribute("data-failures")) === "0", await c.innerText());
    assert((await c.locator("[data-next]").innerText()).startsWith("journal_vacuum"), await c.innerText());
    assert((await first.innerText()).includes("next"), `the first is marked next: ${await first.innerText()}`);
    assert((await c.getByRole("button", { name: /Reset/ }).count()) === 0, "no Reset button for a viewer");
    await shot(vpage, "preferences-viewer");
  });

  await step("a viewer is offered no model upload and no Roll out", async () => {
    await vpage.getByRole("link", { name: "Models", exact: true }).click();
    await vpage.locator(`tr[data-model="${MODEL}"]`).waitFor();
    assert((await vpage.getByTestId("model-upload-form").count()) === 0, "no upload form for a viewer");
    assert((await vpage.getByRole("button", { name: /Roll out/ }).count()) === 0, "no Roll out button for a viewer");
  });
  await viewer.close();

  const operator = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const opage = await operator.newPage();
  watch(opage, "operator");
  opage.setDefaultTimeout(PATIENCE);

  await step("log in as an operator", () => login(opage, OPERATOR_USER, OPERATOR_PASSWORD));

  await step(`the operator resets what ${RULE} learnt`, async () => {
    await opage.getByRole("link", { name: "Remediation", exact: true }).click();
    const c = card(opage);
    await c.waitFor();
    await c.getByRole("button", { name: "Reset…" }).click();
    await c.getByRole("button", { name: "Forget what was learnt" }).click();
    await c.waitFor({ state: "detached" });
    await opage.getByText("Nothing learnt yet.").waitFor();
    await shot(opage, "preferences-reset");
  });
  await operator.close();

  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const apage = await admin.newPage();
  watch(apage, "admin");
  apage.setDefaultTimeout(PATIENCE);

  await step("log in as an admin", () => login(apage, ADMIN_USER, ADMIN_PASSWORD));

  const file = (name) => join(UPLOAD_DIR, name);
  const form = apage.getByTestId("model-upload-form");
  const message = apage.getByTestId("model-upload-message");
  await step("an upload with a wrong sha256 is refused with the server's message", async () => {
    await apage.getByRole("link", { name: "Models", exact: true }).click();
    await form.waitFor();
    await form.getByLabel("Model file (.onnx)").setInputFiles(file("sco-window-pca.onnx"));
    await form.getByLabel("manifest.json").setInputFiles(file("manifest-bad.json"));
    await form.getByLabel("golden.json").setInputFiles(file("golden.json"));
    await form.getByRole("button", { name: "Upload" }).click();
    await apage.locator('[data-testid="model-upload-message"][data-ok="false"]').waitFor();
    const text = await message.innerText();
    assert(text.includes("sha256 mismatch"), `the server's reason is shown: ${text}`);
    assert((await apage.locator(`tr[data-model="${UPLOAD_VERSION}"]`).count()) === 0, "nothing was stored");
  });

  await step(`the admin uploads ${UPLOAD_VERSION} with its files and sees it listed`, async () => {
    assert(existsSync(file("MODEL_CARD.md")), "the card is in the upload directory");
    await form.getByLabel("Model file (.onnx)").setInputFiles(file("sco-window-pca.onnx"));
    await form.getByLabel("manifest.json").setInputFiles(file("manifest.json"));
    await form.getByLabel("golden.json").setInputFiles(file("golden.json"));
    await form.getByLabel("Model card (optional)").setInputFiles(file("MODEL_CARD.md"));
    await form.getByRole("button", { name: "Upload" }).click();
    await apage.locator('[data-testid="model-upload-message"][data-ok="true"]').waitFor();
    const text = await message.innerText();
    assert(text.includes(UPLOAD_VERSION), `the stored version is named: ${text}`);
    const row = apage.locator(`tr[data-model="${UPLOAD_VERSION}"]`);
    await row.waitFor();
    assert(Number(await row.getAttribute("data-number")) > Number(MODEL_NUMBER), await row.innerText());
  });

  await step(`the admin rolls ${UPLOAD_VERSION} out to ${HOST} and sees it running there`, async () => {
    await apage.getByRole("button", { name: `Roll out ${UPLOAD_VERSION}` }).click();
    const rform = apage.getByTestId("model-rollout-form");
    await rform.waitFor();
    await rform.getByLabel("Canary %").fill("0");
    await rform.getByLabel("Target hosts").fill(HOST);
    await rform.getByRole("button", { name: "Start rollout" }).click();
    const started = apage.locator('[data-testid="model-rollout-message"][data-ok="true"]');
    await started.waitFor();
    assert((await started.innerText()).includes("complete"), await started.innerText());
    const host = apage.locator(`section[data-model-status="${UPLOAD_VERSION}"] tr[data-model-host="${HOST}"][data-in-sync="true"]`);
    await host.waitFor();
    assert((await host.innerText()).includes(UPLOAD_VERSION), `running ${UPLOAD_VERSION}: ${await host.innerText()}`);
    const newest = apage.locator('section[aria-labelledby="model-rollout-title"] [data-rollout-state="complete"]');
    assert((await newest.innerText()).includes(`hosts ${HOST}`), `the newest rollout names its target: ${await newest.innerText()}`);
    await shot(apage, "models-admin-rollout");
  });
  await admin.close();

  assert(violations.length === 0, `no CSP violations or page errors: ${violations.join("\n")}`);
  assert(foreign.length === 0, `no requests to other origins: ${foreign.join("\n")}`);
  log(`all steps passed; screenshots in ${SHOTS}`);
  code = 0;
} catch (e) {
  console.error(`FAILED: ${e?.stack ?? e}`);
  if (violations.length) console.error(`CSP violations / page errors:\n${violations.join("\n")}`);
} finally {
  await browser?.close().catch(() => undefined);
}
process.exit(code);
