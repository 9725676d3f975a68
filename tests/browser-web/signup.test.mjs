// Sign-up in the web client: refused (and told so) while the server's registration is
// closed, the default; with `open_registration` on, a new person signs up, lands in the
// app, and can sign in again with the password they chose.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, shot, seriousViolations } from './harness.mjs';

const servers = [];
let browser;
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

async function signUp(page, user, password, name) {
  await page.goto('/');
  await page.getByRole('button', { name: 'No account? Sign up' }).click();
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Display name').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign up', exact: true }).click();
}

test('a closed server says so, and signs nobody up', async () => {
  const server = await startServer();
  servers.push(server);
  browser = await launch();
  const page = await newPage(browser, server.base);
  await signUp(page, 'dora@example.com', 'dora-pw', 'Dora');
  await page.getByRole('alert').filter({ hasText: 'registration is closed' }).waitFor();
  assert.equal(await page.getByText('Signed in as').count(), 0);
  await page.context().close();
});

test('an open server signs a new person up and in', async () => {
  const server = await startServer({ CONFER_OPEN_REGISTRATION: 'true' });
  servers.push(server);
  const page = await newPage(browser, server.base);
  await page.goto('/');
  await page.getByRole('button', { name: 'No account? Sign up' }).click();
  await shot(page, 'sign-up-desktop');
  assert.deepEqual(await seriousViolations(page), []);
  await signUp(page, 'dora@example.com', 'dora-pw', 'Dora');
  await page.getByText('Signed in as dora@example.com').waitFor();
  await page.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  // Signing out ends the token; the chosen password signs in again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('User').fill('dora@example.com');
  await page.getByLabel('Password').fill('dora-pw');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as dora@example.com').waitFor();
  // The same login cannot be taken twice.
  const other = await newPage(browser, server.base);
  await signUp(other, 'dora@example.com', 'x', 'Not Dora');
  await other.getByRole('alert').filter({ hasText: 'that login is taken' }).waitFor();
  await other.context().close();
  await page.context().close();
});
