// A person in a real browser: headless Chromium (Debian's package), driven
// by playwright-core, opens an authorization URL of the gateway, reads the
// consent page, clicks Approve or Deny, signs in at the identity provider
// and lands on the client's redirect URI.
//
//   node browser-consent.mjs <authorization URL> <redirect URI> approve|deny <JSON list of texts the consent page must show> [screenshot.png]
//
// CHROMIUM names the browser binary (default /usr/bin/chromium). It prints
// the final URL as "LANDED <url>" and exits 1 on any failure.

import { launchChromium } from './lib/chromium.mjs';

const [authorizationUrl, redirectUri, decision, expectJSON, screenshot] = process.argv.slice(2);
if (!authorizationUrl || !redirectUri || !['approve', 'deny'].includes(decision) || !expectJSON) {
  console.error('usage: node browser-consent.mjs <authorization URL> <redirect URI> approve|deny <JSON texts> [screenshot.png]');
  process.exit(2);
}
const expected = JSON.parse(expectJSON);

const browser = await launchChromium();
try {
  const context = await browser.newContext({ viewport: { width: 760, height: 640 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);

  const response = await page.goto(authorizationUrl);
  if (response.status() !== 200) throw new Error(`the authorization URL answered ${response.status()}`);
  const heading = await page.locator('h1').innerText();
  const text = await page.locator('main').innerText();
  for (const want of expected) {
    if (!text.includes(want)) throw new Error(`the consent page does not show ${JSON.stringify(want)}:\n${text}`);
  }
  console.log(`CONSENT ${JSON.stringify({ title: await page.title(), heading, text })}`);
  if (screenshot) {
    await page.screenshot({ path: screenshot });
    console.log(`screenshot saved to ${screenshot}`);
  }

  const landed = (u) => u.href.startsWith(redirectUri);
  if (decision === 'approve') {
    await page.getByRole('button', { name: 'Approve' }).click();
    // The identity provider's sign-in form, prefilled with the demo user.
    await page.waitForURL((u) => landed(u) || u.pathname === '/login');
    if (!landed(new URL(page.url()))) {
      await page.getByRole('button', { name: 'Sign in' }).click();
    }
  } else {
    await page.getByRole('button', { name: 'Deny' }).click();
  }
  await page.waitForURL(landed);
  await page.waitForLoadState();
  console.log(`LANDED ${page.url()}`);
} finally {
  await browser.close();
}
