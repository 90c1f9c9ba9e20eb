// Shared by the dashboard's browser tests (*.test.mjs, run by tests/e2e/tests/browser.rs with
// `node --test`): the environment the driver sets, a Chromium per test, sign-in, screenshots,
// the CSP/console watch, and the JSON API and simulator calls the tests make.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through tests/e2e/tests/browser.rs`);
  return v;
}

export const BASE = need('SLIPWAY_UI_BASE');
export const ADMIN = need('SLIPWAY_UI_ADMIN_TOKEN');
export const VIEWER = need('SLIPWAY_UI_VIEWER_TOKEN');
export const DEPLOYER = need('SLIPWAY_UI_DEPLOYER_TOKEN');
export const SIM = need('SLIPWAY_SIM_URL');
const SHOTS = process.env.SLIPWAY_UI_SCREENSHOTS || 'target/ui-screenshots';
const { chromium } = await import(
  pathToFileURL(join(need('SLIPWAY_PLAYWRIGHT_CORE'), 'index.mjs')).href
);

/// How long a condition may take (a build, a page update).
export const DEADLINE_MS = 60_000;

/// A fresh headless Chromium with one page; `watch` records what the page reports: console
/// errors, uncaught exceptions, dialogs (alert() from injected markup) and CSP violations
/// (the `securitypolicyviolation` event, recorded by a script Playwright adds through the
/// DevTools protocol, which the page's CSP does not govern).
export async function open(t) {
  const browser = await chromium.launch({
    executablePath: process.env.SLIPWAY_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  const seen = { console: [], errors: [], dialogs: [], failed: [] };
  page.on('console', (m) => {
    // A page answered with 4xx on purpose (sign-in refused, 403) is logged by Chromium as
    // "Failed to load resource"; failed subresources are recorded below, with their URL.
    if (m.text().startsWith('Failed to load resource')) return;
    if (m.type() === 'error' || m.text().includes('Content Security Policy')) {
      seen.console.push(m.text());
    }
  });
  // A script, stylesheet or request of the page that failed (the browser's own favicon.ico
  // probe aside: the dashboard has none).
  page.on('response', (r) => {
    const type = r.request().resourceType();
    if (r.status() >= 400 && type !== 'document' && !r.url().endsWith('/favicon.ico')) {
      seen.failed.push(`${r.status()} ${type} ${r.url()}`);
    }
  });
  page.on('requestfailed', (r) => {
    // live.js closes a log's event stream itself on its `end` event (an EventSource would
    // otherwise reconnect when the server ends it); Chromium reports that close as an aborted
    // load when it beats the server's own end of the response.
    const closedStream = r.resourceType() === 'eventsource' && r.failure()?.errorText === 'net::ERR_ABORTED';
    if (!closedStream) seen.failed.push(`${r.failure()?.errorText} ${r.url()}`);
  });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('dialog', async (d) => {
    seen.dialogs.push(d.message());
    await d.dismiss();
  });
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return { browser, context, page, seen };
}

/// Asserts the page (as it is now) reported no CSP violation, no script error and no dialog.
export async function assertClean(page, seen) {
  const violations = await page.evaluate(() => window.__cspViolations);
  assert.deepEqual(violations, [], `CSP violations on ${page.url()}`);
  assert.deepEqual(seen.console, [], `console errors on ${page.url()}`);
  assert.deepEqual(seen.errors, [], `uncaught errors on ${page.url()}`);
  assert.deepEqual(seen.dialogs, [], `dialogs opened on ${page.url()}`);
  assert.deepEqual(seen.failed, [], `failed loads on ${page.url()}`);
}

/// Saves the page's screenshot as <SLIPWAY_UI_SCREENSHOTS>/<name>.png.
export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/// Signs in through the form; the browser lands on the previews page.
export async function signIn(page, token) {
  await page.goto(`${BASE}/ui/login`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${BASE}/ui`), page.click('#sign-in')]);
  await page.waitForSelector('#sign-out');
}

/// The session's CSRF token, from the sign-out form every signed-in page carries.
export async function csrfOf(page) {
  return page.getAttribute('header form input[name=csrf]', 'value');
}

/// A call of the JSON API with the admin token; its JSON.
export async function api(method, path, body) {
  const resp = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  assert.ok(resp.ok, `${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// Scripts the next `count` pods whose image contains `imageContains` in the simulator.
export async function simScript(imageContains, script, count = 1) {
  const resp = await fetch(`${SIM}/_sim/script`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ imageContains, count, script }),
  });
  assert.equal(resp.status, 200, await resp.text());
}

/// A pull request's pipeline (build, then launch), as the GitHub webhook enqueues it.
export function pipeline(preview, repository, commit) {
  return api('POST', '/v1/pipelines', {
    preview,
    repository,
    commit,
    launch: { port: 8080 },
  });
}

/// Waits until `f()` returns a truthy value (polled every 100 ms), or fails naming `what`.
export async function until(what, f, deadlineMs = DEADLINE_MS) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/// The termination message of a successful BuildKit build (`--metadata-file`), for scripted
/// build pods.
export function buildMetadata(commit) {
  return JSON.stringify({ 'containerimage.digest': `sha256:${commit.slice(0, 40).padEnd(64, '0')}` });
}

/// The `/ui/preview` URL of a key.
export function previewUrl(key) {
  return `${BASE}/ui/preview?key=${encodeURIComponent(key)}`;
}
