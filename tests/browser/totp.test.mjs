// Authenticator (TOTP) enrolment in a real browser: the customer signs in to the
// dashboard, opens "Sign-in and security", sets up a new authenticator app (the QR code
// is shown; the secret is read off the page as a person typing it in would), a wrong code
// is refused, the right one — computed here with RFC 6238 over node:crypto, not by the
// server — replaces the secret and shows ten recovery codes. Then: the new app signs in
// to the dashboard, and a recovery code signs in to an authorization (the ID token's amr
// says so). axe-core audits the new pages; screenshots are saved.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  Authenticator,
  decide,
  jwtParts,
  launchChromium,
  newContext,
  SCREENSHOTS,
  screenshot,
  startServer,
  submitPassword,
  tracked,
} from './lib/harness.mjs';
import { SandboxTpp } from './lib/tpp.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const CLIENT_ID = 'sandbox-tpp-mtls';

let server;
let browser;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('totp');
  tpp = await SandboxTpp.connect(server, CLIENT_ID);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

const report = {};

/** axe-core on the page as it is: serious and critical violations, as text. */
async function audit(page, name) {
  await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    }),
  );
  assert.ok(r.passes.length >= 10, `${name}: axe ran only ${r.passes.length} passing rules`);
  report[name] = r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help }));
  return r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${name}: ${v.id} (${v.impact}): ${v.help} @ ${v.nodes.map((n) => n.target).join(', ')}`);
}

async function dashboardSignIn(page, code) {
  await page.goto(`${server.kit.issuer}/account/login`);
  await page.fill('#username', server.kit.customer.username);
  await page.fill('#password', server.kit.customer.password);
  await page.click('form.form button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/account/login/otp');
  await page.fill('#otp', code);
  await page.click('form.form button[type=submit]');
}

test('enrol a new authenticator app, then sign in with it and with a recovery code', async () => {
  const kitApp = new Authenticator(server.kit.customer.totp_secret);
  const problems = [];
  // axe is injected as a script, so this context bypasses the CSP; the CSP itself is
  // checked on the responses.
  const context = await newContext(browser, { bypassCSP: true, viewport: { width: 1000, height: 900 } });
  let newSecret;
  let codes;
  try {
    const page = await context.newPage();
    await dashboardSignIn(page, await kitApp.freshCode());
    await page.waitForURL((u) => u.pathname === '/account');

    // 1. Sign-in and security, from the header link.
    const secResponse = page.waitForResponse((r) => new URL(r.url()).pathname === '/account/security');
    await page.click('#nav-security');
    await page.waitForURL((u) => u.pathname === '/account/security');
    const csp = (await (await secResponse).allHeaders())['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /script-src/);
    assert.match(await page.locator('#activity-list').innerText(), /Signed in/);
    await screenshot(page, 'security');
    problems.push(...(await audit(page, 'security')));

    // 2. Start: a QR code and the key as text.
    await page.click('#totp-start');
    await page.waitForURL((u) => u.pathname === '/account/totp');
    const qr = page.locator('#totp-qr svg');
    assert.ok(await qr.isVisible());
    const box = await qr.boundingBox();
    assert.ok(box.width >= 200 && box.height >= 200, `QR code is ${box.width}x${box.height}`);
    newSecret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
    assert.match(newSecret, /^[A-Z2-7]{32,}$/, newSecret);
    assert.notEqual(newSecret, server.kit.customer.totp_secret);
    await screenshot(page, 'totp-enrol');
    problems.push(...(await audit(page, 'totp-enrol')));

    // 3. A code from the old app does not confirm the new one.
    await page.fill('#otp', kitApp.wrongCode());
    await page.click('#totp-confirm');
    await page.waitForSelector('#error');
    assert.match(await page.locator('#error').innerText(), /does not match/);
    assert.equal(await page.locator('#otp').getAttribute('aria-invalid'), 'true');
    await screenshot(page, 'totp-enrol-wrong-code');

    // 4. The new app's code (computed here) confirms it: ten recovery codes, once.
    const newApp = new Authenticator(newSecret);
    await page.fill('#otp', await newApp.freshCode());
    await page.click('#totp-confirm');
    await page.waitForSelector('#recovery-list');
    codes = await page.locator('.recovery-code').allInnerTexts();
    assert.equal(codes.length, 10);
    for (const c of codes) assert.match(c, /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
    await screenshot(page, 'totp-recovery-codes');
    problems.push(...(await audit(page, 'totp-recovery-codes')));
    await page.click('#codes-done');
    await page.waitForURL((u) => u.pathname === '/account/security');
    assert.equal(await page.locator('#recovery-left').innerText(), '10');
    await page.click('#logout');
    await page.waitForURL((u) => u.pathname === '/account/login');

    // 5. The old app's code is refused now; the new app's next code signs in.
    await dashboardSignIn(page, await kitApp.freshCode());
    await page.waitForSelector('#error');
    assert.match(page.url(), /\/account\/login\/otp$/);
    await page.goto(`${server.kit.issuer}/account/login?restart=1`);
    await dashboardSignIn(page, await newApp.freshCode());
    await page.waitForURL((u) => u.pathname === '/account');
    await page.click('#logout');

    // 6. An authorization with a recovery code instead of the app.
    const req = await tpp.accountAccessRequest();
    await page.goto(req.url);
    await submitPassword(page, server.kit.customer);
    await page.click('#recovery summary');
    await page.fill('#recovery-code', codes[0]);
    await screenshot(page, 'otp-recovery-code');
    problems.push(...(await audit(page, 'otp-recovery')));
    await page.click('#use-recovery');
    await page.waitForURL((u) => u.pathname === '/consent');
    await page.locator('input[name=account]').first().check();
    const back = await decide(page, '#approve', tpp.client.redirect_uri);
    const t = await tpp.token({
      grant_type: 'authorization_code',
      code: back.searchParams.get('code'),
      redirect_uri: tpp.client.redirect_uri,
      code_verifier: req.verifier,
    });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    const { payload } = jwtParts(t.body.id_token);
    assert.deepEqual(payload.amr, ['pwd', 'rec', 'mfa']);
    assert.equal(payload.acr, 'urn:openbanking:psd2:sca');

    // 7. The same recovery code a second time: refused.
    const again = await tpp.accountAccessRequest();
    await page.goto(again.url);
    await submitPassword(page, server.kit.customer);
    await page.click('#recovery summary');
    await page.fill('#recovery-code', codes[0]);
    await page.click('#use-recovery');
    await page.waitForSelector('#error');
    assert.equal(new URL(page.url()).pathname, '/login/otp');
  } finally {
    await context.close();
    mkdirSync(SCREENSHOTS, { recursive: true });
    writeFileSync(join(SCREENSHOTS, 'axe-report-totp.json'), JSON.stringify(report, null, 2));
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});
