// Deleting a preview from its page takes the key typed as confirmation (the form
// `#delete-preview` with `data-action="delete"`): a wrong one is refused with 400 and changes
// nothing; the right one enqueues the cleanup and the preview is torn down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEPLOYER, api, assertClean, open, previewUrl, shot, signIn, until } from './lib.mjs';

const KEY = 'acme/docs#9';

test('delete with confirmation', async (t) => {
  const { page, seen } = await open(t);
  // `enqueue` (not admin) may delete previews.
  await signIn(page, DEPLOYER);
  await page.goto(previewUrl(KEY));
  const form = page.locator('form[data-action=delete]#delete-preview');
  // A wrong confirmation: 400, a page saying so, nothing enqueued.
  await form.locator('input[name=confirm]').fill('acme/docs#8');
  const [wrong] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    form.locator('button[type=submit], input[type=submit]').first().click(),
  ]);
  assert.equal(wrong.status(), 400);
  assert.match(await page.textContent('main'), /confirm/i);
  await shot(page, 'delete-wrong-confirmation');
  const still = await api('GET', `/v1/previews/${encodeURIComponent(KEY)}`);
  assert.equal(still.status, 'ready');
  const cleanups = await api('GET', `/v1/jobs?kind=cleanup&preview=${encodeURIComponent(KEY)}`);
  assert.equal(cleanups.items.length, 0, 'no cleanup enqueued');

  // The right one: back on the preview page, which shows the cleanup job.
  await page.goto(previewUrl(KEY));
  await form.locator('input[name=confirm]').fill(KEY);
  await shot(page, 'delete-confirm');
  await Promise.all([
    page.waitForURL(previewUrl(KEY)),
    form.locator('button[type=submit], input[type=submit]').first().click(),
  ]);
  assert.match(await page.textContent('main'), /cleanup/);
  await until('the preview to be deleted', async () =>
    (await api('GET', `/v1/previews/${encodeURIComponent(KEY)}`)).status === 'deleted');
  await page.reload();
  assert.match(await page.textContent('main'), /deleted/);
  await assertClean(page, seen);
  await shot(page, 'delete-done');
});
