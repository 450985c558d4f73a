// Accessibility of every customer page, checked by axe-core (WCAG 2.1 A/AA rules plus
// best practices) inside the same Chromium: sign-in, security code, the account-access
// consent page with its account checkboxes, an error page, the dashboard sign-in and the
// dashboard itself. Serious and critical violations fail the test; everything axe reports
// is written to screenshots/axe-report.json for the record.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
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
  tracked,
} from './lib/harness.mjs';
import { SandboxTpp } from './lib/tpp.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const CLIENT_ID = 'sandbox-tpp-mtls'; // tls_client_auth: the certificate is the credential

let server;
let browser;
let authenticator;
let tpp;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('accessibility');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  tpp = await SandboxTpp.connect(server, CLIENT_ID);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

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
  const { url } = await tpp.accountAccessRequest();
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
    await page.goto(`${tpp.meta.authorization_endpoint}?client_id=${CLIENT_ID}&request_uri=urn:x`);
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
