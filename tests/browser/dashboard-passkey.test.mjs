// Passkeys in the dashboard, in Chromium with the DevTools virtual authenticator: a
// passkey enrolled during an authorization signs the customer in to /account on its own
// (no password, no code), is listed on "Sign-in and security" with its last use, renamed
// and removed there; once removed it no longer signs in. axe-core audits the page.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  Authenticator,
  launchChromium,
  newContext,
  screenshot,
  startServer,
  submitOtp,
  submitPassword,
  tracked,
  virtualAuthenticator,
} from './lib/harness.mjs';
import { SandboxTpp } from './lib/tpp.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

let server;
let browser;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('dashboard-passkey');
  tpp = await SandboxTpp.connect(server, 'sandbox-tpp-mtls');
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

async function dashboardPasskeySignIn(page) {
  await page.goto(`${server.kit.issuer}/account/login`);
  await page.click('#dash-passkey-signin');
  await page.waitForURL((u) => u.pathname === '/account/login/passkey');
  await page.fill('#username', server.kit.customer.username);
  await page.click('#passkey-continue');
}

test('a passkey signs in to the dashboard and is managed there', async () => {
  const app = new Authenticator(server.kit.customer.totp_secret);
  // The audit injects axe-core: this context bypasses the CSP (checked on responses).
  const context = await newContext(browser, { bypassCSP: true });
  try {
    const page = await context.newPage();
    await virtualAuthenticator(context, page);
    // Enrol during an authorization (password + TOTP first).
    const req = await tpp.accountAccessRequest();
    await page.goto(req.url);
    await submitPassword(page, server.kit.customer);
    await submitOtp(page, await app.freshCode());
    await page.click('#passkey-offer');
    await page.waitForURL((u) => u.pathname === '/passkey');
    await page.fill('#passkey-name', 'Test laptop');
    await page.click('#passkey-start');
    await page.waitForURL((u) => u.pathname === '/passkey' && u.searchParams.get('done') === 'added');

    // The dashboard with the passkey alone.
    const finish = page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/account/login/passkey/finish' && r.request().method() === 'POST',
    );
    const ceremony = page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/account/login/passkey' && r.request().method() === 'POST',
    );
    await dashboardPasskeySignIn(page);
    const csp = (await (await ceremony).allHeaders())['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal((await finish).status(), 303);
    await page.waitForURL((u) => u.pathname === '/account');

    // Listed with its last use; renamed; the activity names the passkey.
    await page.click('#nav-security');
    await page.waitForURL((u) => u.pathname === '/account/security');
    const item = page.locator('#passkeys li');
    assert.match(await item.innerText(), /Test laptop/);
    assert.match(await item.innerText(), /Last used/);
    assert.match(await page.locator('#activity-list').innerText(), /Signed in · Passkey/);
    await page.addScriptTag({ path: AXE });
    const axe = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
    );
    const serious = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious.map((v) => v.id), []);
    await page.fill('#rename-1', 'Dashboard key');
    await page.click('.passkey-item__rename button');
    await page.waitForSelector('#notice');
    assert.match(await page.locator('#passkeys li').innerText(), /Dashboard key/);
    await screenshot(page, 'security-passkeys');

    // Removed: it no longer signs in.
    await page.click('.passkey-item__remove button');
    await page.waitForSelector('#passkeys-none');
    await page.click('#logout');
    await page.waitForURL((u) => u.pathname === '/account/login');
    await dashboardPasskeySignIn(page);
    await page.waitForSelector('#error');
    assert.match(await page.locator('#error').innerText(), /no passkey/);
    assert.equal(new URL(page.url()).pathname, '/account/login/passkey');
    await screenshot(page, 'dashboard-passkey-none');
  } finally {
    await context.close();
  }
});
