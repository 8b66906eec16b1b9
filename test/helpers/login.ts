/** The login form as a person fills it in, in a browser page that shows it. */
import type { Page, Response } from 'playwright-core';

/** Fill in and send the login form; resolves with the response the browser lands on. */
export async function submitLogin(page: Page, user: string, password: string): Promise<Response | null> {
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  const [response] = await Promise.all([page.waitForNavigation(), page.click('form.login button[type="submit"]')]);
  return response;
}
