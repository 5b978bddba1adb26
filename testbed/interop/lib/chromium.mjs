// Headless Chromium (Debian's package, or the binary CHROMIUM names),
// driven by playwright-core.

import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Nothing but 127.0.0.1 is reachable here: keep Chromium from trying.
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
