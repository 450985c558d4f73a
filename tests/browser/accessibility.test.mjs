// Accessibility of every customer page, checked by axe-core (WCAG 2.1 A/AA rules plus
// best practices) inside the same Chromium: sign-in, security code, the account-access
// consent page with its account checkboxes, an error page, the dashboard sign-in and the
// dashboard itself. Serious and critical violations fail the test; everything axe reports
// is written to screenshots/axe-report.json for the record.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  Authenticator,
  launchChromium,
  newContext,
  SCREENSHOTS,
  startServer,
  submitOtp,
  submitPassword,
  tlsFetch,
  tracked,
} from './lib/harness.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const CLIENT_ID = 'sandbox-tpp-mtls'; // tls_client_auth: the certificate is the credential
const CLIENT_NAME = 'Sandbox Payments App';
const AISP = '/open-banking/v4.0/aisp';

let server;
let browser;
let authenticator;
let client;
let tpp;
let meta;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('accessibility');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  client = server.client(CLIENT_ID);
  tpp = tlsFetch({ ca: server.ca, cert: client.certPem, key: client.keyPem });
  meta = await (await tpp(`${server.kit.issuer}/.well-known/openid-configuration`)).json();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

const b64url = (b) => Buffer.from(b).toString('base64url');
const endpoint = (name) => meta.mtls_endpoint_aliases?.[name] ?? meta[name];

async function token(params) {
  const r = await tpp(endpoint('token_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({ client_id: CLIENT_ID, ...params }),
  });
  return { status: r.status, body: await r.json() };
}

/** A resource-server call as the TPP: mTLS with its certificate, Bearer token. */
async function rs(method, path, accessToken, body) {
  const headers = {
    authorization: `Bearer ${accessToken}`,
    accept: 'application/json',
    'x-fapi-interaction-id': randomUUID(),
  };
  if (body) headers['content-type'] = 'application/json';
  const base = server.kit.resource_base_url.replace(/\/$/, '');
  const r = await tpp(`${base}${AISP}${path}`, {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** UK OB intent → PAR naming it → the front-channel URL. */
async function accountAccessRequest() {
  const cc = await token({ grant_type: 'client_credentials', scope: 'accounts' });
  assert.equal(cc.status, 200, JSON.stringify(cc.body));
  const intent = await rs('POST', '/account-access-consents', cc.body.access_token, {
    Data: {
      Permissions: [
        'ReadAccountsDetail',
        'ReadBalances',
        'ReadTransactionsDetail',
        'ReadTransactionsCredits',
        'ReadTransactionsDebits',
      ],
      ExpirationDateTime: '2099-01-01T00:00:00Z',
      TransactionFromDateTime: '2020-01-01T00:00:00Z',
      TransactionToDateTime: '2099-01-01T00:00:00Z',
    },
    Risk: {},
  });
  assert.equal(intent.status, 201, JSON.stringify(intent.body));
  const consentId = intent.body.Data.ConsentId;
  const verifier = b64url(randomBytes(32));
  const r = await tpp(endpoint('pushed_authorization_request_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: client.redirect_uri,
      scope: 'openid accounts',
      state: b64url(randomBytes(16)),
      nonce: b64url(randomBytes(16)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      claims: JSON.stringify({
        id_token: { openbanking_intent_id: { value: consentId, essential: true } },
      }),
    }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const { request_uri } = await r.json();
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({ client_id: CLIENT_ID, request_uri }).toString();
  return { consentId, url: url.href, verifier };
}


const report = {};

/** Run axe on the page as it is; keep the result; return serious/critical violations. */
async function audit(page, name) {
  await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    }),
  );
  // Guard against a vacuous audit: axe must have evaluated real rules on real content.
  assert.ok(r.passes.length >= 10, `${name}: axe ran only ${r.passes.length} passing rules`);
  report[name] = r.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.join(' ')),
  }));
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

function failures(found) {
  return found.map((v) => `${v.id} (${v.impact}): ${v.help} @ ${v.nodes.map((n) => n.target).join(', ')}`);
}

test('axe-core finds no serious or critical violations on the customer pages', async () => {
  const { url } = await accountAccessRequest();
  // The audit injects axe-core as a script: only the audit context bypasses the CSP.
  const context = await newContext(browser, { bypassCSP: true });
  try {
    const page = await context.newPage();
    const problems = [];
    await page.goto(url);
    await page.waitForURL((u) => u.pathname === '/login');
    problems.push(...failures(await audit(page, 'login')));
    await submitPassword(page, server.kit.customer);
    problems.push(...failures(await audit(page, 'otp')));
    await submitOtp(page, await authenticator.freshCode());
    problems.push(...failures(await audit(page, 'consent-account-access')));
    // An error page: an unknown request_uri.
    await page.goto(`${meta.authorization_endpoint}?client_id=${CLIENT_ID}&request_uri=urn:x`);
    problems.push(...failures(await audit(page, 'error')));
    await page.goto(`${server.kit.issuer}/account/login`);
    problems.push(...failures(await audit(page, 'dashboard-login')));
    await page.fill('#username', server.kit.customer.username);
    await page.fill('#password', server.kit.customer.password);
    await page.click('form button[type=submit]');
    await page.waitForURL((u) => u.pathname === '/account/login/otp');
    await page.fill('#otp', await authenticator.freshCode());
    await page.click('form button[type=submit]');
    await page.waitForURL((u) => u.pathname === '/account');
    problems.push(...failures(await audit(page, 'dashboard')));
    mkdirSync(SCREENSHOTS, { recursive: true });
    writeFileSync(join(SCREENSHOTS, 'axe-report.json'), JSON.stringify(report, null, 2));
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await context.close();
  }
});
