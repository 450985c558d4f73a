// A payment asked for in `authorization_details` (RFC 9396 `payment_initiation`, ADR 0017),
// in a real browser: the TPP pushes the payment in the PAR request over mTLS, the customer
// signs in and sees it on the consent page like any payment (amount, payee, reference,
// the account to pay from), picks the account and approves; the token response carries the
// granted entry with its consentId, and the signed POST /domestic-payments pays it once.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  Authenticator,
  decide,
  jwtParts,
  launchChromium,
  newContext,
  screenshot,
  startServer,
  submitOtp,
  submitPassword,
  tracked,
} from './lib/harness.mjs';
import { SandboxTpp } from './lib/tpp.mjs';

const CLIENT_ID = 'sandbox-tpp-mtls';
const b64url = (b) => Buffer.from(b).toString('base64url');

let server;
let browser;
let authenticator;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('rar-payments');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  tpp = await SandboxTpp.connect(server, CLIENT_ID);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

test('a payment_initiation request is approved on the consent page and pays once', async () => {
  assert.ok(tpp.meta.authorization_details_types_supported.includes('payment_initiation'));
  const detail = {
    type: 'payment_initiation',
    instructedAmount: { amount: '18.40', currency: 'KES' },
    creditorAccount: { schemeName: 'KE.WEKEZA.AccountNumber', identification: 'ELSEWHERE-77' },
    creditorName: 'Mama Mboga',
    remittanceInformation: { reference: 'VEG-0424' },
  };
  const verifier = b64url(randomBytes(32));
  const par = await tpp.fetch(tpp.endpoint('pushed_authorization_request_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: tpp.client.redirect_uri,
      scope: 'openid payments',
      state: b64url(randomBytes(16)),
      nonce: b64url(randomBytes(16)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      authorization_details: JSON.stringify([detail]),
    }),
  });
  assert.equal(par.status, 201, await par.clone().text());
  const { request_uri } = await par.json();
  const url = new URL(tpp.meta.authorization_endpoint);
  url.search = new URLSearchParams({ client_id: CLIENT_ID, request_uri }).toString();

  const context = await newContext(browser, { viewport: { width: 1100, height: 900 } });
  let tokens;
  try {
    const page = await context.newPage();
    await page.goto(url.href);
    await submitPassword(page, server.kit.customer);
    await submitOtp(page, await authenticator.freshCode());
    assert.equal(await page.locator('#payment-amount').innerText(), 'KES 18.40');
    assert.equal(await page.locator('#payment-payee').innerText(), 'Mama Mboga');
    assert.equal(await page.locator('#payment-reference').innerText(), 'VEG-0424');
    await screenshot(page, 'consent-rar-payment');
    const from = page.locator('input[name=account]').first();
    const debtor = await from.getAttribute('value');
    await from.check();
    const back = await decide(page, '#approve', tpp.client.redirect_uri);
    const code = back.searchParams.get('code');
    assert.ok(code, `no code in ${back}`);
    const t = await tpp.token({
      grant_type: 'authorization_code',
      code,
      redirect_uri: tpp.client.redirect_uri,
      code_verifier: verifier,
    });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    tokens = t.body;
    const granted = tokens.authorization_details[0];
    assert.equal(granted.type, 'payment_initiation');
    assert.equal(granted.debtorAccountId, debtor);
    assert.deepEqual(granted.instructedAmount, detail.instructedAmount);
    assert.equal(jwtParts(tokens.access_token).payload.consent_id, granted.consentId);
  } finally {
    await context.close();
  }

  const consentId = tokens.authorization_details[0].consentId;
  const initiation = {
    InstructionIdentification: 'NOTPROVIDED',
    EndToEndIdentification: 'NOTPROVIDED',
    InstructedAmount: { Amount: '18.40', Currency: 'KES' },
    CreditorAccount: { SchemeName: 'KE.WEKEZA.AccountNumber', Identification: 'ELSEWHERE-77', Name: 'Mama Mboga' },
    RemittanceInformation: { Reference: 'VEG-0424' },
  };
  const body = { Data: { ConsentId: consentId, Initiation: initiation }, Risk: {} };
  const paid = await tpp.pisp('POST', '/domestic-payments', tokens.access_token, body);
  assert.equal(paid.status, 201, JSON.stringify(paid.body));
  const again = await tpp.pisp('POST', '/domestic-payments', tokens.access_token, body);
  assert.equal(again.status, 400, JSON.stringify(again.body));
  const cc = await tpp.token({ grant_type: 'client_credentials', scope: 'payments' });
  const consent = await tpp.pisp('GET', `/domestic-payment-consents/${consentId}`, cc.body.access_token);
  assert.equal(consent.body.Data.Status, 'COND', JSON.stringify(consent.body));
});
