// The customer's consent dashboard in a real browser: a TPP gets account access (UK OB
// intent, the customer ticks an account on the consent page), the customer signs in to
// /account (password, then a TOTP code computed here), sees that access with its
// permissions and account, withdraws it through the confirmation step, and the TPP's next
// resource call (mTLS, Bearer) is refused once the RS's one-second consent cache has
// passed; the refresh token is dead too. Screenshots: desktop and phone widths.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  Authenticator,
  decide,
  launchChromium,
  newContext,
  SCREENSHOTS,
  screenshot,
  signInToDashboard,
  startServer,
  submitOtp,
  submitPassword,
  tracked,
} from './lib/harness.mjs';
import { SandboxTpp } from './lib/tpp.mjs';

const CLIENT_ID = 'sandbox-tpp-mtls'; // tls_client_auth: the certificate is the credential
const CLIENT_NAME = 'Sandbox Payments App';

let server;
let browser;
let authenticator;
let client;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('dashboard');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  tpp = await SandboxTpp.connect(server, CLIENT_ID);
  client = tpp.client;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

async function withContext(opts, fn) {
  const context = await newContext(browser, opts);
  try {
    return await fn(context);
  } finally {
    await context.close();
  }
}

const cspOf = (headers) =>
  Object.fromEntries(
    (headers['content-security-policy'] ?? '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...values]) => [name.toLowerCase(), values]),
  );

test('the customer withdraws account access in the dashboard and the TPP is refused', async () => {
  // 1. The TPP gets account access for one ticked account.
  const req = await tpp.accountAccessRequest();
  const { accountName, tokens } = await withContext({}, async (context) => {
    const page = await context.newPage();
    await page.goto(req.url);
    await submitPassword(page, server.kit.customer);
    await submitOtp(page, await authenticator.freshCode());
    const box = page.locator('input[name=account]').first();
    await box.check();
    const id = await box.getAttribute('id');
    const accountName = (await page.locator(`label[for="${id}"] .account__name`).innerText()).trim();
    const back = await decide(page, '#approve', client.redirect_uri);
    const code = back.searchParams.get('code');
    assert.ok(code, `no code in ${back}`);
    const t = await tpp.token({
      grant_type: 'authorization_code',
      code,
      redirect_uri: client.redirect_uri,
      code_verifier: req.verifier,
    });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    return { accountName, tokens: t.body };
  });
  const ok = await tpp.rs('GET', '/accounts', tokens.access_token);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.Data.Account.length, 1);

  // 2. The customer signs in to the dashboard, in a fresh browser session.
  await withContext({ viewport: { width: 1100, height: 900 } }, async (context) => {
    const page = await context.newPage();
    await page.goto(`${server.kit.issuer}/account`);
    await page.waitForURL((u) => u.pathname === '/account/login');
    await screenshot(page, 'dashboard-login');
    // Keyboard: the skip link is the first thing to tab to, and it moves focus to <main>.
    assert.equal(
      await page.evaluate(
        () => document.querySelector('a[href], button, input:not([type=hidden])')?.className,
      ),
      'skip-link',
    );
    await page.locator('.skip-link').focus();
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
    await page.fill('#username', server.kit.customer.username);
    await page.fill('#password', server.kit.customer.password);
    await page.click('form.form button[type=submit]');
    await page.waitForURL((u) => u.pathname === '/account/login/otp');
    await screenshot(page, 'dashboard-otp');
    await page.fill('#otp', await authenticator.freshCode());
    const dashResponse = page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/account' && r.request().method() === 'GET',
    );
    await page.click('form.form button[type=submit]');
    await page.waitForURL((u) => u.pathname === '/account');
    const h = await (await dashResponse).allHeaders();
    assert.deepEqual(cspOf(h)['frame-ancestors'], ["'none'"], h['content-security-policy']);
    assert.equal(cspOf(h)['script-src'], undefined, 'no script source allowed (default-src none)');

    // 3. The dashboard lists the access: provider, status, permissions, account.
    const card = page.locator(`[data-consent-id="${req.consentId}"]`);
    assert.equal(await card.getAttribute('data-status'), 'active');
    const provider = page.locator('section.provider', { has: card });
    assert.equal((await provider.locator('h2').innerText()).trim(), CLIENT_NAME);
    const text = await card.innerText();
    assert.match(text, /The balances of the accounts you pick/);
    assert.match(text, /Money going out of your accounts/);
    assert.ok(text.includes(accountName), `${accountName} not in ${text}`);
    // The TPP's call above was recorded by the resource server (at most once a minute).
    assert.match(text, /Last used\s*\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC/);
    await card.locator('details.history summary').click();
    assert.match(await card.locator('.timeline').innerText(), /Access given/);
    await screenshot(page, 'dashboard');

    // Phone width: nothing wider than the screen.
    await page.setViewportSize({ width: 360, height: 780 });
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 360px`);
    await screenshot(page, 'dashboard-phone');
    await page.setViewportSize({ width: 1100, height: 900 });

    // 4. Withdraw, through the confirmation step.
    const withdraw = card.getByRole('link', { name: `Withdraw access for ${CLIENT_NAME}: Account information` });
    await withdraw.click();
    await page.waitForURL((u) => u.pathname === `/account/consents/${req.consentId}/revoke`);
    await screenshot(page, 'dashboard-revoke-confirm');
    await page.click('#confirm-revoke');
    await page.waitForURL((u) => u.pathname === '/account');
    assert.match(await page.locator('#notice').innerText(), /no longer has this access/);
    assert.equal(await card.getAttribute('data-status'), 'revoked');
    assert.equal(await card.getByRole('link', { name: /Withdraw access/ }).count(), 0);
    await card.locator('details.history summary').click();
    assert.match(await card.locator('.timeline').innerText(), /Access withdrawn\s*by you/);
    await screenshot(page, 'dashboard-revoked');
    const revokedAt = Date.now();

    // 5. The TPP is refused once the RS's consent cache (≤ 1 s) has passed.
    await sleep(Math.max(0, revokedAt + 1100 - Date.now()));
    const refused = await tpp.rs('GET', '/accounts', tokens.access_token);
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    const refresh = await tpp.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(refresh.status, 400, JSON.stringify(refresh.body));

    // 6. Sign out: the dashboard needs a new sign-in.
    await page.click('#logout');
    await page.waitForURL((u) => u.pathname === '/account/login');
    assert.match(await page.locator('#notice').innerText(), /signed out/);
    await page.goto(`${server.kit.issuer}/account`);
    await page.waitForURL((u) => u.pathname === '/account/login');
  });
});

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** The customer approves a payment consent in Chromium, paying from the first account. */
async function approvePayment(req) {
  return withContext({}, async (context) => {
    const page = await context.newPage();
    await page.goto(req.url);
    await submitPassword(page, server.kit.customer);
    await submitOtp(page, await authenticator.freshCode());
    await page.locator('input[name=account]').first().check();
    const back = await decide(page, '#approve', client.redirect_uri);
    const code = back.searchParams.get('code');
    assert.ok(code, `no code in ${back}`);
    const t = await tpp.token({
      grant_type: 'authorization_code',
      code,
      redirect_uri: client.redirect_uri,
      code_verifier: req.verifier,
    });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    return t.body;
  });
}

test('payment consents in the dashboard: a paid one stays, an unused one is withdrawn and the payment refused', async () => {
  const initiation = (amount, ref) => ({
    InstructionIdentification: `INSTR-${ref}`,
    EndToEndIdentification: `E2E-${ref}`,
    InstructedAmount: { Amount: amount, Currency: 'KES' },
    CreditorAccount: { SchemeName: 'KE.MPESA.MSISDN', Identification: '254712345678', Name: 'Mama Mboga Groceries' },
    RemittanceInformation: { Reference: ref },
  });
  // 1. One payment made at once, one left authorised.
  const paidReq = await tpp.paymentRequest(initiation('25.00', 'WEEK-47'));
  const paidTokens = await approvePayment(paidReq);
  const paid = await tpp.pisp('POST', '/domestic-payments', paidTokens.access_token, {
    ...paidReq.body,
    Data: { ...paidReq.body.Data, ConsentId: paidReq.consentId },
  });
  assert.equal(paid.status, 201, JSON.stringify(paid.body));
  const openReq = await tpp.paymentRequest(initiation('9.40', 'RENT-DEC'));
  const openTokens = await approvePayment(openReq);

  // 2. The dashboard, audited by axe (the audit context bypasses the CSP to inject axe).
  await withContext({ viewport: { width: 1100, height: 900 }, bypassCSP: true }, async (context) => {
    const page = await context.newPage();
    await signInToDashboard(page, server.kit.issuer, server.kit.customer, await authenticator.freshCode());

    const open = page.locator(`[data-consent-id="${openReq.consentId}"]`);
    assert.equal(await open.getAttribute('data-status'), 'active');
    const openText = await open.innerText();
    for (const want of ['KES 9.40', 'Mama Mboga Groceries', 'M-PESA number 254712345678', 'RENT-DEC', 'Authorised by you, not used yet']) {
      assert.ok(openText.includes(want), `${want} not in ${openText}`);
    }
    const done = page.locator(`[data-consent-id="${paidReq.consentId}"]`);
    assert.equal(await done.getAttribute('data-status'), 'paid');
    const doneText = await done.innerText();
    assert.match(doneText, /KES 25\.00/);
    assert.match(doneText, /Used: the payment was made/);
    assert.match(await done.locator('.payment-status').innerText(), /^(Paid|Sent to the payee's bank)/);
    assert.equal(await done.getByRole('link', { name: /Withdraw access/ }).count(), 0);
    await done.locator('details.history summary').click();
    assert.match(await done.locator('.timeline').innerText(), /Payment instructed/);

    await page.addScriptTag({ path: AXE });
    const r = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      }),
    );
    assert.ok(r.passes.length >= 10, `axe ran only ${r.passes.length} passing rules`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    writeFileSync(
      join(SCREENSHOTS, 'axe-dashboard-payments.json'),
      JSON.stringify(r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) })), null, 2),
    );
    const serious = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious.map((v) => `${v.id}: ${v.help}`), []);
    await open.scrollIntoViewIfNeeded();
    await screenshot(page, 'dashboard-payments');
    await page.setViewportSize({ width: 360, height: 780 });
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 360px`);
    await screenshot(page, 'dashboard-payments-phone');
    await page.setViewportSize({ width: 1100, height: 900 });

    // 3. Withdraw the unused one; the TPP's payment is then refused.
    await open.getByRole('link', { name: /Withdraw access/ }).click();
    await page.waitForURL((u) => u.pathname === `/account/consents/${openReq.consentId}/revoke`);
    assert.match(await page.locator('main').innerText(), /KES 9\.40/);
    await page.click('#confirm-revoke');
    await page.waitForURL((u) => u.pathname === '/account');
    assert.equal(await open.getAttribute('data-status'), 'revoked');
    assert.match(await open.innerText(), /You withdrew this payment/);
    const refused = await tpp.pisp('POST', '/domestic-payments', openTokens.access_token, {
      ...openReq.body,
      Data: { ...openReq.body.Data, ConsentId: openReq.consentId },
    });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.Errors[0].ErrorCode, 'UK.OBIE.Resource.InvalidConsentStatus');
  });
});
