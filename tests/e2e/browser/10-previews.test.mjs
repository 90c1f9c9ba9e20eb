// The previews page: the seeded previews with status and resource use, the status and
// repository filters, a preview's page, and no CSP violation (with a check that one would be
// seen). Runs first: its screenshot of the list is the README's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, BASE, assertClean, open, shot, signIn } from './lib.mjs';

const keys = (page) =>
  page.$$eval('table#previews a.preview-link', (as) => as.map((a) => a.textContent).sort());

test('previews list and filters', async (t) => {
  const { page, seen } = await open(t);
  await signIn(page, ADMIN);
  assert.deepEqual(await keys(page), [
    'acme/billing#63',
    'acme/checkout-api#27',
    'acme/docs#9',
    'acme/storefront#412',
    'acme/storefront#415',
  ]);
  const row = (key) => page.locator('table#previews tr', { hasText: key });
  assert.equal((await row('acme/billing#63').locator('td.status').textContent()).trim(), 'failed');
  assert.equal((await row('acme/storefront#412').locator('td.status').textContent()).trim(), 'ready');
  // 3.4 of 8 CPUs is fine; 7100 MiB of 8 GiB is over 80%: flagged.
  assert.match(
    await row('acme/storefront#415').locator('td.warn').textContent(),
    /CPU 3\.4 \/ 8 .*memory 6\.9Gi \/ 8\.0Gi \(86\.7%\)/,
  );
  assert.match(await row("acme/storefront#412").textContent(), /CPU \S+ \/ 8 .*memory \S+ \/ 8\.0Gi/);
  assert.equal(await row('acme/storefront#412').locator('td.warn').count(), 0);
  assert.equal(
    await row('acme/storefront#412').locator('a[href^="https://github.com/acme/storefront/pull/412"]').count(),
    1,
  );
  await assertClean(page, seen);
  await shot(page, 'previews');

  // Status filter, through the form.
  await page.selectOption('select[name=status]', 'failed');
  await Promise.all([page.waitForURL(/status=failed/), page.click('form.filters button[type=submit]')]);
  assert.deepEqual(await keys(page), ['acme/billing#63']);
  await page.selectOption('select[name=status]', 'deleted');
  await Promise.all([page.waitForURL(/status=deleted/), page.click('form.filters button[type=submit]')]);
  assert.deepEqual(await keys(page), ['acme/storefront#398']);
  await shot(page, 'previews-deleted');

  // Repository filter (live statuses again).
  await page.selectOption('select[name=status]', '');
  await page.fill('input[name=repository]', 'acme/storefront');
  await Promise.all([page.waitForURL(/repository=acme%2Fstorefront/), page.click('form.filters button[type=submit]')]);
  assert.deepEqual(await keys(page), ['acme/storefront#412', 'acme/storefront#415']);
  await shot(page, 'previews-repository');

  // A preview's page.
  await Promise.all([
    page.waitForURL(/\/ui\/preview\?key=/),
    page.click('a.preview-link:text-is("acme/storefront#412")'),
  ]);
  assert.match(await page.textContent('h1'), /acme\/storefront#412/);
  assert.match(await page.textContent('main'), /pr-412-storefront\.preview\.example\.com/);
  await assertClean(page, seen);
  await shot(page, 'preview');

  // The check above can fail: an inline style, which the policy forbids, is reported.
  await page.evaluate(() => {
    const s = document.createElement('style');
    s.textContent = 'body { color: red }';
    document.head.appendChild(s);
  });
  await page.waitForFunction(() => window.__cspViolations.length > 0);
  await assert.rejects(assertClean(page, seen), /CSP violations/);
  assert.ok(BASE.startsWith('http://'));
});
