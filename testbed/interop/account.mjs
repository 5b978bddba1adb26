// A person on the connected-apps page in a real browser: headless Chromium
// (Debian's package), driven by playwright-core, opens the page, signs in
// at the identity provider, finds the applications it must list, and
// revokes one of them.
//
//   node account.mjs <connected-apps URL> <JSON list of texts the page must show> <application to revoke> [screenshot.png]
//
// CHROMIUM names the browser binary (default /usr/bin/chromium). It prints
// "REVOKED <application>" once the page no longer lists it and exits 1 on
// any failure.

import { launchChromium } from './lib/chromium.mjs';

const [accountUrl, expectJSON, revoke, screenshot] = process.argv.slice(2);
if (!accountUrl || !expectJSON || !revoke) {
  console.error('usage: node account.mjs <connected-apps URL> <JSON texts> <application to revoke> [screenshot.png]');
  process.exit(2);
}
const expected = JSON.parse(expectJSON);

const browser = await launchChromium();
try {
  // No JavaScript: the page must work without it.
  const context = await browser.newContext({ viewport: { width: 760, height: 900 }, deviceScaleFactor: 1, javaScriptEnabled: false });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const onAccountPage = (u) => u.href.startsWith(accountUrl);

  const response = await page.goto(accountUrl);
  if (response.status() !== 200) throw new Error(`the page answered ${response.status()}`);
  if (await page.getByText('Acme Desktop').count() !== 0) throw new Error('the page lists applications before the sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The identity provider's sign-in form, prefilled with the demo user.
  await page.waitForURL((u) => u.pathname === '/login');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(onAccountPage);
  await page.waitForLoadState();

  const text = await page.locator('main').innerText();
  for (const want of expected) {
    if (!text.includes(want)) throw new Error(`the page does not show ${JSON.stringify(want)}:\n${text}`);
  }
  console.log(`LISTED ${JSON.stringify({ title: await page.title(), text })}`);
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot saved to ${screenshot}`);
  }

  await page.getByRole('button', { name: `Revoke ${revoke}`, exact: true }).click();
  await page.waitForURL((u) => onAccountPage(u) && u.searchParams.get('done') === 'revoked');
  await page.waitForLoadState();
  const after = await page.locator('main').innerText();
  if (after.includes(revoke)) throw new Error(`the page still lists ${revoke} after revoking it:\n${after}`);
  for (const want of expected.filter((w) => w !== revoke)) {
    if (!after.includes(want)) throw new Error(`after revoking ${revoke} the page no longer shows ${JSON.stringify(want)}:\n${after}`);
  }
  if (await page.getByRole('status').count() !== 1) throw new Error('the page does not say that the access was revoked');
  console.log(`REVOKED ${revoke}`);
} finally {
  await browser.close();
}
