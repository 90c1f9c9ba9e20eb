// A token with only the `read` scope: no action forms on any page, and its forged POSTs to the
// action routes (with its own valid CSRF token) are refused with 403 and change nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, VIEWER, api, assertClean, csrfOf, open, previewUrl, shot, signIn } from './lib.mjs';

const KEY = 'acme/storefront#412';

async function pages() {
  const jobs = await api('GET', '/v1/jobs?limit=1');
  const job = jobs.items[0].id;
  return [
    `${BASE}/ui`,
    previewUrl(KEY),
    `${BASE}/ui/jobs`,
    `${BASE}/ui/jobs/${job}`,
    `${BASE}/ui/queues`,
  ];
}

test('a read-only token sees no action forms', async (t) => {
  const { page, seen } = await open(t);
  await signIn(page, VIEWER);
  for (const url of await pages()) {
    await page.goto(url);
    assert.equal(await page.locator('#sign-out').count(), 1, `signed in on ${url}`);
    assert.equal(await page.locator('form[data-action]').count(), 0, `action forms on ${url}`);
    await assertClean(page, seen);
  }
  await page.goto(previewUrl(KEY));
  await shot(page, 'read-only-preview');
});

test("a read-only token's forged POSTs are refused with 403", async (t) => {
  const { page } = await open(t);
  await signIn(page, VIEWER);
  const csrf = await csrfOf(page);
  assert.match(csrf, /^[0-9a-f]{64}$/);
  const jobs = await api('GET', '/v1/jobs?limit=1');
  const job = jobs.items[0].id;
  // Every action route of the dashboard (redeploy, extend, delete, retry, cancel, bulk, pause,
  // resume, edit-repository), each with the fields its form would send.
  const forged = [
    ['/ui/preview/redeploy', { key: KEY }],
    ['/ui/preview/extend', { key: KEY, hours: '24' }],
    ['/ui/preview/delete', { key: KEY, confirm: KEY }],
    [`/ui/jobs/${job}/retry`, {}],
    [`/ui/jobs/${job}/cancel`, {}],
    ['/ui/jobs/bulk', { op: 'cancel', ids: job, confirm: '1' }],
    ['/ui/queues/build/pause', {}],
    ['/ui/queues/build/resume', {}],
    ['/ui/repositories/acme/storefront', { enabled: 'false' }],
  ];
  const answers = [];
  for (const [path, fields] of forged) {
    const resp = await page.request.post(`${BASE}${path}`, {
      form: { csrf, ...fields },
      headers: { origin: BASE },
      maxRedirects: 0,
    });
    answers.push([path, resp.status(), await resp.text()]);
  }
  for (const [path, status, body] of answers) {
    assert.equal(status, 403, `${path} answered ${status}: ${body.slice(0, 300)}`);
    assert.match(body, /<html/i, `${path}: an HTML page`);
  }
  // Nothing changed.
  const preview = await api('GET', `/v1/previews/${encodeURIComponent(KEY)}`);
  assert.equal(preview.status, 'ready');
  assert.equal(preview.deleted_at, null);
  const { items: queues } = await api('GET', '/v1/queues');
  const build = queues.find((q) => q.queue === 'build');
  assert.equal(build.paused, false, 'the build queue is not paused');
});
