// A preview key and a build log line made of markup render as text: the exact text shows,
// no element is injected, no script runs (no dialog), no CSP violation is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN, BASE, api, assertClean, buildMetadata, open, pipeline, previewUrl, shot, signIn,
  simScript, until,
} from './lib.mjs';

// The API accepts any printable preview key (crates/core validate::preview_key).
const KEY = '<img src=x onerror=alert("key")>';
const LINE = '<script>alert("log")</script><img src=x onerror=alert("line")> done';
const COMMIT = 'badc0ffee0ddf00d00000000000000000000beef';

test('a hostile preview key and log line render as text', async (t) => {
  // Its build prints the hostile line (with ANSI colour codes, rendered as colour) and pushes.
  await simScript('buildkit', {
    outcome: { type: 'exit', code: 0 },
    logs: [
      { text: '#1 [internal] load build definition from Dockerfile' },
      { text: `\u001b[31m${LINE}\u001b[0m` },
    ],
    terminationMessage: buildMetadata(COMMIT),
  });
  const build = await pipeline(KEY, 'https://github.com/acme/hostile.git', COMMIT);
  await until('the hostile preview to be ready', async () => {
    const r = await fetch(`${BASE}/v1/previews/${encodeURIComponent(KEY)}`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    return r.ok && (await r.json()).status === 'ready';
  });

  const { page, seen } = await open(t);
  await signIn(page, ADMIN);
  const noInjection = async () => {
    assert.equal(await page.locator('main img, main script, main [onerror]').count(), 0, `injected on ${page.url()}`);
  };
  // The list: the key is a link's text.
  const link = page.locator('table#previews a.preview-link', { hasText: 'onerror' });
  assert.equal(await link.textContent(), KEY);
  await noInjection();
  await shot(page, 'hostile-previews');

  // The preview page: the key in the heading, the line in the build log.
  await page.goto(previewUrl(KEY));
  assert.ok((await page.textContent('h1')).includes(KEY));
  const logs = await page.locator('pre.log').allTextContents();
  assert.ok(logs.some((l) => l.includes(LINE)), `the line as text in ${JSON.stringify(logs)}`);
  assert.ok(!logs.some((l) => l.includes('\u001b')), 'no raw escape codes');
  await noInjection();
  await shot(page, 'hostile-preview');

  // The build's job page.
  await page.goto(`${BASE}/ui/jobs/${build.id}`);
  assert.ok((await page.textContent('main')).includes(KEY));
  assert.ok((await page.locator('pre.log').allTextContents()).some((l) => l.includes(LINE)));
  await noInjection();
  // The jobs list filtered by the key.
  await page.goto(`${BASE}/ui/jobs?preview=${encodeURIComponent(KEY)}`);
  assert.ok((await page.textContent('main')).includes(KEY));
  await noInjection();
  await assertClean(page, seen);
  await shot(page, 'hostile-job');
  await api('GET', `/v1/jobs/${build.id}`);
});
