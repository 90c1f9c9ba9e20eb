// Every state-changing POST needs the session's CSRF token: without it (or with a wrong one)
// it is refused with 403 and nothing happens, whatever the session's scopes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, BASE, api, assertClean, open, previewUrl, shot, signIn } from './lib.mjs';

test('a POST without the CSRF token is refused', async (t) => {
  const { page, seen } = await open(t);
  await signIn(page, ADMIN);

  // Through the browser: the sign-out form submitted without its hidden csrf field.
  await page.evaluate(() => document.querySelector('header form input[name=csrf]').remove());
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${BASE}/ui/logout`),
    page.click('#sign-out'),
  ]);
  assert.equal(resp.status(), 403);
  assert.match(await page.textContent('main'), /CSRF/);
  await shot(page, 'csrf-refused');
  // Still signed in: the refused sign-out did nothing.
  await page.goto(`${BASE}/ui`);
  assert.equal(await page.locator('#sign-out').count(), 1);
  await assertClean(page, seen);

  // A wrong token is no better.
  const wrong = await page.request.post(`${BASE}/ui/logout`, {
    form: { csrf: '0'.repeat(64) },
    maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);

  // Every action form an admin sees (`form[data-action]`), posted with its
  // fields but without the csrf field: 403.
  const jobs = await api('GET', '/v1/jobs?limit=1');
  const urls = [
    `${BASE}/ui`,
    previewUrl('acme/storefront#415'),
    `${BASE}/ui/jobs`,
    `${BASE}/ui/jobs/${jobs.items[0].id}`,
    `${BASE}/ui/queues`,
  ];
  let forms = 0;
  for (const url of urls) {
    await page.goto(url);
    const found = await page.$$eval('form[data-action]', (fs) =>
      fs.map((f) => ({
        action: f.action,
        name: f.dataset.action,
        fields: Object.fromEntries(
          [...new FormData(f).entries()].filter(([k]) => k !== 'csrf'),
        ),
        hadCsrf: !!f.querySelector('input[type=hidden][name=csrf]'),
      })),
    );
    for (const f of found) {
      forms += 1;
      assert.ok(f.hadCsrf, `form ${f.name} on ${url} carries the CSRF token`);
      const r = await page.request.post(f.action, { form: f.fields, maxRedirects: 0 });
      assert.equal(r.status(), 403, `form ${f.name} (${f.action}) without csrf: ${r.status()}`);
    }
  }
  t.diagnostic(`${forms} action forms posted without the CSRF token`);
  // Nothing happened to the previews those forms act on.
  const preview = await api('GET', `/v1/previews/${encodeURIComponent('acme/storefront#415')}`);
  assert.equal(preview.status, 'ready');
});
