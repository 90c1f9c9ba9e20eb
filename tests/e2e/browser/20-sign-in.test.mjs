// Signing in with an API token, the session cookie, and signing out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, VIEWER, assertClean, open, shot } from './lib.mjs';

test('sign in', async (t) => {
  const { page, context, seen } = await open(t);
  // Without a session every page sends the browser to sign in.
  await page.goto(`${BASE}/ui/jobs`);
  assert.equal(page.url(), `${BASE}/ui/login`);
  await shot(page, 'sign-in');

  // A wrong token is refused, saying so.
  await page.fill('#token', 'not-a-token');
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${BASE}/ui/login` && r.request().method() === 'POST'),
    page.click('#sign-in'),
  ]);
  assert.equal(refused.status(), 401);
  assert.match(await page.textContent('#login-error'), /not valid/);

  await page.fill('#token', VIEWER);
  await Promise.all([page.waitForURL(`${BASE}/ui`), page.click('#sign-in')]);
  assert.match(await page.textContent('header'), /viewer \(read\)/);
  // The session cookie: HttpOnly (scripts cannot read it), SameSite=Strict, scoped to /ui.
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'slipway_session');
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/ui');
  assert.equal(await page.evaluate(() => document.cookie.includes('slipway_session')), false);
  // The token is not on the page.
  assert.ok(!(await page.content()).includes(VIEWER));
  await page.goto(`${BASE}/ui/queues`);
  assert.match(await page.textContent('h1'), /Queues/);
  await assertClean(page, seen);
  await shot(page, 'signed-in-queues');

  // Sign out ends the session.
  await Promise.all([page.waitForURL(`${BASE}/ui/login`), page.click('#sign-out')]);
  await page.goto(`${BASE}/ui/queues`);
  assert.equal(page.url(), `${BASE}/ui/login`);
  await assertClean(page, seen);
});
