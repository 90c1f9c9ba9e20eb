// A build's log appears line by line on its job page while it runs (the live log markup:
// `pre.log[data-stream]` with one `.log-line` per line, appended by /ui/assets/live.js), and
// the page shows the final state when it ends, without a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, BASE, assertClean, buildMetadata, open, pipeline, shot, signIn, simScript } from './lib.mjs';

const COMMIT = '7e57109000000000000000000000000000000001';
const STEPS = 12;
// Step headers as BuildKit's Dockerfile frontend names them: the step number padded to the
// width of the total (moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go,
// prefixCommand: `%*d/%d]`), so `[ 1/12]`.
const width = String(STEPS).length;
const lines = Array.from(
  { length: STEPS },
  (_, i) => `#${i + 1} [${String(i + 1).padStart(width)}/${STEPS}] RUN make step-${i + 1}`,
);

test("a build's log appears line by line while it runs", async (t) => {
  // A build that prints a line every 600 ms, then pushes.
  await simScript('buildkit', {
    startDelay: 0,
    outcome: { type: 'exit', code: 0 },
    logs: lines.map((text) => ({ after: 600, text })),
    terminationMessage: buildMetadata(COMMIT),
  });
  const build = await pipeline('acme/live-log#5', 'https://github.com/acme/live-log.git', COMMIT);

  const { page, seen } = await open(t);
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/ui/jobs/${build.id}`);
  await page.waitForSelector('pre.log[data-stream]');
  await page.evaluate(() => { window.__sameDocument = true; });
  const count = () => page.locator('pre.log[data-stream] .log-line').count();
  // Watch the count grow: each increase while the job runs is one observation.
  const seenCounts = [await count()];
  while (seenCounts.at(-1) < STEPS) {
    const before = seenCounts.at(-1);
    await page.waitForFunction(
      (n) => document.querySelectorAll('pre.log[data-stream] .log-line').length > n,
      before,
    );
    seenCounts.push(await count());
    if (seenCounts.length === 3) await shot(page, 'live-log-running');
  }
  t.diagnostic(`log line counts seen: ${seenCounts.join(', ')}`);
  assert.ok(
    new Set(seenCounts).size >= 4,
    `lines arrived in steps while the page was open, not at once: ${seenCounts}`,
  );
  const shown = await page.locator('pre.log[data-stream] .log-line').allTextContents();
  for (const l of lines) assert.ok(shown.some((s) => s.includes(l)), `line ${l} shown`);
  // Each once: the stream does not repeat what the page was rendered with.
  assert.equal(shown.filter((s) => /RUN make step-/.test(s)).length, STEPS, JSON.stringify(shown));
  // The end: the state is updated live, the page was never reloaded.
  await page.waitForFunction(() => /succeeded/.test(document.querySelector('[data-job-state]')?.textContent ?? ''));
  assert.equal(await page.evaluate(() => window.__sameDocument), true);
  await assertClean(page, seen);
  await shot(page, 'live-log-done');
});
