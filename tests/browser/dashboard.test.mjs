// The dashboard in a real browser: Debian's headless Chromium opens it, picks a payer in the filter form, submits,
// and checks that the KPI tiles and every chart now show that payer's figures (equal to the JSON API's), then saves
// a screenshot. Run by scripts/browser-test, which starts the dashboard and sets DASHBOARD_URL.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.DASHBOARD_URL;
const screenshot = process.env.SCREENSHOT;
const CHROMIUM = '/usr/bin/chromium';

/** Exact hundredths of a decimal string such as "-1234.50" (the API's and data-value's format). */
function cents(text) {
  const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(text);
  assert.ok(m, `not a decimal: ${text}`);
  const value = BigInt(m[2]) * 100n + BigInt((m[3] ?? '0').padEnd(2, '0'));
  return m[1] === '-' ? -value : value;
}

/** "$1,234.50" as the page formats money. */
function dollars(text) {
  const c = cents(text);
  const abs = c < 0n ? -c : c;
  const whole = (abs / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${c < 0n ? '-' : ''}$${whole}.${(abs % 100n).toString().padStart(2, '0')}`;
}

async function api(path) {
  const response = await fetch(new URL(path, base));
  assert.equal(response.status, 200, `${path}: HTTP ${response.status}`);
  return response.json();
}

test('filtering by a payer through the form redraws the KPIs and charts for that payer only', { timeout: 90_000 }, async () => {
  assert.ok(base, 'DASHBOARD_URL is not set: run scripts/browser-test');
  assert.ok(screenshot, 'SCREENSHOT is not set: run scripts/browser-test');

  // The payer to pick: the one with the most lines (never "unknown", which has no key to filter by).
  const all = await api('/api/summary');
  const payer = all.payers
    .filter((p) => p.id !== null)
    .sort((a, b) => b.transactions - a.transactions)[0];
  assert.ok(payer, 'the sample has payers');
  assert.ok(all.payers.length > 1, 'unfiltered, the sample has several payers');
  const expected = await api(`/api/summary?payer=${payer.id}`);

  const profile = mkdtempSync(join(tmpdir(), 'healthetl-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1366, height: 900 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const origin = new URL(base).origin;
    const foreign = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(origin)) foreign.push(r.url());
    });

    await page.goto(base, { waitUntil: 'load' });
    assert.equal(
      await page.locator('#chart-payer g.bar').count(),
      all.payers.length,
      'unfiltered, the payer chart has a bar per payer',
    );

    // Apply the filter as a person would: choose the payer, press Apply, wait for the new page.
    await page.selectOption('#payer', String(payer.id));
    await Promise.all([
      page.waitForURL((url) => url.searchParams.get('payer') === String(payer.id)),
      page.click('form.filters button[type=submit]'),
    ]);
    await page.waitForLoadState('load');
    assert.equal(await page.inputValue('#payer'), String(payer.id), 'the form keeps the chosen payer');

    // The payer chart has exactly that payer's bar, visibly drawn, with the API's figures.
    const bars = page.locator('#chart-payer g.bar');
    assert.equal(await bars.count(), 1, 'filtered, the payer chart has one bar');
    assert.equal(await bars.first().getAttribute('data-label'), payer.label);
    assert.equal(await bars.first().getAttribute('data-collected'), expected.totals.collected);
    assert.equal(await bars.first().getAttribute('data-pending-ar'), expected.totals.ar);
    const box = await bars.first().locator('rect').first().boundingBox();
    assert.ok(box && box.width > 10 && box.height > 5, `the bar is drawn: ${JSON.stringify(box)}`);

    // KPI tiles: exact values and the text a person reads.
    for (const [kpi, value] of [
      ['gross_charges', expected.totals.gross_charges],
      ['collected', expected.totals.collected],
      ['ar', expected.totals.ar],
    ]) {
      const tile = page.locator(`[data-kpi="${kpi}"]`);
      assert.equal(await tile.getAttribute('data-value'), value, `${kpi} tile`);
      assert.equal((await tile.locator('dd').innerText()).trim(), dollars(value), `${kpi} tile text`);
    }
    assert.equal(
      await page.locator('[data-kpi="transactions"]').getAttribute('data-value'),
      String(expected.totals.transactions),
    );
    assert.equal(
      await page.locator('[data-kpi="gross_collection_rate"]').getAttribute('data-value'),
      expected.totals.gross_collection_rate,
    );
    assert.notEqual(expected.totals.gross_charges, all.totals.gross_charges, 'the filter changed the figures');

    // Every other chart adds up to the filtered total: the monthly points and each breakdown's bars.
    const sum = async (selector) =>
      (await page.locator(selector).evaluateAll((els) => els.map((e) => e.getAttribute('data-value'))))
        .map(cents)
        .reduce((a, b) => a + b, 0n);
    const total = cents(expected.totals.gross_charges);
    assert.equal(await sum('#chart-monthly g[data-series="Gross charges"] circle'), total, 'monthly chart');
    for (const id of ['chart-specialty', 'chart-location', 'chart-cpt']) {
      assert.ok((await page.locator(`#${id} g.bar`).count()) > 0, `${id} has bars`);
      assert.equal(await sum(`#${id} g.bar`), total, `${id} adds up to the filtered charges`);
    }

    // Readable on a laptop screen: nothing wider than the window; every chart named for screen readers.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
    for (const svg of await page.locator('svg.chart').all()) {
      const labelledby = await svg.getAttribute('aria-labelledby');
      assert.ok(labelledby, 'each chart is labelled');
      for (const id of labelledby.split(' ')) {
        assert.ok((await page.locator(`[id="${id}"]`).textContent()).trim().length > 0, `#${id} has text`);
      }
    }
    assert.deepEqual(foreign, [], 'the page loads nothing from elsewhere');

    await page.screenshot({ path: screenshot, fullPage: true });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
