// A file of payments authorised once, in a real browser (ADR 0016): the TPP creates a
// file-payment consent and uploads a CSV file over mTLS, the customer signs in and sees the
// batch on the consent page (count, total, the first payees and "and N more"), audited by
// axe and at phone width, picks the account to pay from and approves; the TPP executes the
// file with the token and reads the report; the customer's dashboard then shows the
// executed file (audited by axe too). Screenshots: desktop and phone widths.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
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

const CLIENT_ID = 'sandbox-tpp-mtls';
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const HEADER =
  'InstructionIdentification,EndToEndIdentification,Amount,Currency,CreditorSchemeName,CreditorIdentification,CreditorName,Reference,Unstructured';

let server;
let browser;
let authenticator;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('file-payments');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  tpp = await SandboxTpp.connect(server, CLIENT_ID);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

test('the customer approves a file of six payments once, on a page that shows the batch', async () => {
  const payees = [
    ['Wanjiku Kamau', '254712000001', '1200.00'],
    ['Otieno Ochieng', '254712000002', '850.50'],
    ['Achieng Atieno', '254712000003', '430.00'],
    ['Mutua Musyoka', '254712000004', '99.99'],
    ['Njeri Wambui', '254712000005', '150.00'],
    ['Kiprop Kiptoo', '254712000006', '20.01'],
  ];
  const csv =
    `${HEADER}\r\n` +
    payees
      .map(([name, msisdn, amount], i) => `SAL-${i},E2E-SAL-${i},${amount},KES,KE.MPESA.MSISDN,${msisdn},${name},NOV-SALARY,`)
      .join('\r\n') +
    '\r\n';
  const fileHash = createHash('sha256').update(csv).digest('base64');
  const cc = await tpp.token({ grant_type: 'client_credentials', scope: 'payments' });
  assert.equal(cc.status, 200, JSON.stringify(cc.body));
  const body = {
    Data: {
      Initiation: {
        FileType: 'KE.WEKEZA.PaymentInitiation.CSV.1',
        FileHash: fileHash,
        FileReference: 'PAYROLL-NOV',
        NumberOfTransactions: '6',
        ControlSum: '2750.50',
      },
    },
  };
  const consent = await tpp.pisp('POST', '/file-payment-consents', cc.body.access_token, body);
  assert.equal(consent.status, 201, JSON.stringify(consent.body));
  assert.equal(consent.body.Data.Status, 'AWUP');
  const consentId = consent.body.Data.ConsentId;
  const base = server.kit.resource_base_url.replace(/\/$/, '');
  const up = await tpp.fetch(`${base}/open-banking/v4.0/pisp/file-payment-consents/${consentId}/file`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${cc.body.access_token}`,
      'content-type': 'text/csv',
      'x-fapi-interaction-id': randomUUID(),
      'x-idempotency-key': randomUUID(),
      // Signed over the file's exact bytes, like every payment-initiation POST.
      'x-jws-signature': tpp.jwsSignature(Buffer.from(csv)),
    },
    body: csv,
  });
  assert.equal(up.status, 200, await up.text());
  const req = await tpp.pushIntent(consentId, 'openid payments');

  const tokens = await (async () => {
    const context = await newContext(browser, { viewport: { width: 1100, height: 900 }, bypassCSP: true });
    try {
      const page = await context.newPage();
      await page.goto(req.url);
      await submitPassword(page, server.kit.customer);
      await submitOtp(page, await authenticator.freshCode());
      assert.equal(await page.locator('#file-payment-count').innerText(), '6');
      assert.equal(await page.locator('#file-payment-total').innerText(), 'KES 2750.50');
      const listed = await page.locator('#file-payees').innerText();
      for (const want of ['Wanjiku Kamau', 'M-PESA number 254712000001', 'KES 1200.00', 'Achieng Atieno', 'and 3 more']) {
        assert.ok(listed.includes(want), `${want} not in ${listed}`);
      }
      assert.ok(!listed.includes('Mutua Musyoka'), 'only the first payees are listed');
      assert.equal(await page.locator('#file-payment-reference').innerText(), 'PAYROLL-NOV');

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
        join(SCREENSHOTS, 'axe-consent-file-payment.json'),
        JSON.stringify(r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) })), null, 2),
      );
      const serious = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(serious.map((v) => `${v.id}: ${v.help}`), []);
      await screenshot(page, 'consent-file-payment');
      await page.setViewportSize({ width: 360, height: 780 });
      const overflow = await page.evaluate(
        () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
      );
      assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 360px`);
      await screenshot(page, 'consent-file-payment-phone');
      await page.setViewportSize({ width: 1100, height: 900 });

      await page.locator('input[name=account]').first().check();
      const back = await decide(page, '#approve', tpp.client.redirect_uri);
      const code = back.searchParams.get('code');
      assert.ok(code, `no code in ${back}`);
      const t = await tpp.token({
        grant_type: 'authorization_code',
        code,
        redirect_uri: tpp.client.redirect_uri,
        code_verifier: req.verifier,
      });
      assert.equal(t.status, 200, JSON.stringify(t.body));
      return t.body;
    } finally {
      await context.close();
    }
  })();

  const paid = await tpp.pisp('POST', '/file-payments', tokens.access_token, {
    Data: { ConsentId: consentId, Initiation: body.Data.Initiation },
  });
  assert.equal(paid.status, 201, JSON.stringify(paid.body));
  const id = paid.body.Data.FilePaymentId;
  const report = await tpp.pisp('GET', `/file-payments/${id}/report-file`, cc.body.access_token);
  assert.equal(report.status, 200, JSON.stringify(report.body));
  assert.deepEqual(
    report.body.Data.Items.map((i) => [i.InstructionIdentification, i.InstructedAmount.Amount]),
    payees.map(([, , amount], i) => [`SAL-${i}`, amount]),
  );
  // A second execution of the same consent is refused.
  const again = await tpp.pisp('POST', '/file-payments', tokens.access_token, {
    Data: { ConsentId: consentId, Initiation: body.Data.Initiation },
  });
  assert.equal(again.status, 400, JSON.stringify(again.body));

  // The customer's dashboard shows the executed file like a payment consent: the batch,
  // the account, what became of it; spent, so no withdraw link. Audited by axe.
  const context = await newContext(browser, { viewport: { width: 1100, height: 900 }, bypassCSP: true });
  try {
    const page = await context.newPage();
    await signInToDashboard(page, server.kit.issuer, server.kit.customer, await authenticator.freshCode());
    const card = page.locator(`[data-consent-id="${consentId}"]`);
    assert.equal(await card.getAttribute('data-status'), 'paid');
    assert.equal(await card.locator('.file-payment-count strong').innerText(), '6');
    assert.equal(await card.locator('.file-payment-total').innerText(), 'KES 2750.50');
    const text = await card.innerText();
    for (const want of ['Wanjiku Kamau', 'M-PESA number 254712000001', 'KES 1200.00', 'Achieng Atieno', 'and 3 more', 'PAYROLL-NOV', 'Used: the payments were made']) {
      assert.ok(text.includes(want), `${want} not in ${text}`);
    }
    assert.ok(!text.includes('Mutua Musyoka'), 'only the first payees are listed');
    assert.match(await card.locator('.payment-status').innerText(), /^(All 6 paid|\d+ paid|\d+ sent)/);
    assert.equal(await card.getByRole('link', { name: /Withdraw access/ }).count(), 0);

    await page.addScriptTag({ path: AXE });
    const r = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      }),
    );
    assert.ok(r.passes.length >= 10, `axe ran only ${r.passes.length} passing rules`);
    writeFileSync(
      join(SCREENSHOTS, 'axe-dashboard-file-payment.json'),
      JSON.stringify(r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) })), null, 2),
    );
    const serious = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious.map((v) => `${v.id}: ${v.help}`), []);
    await card.scrollIntoViewIfNeeded();
    await screenshot(page, 'dashboard-file-payment');
    await page.setViewportSize({ width: 360, height: 780 });
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 360px`);
    await card.scrollIntoViewIfNeeded();
    await screenshot(page, 'dashboard-file-payment-phone');
  } finally {
    await context.close();
  }
});
