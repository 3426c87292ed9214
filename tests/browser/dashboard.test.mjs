// The dashboard in a real browser: Debian's headless Chromium opens it, picks a payer in the filter form, submits,
// and checks that the KPI tiles and every chart now show that payer's figures (equal to the JSON API's); applies
// every other kind of filter through the form, switches the time grain, sorts a table through its heading, exports
// a table as CSV and compares it with the API, and saves screenshots at 1400px and 390px wide (SCREENSHOT_DIR),
// checking that no tile or chart text overflows. Run by scripts/browser-test, which starts the dashboard and sets
// DASHBOARD_URL.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.DASHBOARD_URL;
const screenshots = process.env.SCREENSHOT_DIR;
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

/** Submit the form and wait for the page it leads to. */
async function submit(page) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('form.filters button[type=submit]')]);
}

/** The tiles show the API's figures for the page's own query string. */
async function tilesMatchApi(page, what) {
  const query = new URL(page.url()).search;
  const expected = await api(`/api/summary${query}`);
  for (const kpi of ['gross_charges', 'collected', 'ar', 'adjustments']) {
    assert.equal(
      await page.locator(`[data-kpi="${kpi}"]`).getAttribute('data-value'),
      expected.totals[kpi],
      `${what}: ${kpi} tile for ${query}`,
    );
  }
  return expected;
}

/** Each filter kind through the form: the first real choice of each select, the first suggested code, a range. */
async function everyFilterKind(page) {
  const all = await api('/api/summary');
  const selects = ['dates', 'payer', 'location', 'physician', 'specialty', 'cpt_group', 'diagnosis_group',
    'gender', 'age_band', 'state'];
  for (const name of selects) {
    await page.goto(base, { waitUntil: 'load' });
    const value = await page.locator(`#${name} option`).nth(1).getAttribute('value');
    await page.selectOption(`#${name}`, value);
    await submit(page);
    assert.equal(new URL(page.url()).searchParams.get(name), value, `${name} is in the URL`);
    assert.equal(await page.inputValue(`#${name}`), value, `the form keeps ${name}`);
    const got = await tilesMatchApi(page, name);
    if (name !== 'dates') {
      assert.notEqual(got.totals.transactions, all.totals.transactions, `${name}=${value} narrows the selection`);
    }
  }
  for (const name of ['cpt', 'diagnosis']) {
    await page.goto(base, { waitUntil: 'load' });
    const code = await page.locator(`#${name}-codes option`).first().getAttribute('value');
    await page.fill(`#${name}`, code);
    await submit(page);
    assert.equal(new URL(page.url()).searchParams.get(name), code);
    const got = await tilesMatchApi(page, name);
    assert.ok(got.totals.transactions > 0 && got.totals.transactions < all.totals.transactions, `${name}=${code}`);
  }
  await page.goto(base, { waitUntil: 'load' });
  await page.fill('#from', '2019-03-01');
  await page.fill('#to', '2019-08-31');
  await page.selectOption('#gender', (await page.locator('#gender option').nth(1).getAttribute('value')));
  await submit(page);
  const combined = await tilesMatchApi(page, 'range and gender');
  assert.equal(combined.first_post_date >= '2019-03-01', true);
  assert.equal(combined.last_post_date <= '2019-08-31', true);
}

/** Day, week and month: one point per period, every period from the first to the last, empty ones at zero. */
async function grains(page) {
  for (const grain of ['day', 'week', 'month']) {
    await page.goto(base, { waitUntil: 'load' });
    await page.selectOption('#grain', grain);
    await submit(page);
    const expected = await api(`/api/summary?grain=${grain}`);
    const points = page.locator('#chart-timeline g[data-series="Gross charges"] circle');
    assert.equal(await points.count(), expected.timeline.periods.length, `${grain}: a point per period`);
    const labels = await points.evaluateAll((els) => els.map((e) => e.getAttribute('data-label')));
    assert.deepEqual(labels, expected.timeline.periods.map((p) => p.label), `${grain} periods`);
    const step = { day: 1, week: 7 }[grain];
    if (step) {
      for (let i = 1; i < labels.length; i++) {
        const days = (Date.parse(labels[i]) - Date.parse(labels[i - 1])) / 86_400_000;
        assert.equal(days, step, `${grain}: ${labels[i - 1]} then ${labels[i]}`);
      }
    }
    assert.equal(
      await page.locator('#table-timeline tbody tr').count(),
      expected.timeline.periods.length,
      `${grain}: the table has a row per period`,
    );
  }
}

/** Sort the payers table through its heading; export it as CSV and compare with the API, cent for cent. */
async function sortAndExport(page) {
  await page.goto(base, { waitUntil: 'load' });
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click('#table-payers th[data-column="collected"] a'),
  ]);
  const collected = await page
    .locator('#table-payers tbody tr td:nth-of-type(2)')
    .evaluateAll((els) => els.map((e) => e.getAttribute('data-value')));
  const sorted = [...collected].sort((a, b) => (cents(b) > cents(a) ? 1 : cents(b) < cents(a) ? -1 : 0));
  assert.deepEqual(collected, sorted, 'largest collected first');
  assert.equal(await page.locator('#table-payers th[data-column="collected"]').getAttribute('aria-sort'), 'descending');

  const href = await page.locator('figure[data-table="payers"] .export a').getAttribute('href');
  const response = await fetch(new URL(href, base));
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/csv/);
  const [header, ...rows] = (await response.text()).trim().split('\r\n');
  const columns = header.split(',');
  assert.deepEqual(columns.slice(0, 3), ['payer', 'gross_charges', 'collected']);
  const expected = await api('/api/summary');
  const byName = new Map(expected.payers.map((p) => [p.label, p]));
  assert.equal(rows.length, expected.payers.length);
  for (const row of rows) {
    const fields = row.match(/("([^"]|"")*"|[^,]*)(,|$)/g).map((f) => f.replace(/,$/, '').replace(/^"|"$/g, '').replace(/""/g, '"'));
    const payer = byName.get(fields[0]);
    assert.ok(payer, `${fields[0]} is a payer of the API`);
    assert.equal(cents(fields[1]), cents(payer.gross_charges), `${fields[0]} gross charges`);
    assert.equal(cents(fields[2]), cents(payer.collected), `${fields[0]} collected`);
  }
}

/** Nothing overflows: the page fits the window, each tile's text fits its tile, every chart text lies in its chart. */
async function noOverflow(page, width) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${width}px: the page is ${overflow}px wider than the window`);
  const tiles = await page.locator('.kpi dd, .kpi dt').evaluateAll((els) =>
    els.filter((e) => e.scrollWidth > e.clientWidth).map((e) => `${e.textContent} (${e.scrollWidth} > ${e.clientWidth})`));
  assert.deepEqual(tiles, [], `${width}px: tile text overflows`);
  const texts = await page.locator('svg.chart').evaluateAll((svgs) =>
    svgs.flatMap((svg) => {
      const box = svg.getBoundingClientRect();
      return [...svg.querySelectorAll('text')]
        .map((t) => [t, t.getBoundingClientRect()])
        .filter(([, r]) => r.width > 0 && (r.left < box.left - 0.5 || r.right > box.right + 0.5))
        .map(([t, r]) => `${svg.id}: "${t.textContent}" ${Math.round(r.left)}..${Math.round(r.right)} outside ${Math.round(box.left)}..${Math.round(box.right)}`);
    }));
  assert.deepEqual(texts, [], `${width}px: chart text outside its chart`);
  const size = await page.locator('#chart-payers text.label').first().evaluate((t) => t.getBoundingClientRect().height);
  assert.ok(size >= 9, `${width}px: bar labels stay legible (${size}px high)`);
}

test('filtering by a payer through the form redraws the KPIs and charts for that payer only', { timeout: 240_000 }, async () => {
  assert.ok(base, 'DASHBOARD_URL is not set: run scripts/browser-test');
  assert.ok(screenshots, 'SCREENSHOT_DIR is not set: run scripts/browser-test');

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
      await page.locator('#chart-payers g.bar').count(),
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
    const bars = page.locator('#chart-payers g.bar');
    assert.equal(await bars.count(), 1, 'filtered, the payer chart has one bar');
    assert.equal(await bars.first().getAttribute('data-label'), payer.label);
    assert.equal(await bars.first().getAttribute('data-collected'), expected.totals.collected);
    assert.equal(await bars.first().getAttribute('data-pending-ar'), expected.totals.ar);
    const box = await bars.first().locator('rect').first().boundingBox();
    assert.ok(box && box.width > 10 && box.height > 5, `the bar is drawn: ${JSON.stringify(box)}`);

    // KPI tiles: exact values, the compact text a person reads, the exact amount on hover.
    for (const [kpi, value] of [
      ['gross_charges', expected.totals.gross_charges],
      ['collected', expected.totals.collected],
      ['ar', expected.totals.ar],
    ]) {
      const tile = page.locator(`[data-kpi="${kpi}"]`);
      assert.equal(await tile.getAttribute('data-value'), value, `${kpi} tile`);
      const figure = tile.locator('dd').first();
      assert.equal(await figure.getAttribute('title'), dollars(value), `${kpi} tile title`);
      assert.match((await figure.innerText()).trim(), /^-?\$\d+(\.\d[KMBT])?$/, `${kpi} tile text is compact`);
    }
    assert.equal(
      await page.locator('[data-kpi="days_in_ar"]').getAttribute('data-value'),
      expected.days_in_ar,
    );
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
    assert.equal(await sum('#chart-timeline g[data-series="Gross charges"] circle'), total, 'time axis');
    for (const id of ['chart-specialties', 'chart-locations', 'chart-cpt_groups']) {
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
    await everyFilterKind(page);
    await grains(page);
    await sortAndExport(page);
    for (const width of [1400, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.goto(base, { waitUntil: 'load' });
      await noOverflow(page, width);
      await page.screenshot({ path: join(screenshots, `dashboard-${width}.png`), fullPage: true });
    }
    assert.deepEqual(foreign, [], 'the page loads nothing from elsewhere');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
