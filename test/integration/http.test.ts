/** The HTTP routes: pages, health, browser code, and what they refuse. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send, type Reply } from '../helpers/http-client.js';

describe('HTTP routes', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({ desktops: ['lab1=127.0.0.1:1'], demo: true });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  /** A request for a path sent exactly as given, no client-side normalisation. */
  const get = (path: string, method = 'GET'): Promise<Reply> => send(`${gw.httpUrl}${path}`, { method });

  it('answers /healthz and /readyz', async () => {
    expect(await get('/healthz')).toMatchObject({ status: 200, body: '{"status":"ok"}' });
    expect(await get('/readyz')).toMatchObject({ status: 200, body: '{"status":"ready"}' });
  });

  it('serves the dashboard and the viewer with a strict content security policy', async () => {
    for (const path of ['/', '/view/lab1']) {
      const reply = await get(path);
      expect(reply.status, path).toBe(200);
      expect(reply.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(reply.headers['content-security-policy']).toContain("script-src 'self'");
      expect(reply.headers['content-security-policy']).toContain("frame-ancestors 'self'");
      expect(reply.headers['referrer-policy']).toBe('no-referrer');
      expect(reply.headers['cache-control']).toBe('no-store');
    }
    expect((await get('/view/lab1')).body).toContain('data-desktop="lab1"');
  });

  it('answers 404 for an unknown desktop page', async () => {
    expect((await get('/view/nosuch')).status).toBe(404);
  });

  it("serves noVNC's modules from the npm package and the viewer's own code", async () => {
    const rfb = await get('/novnc/core/rfb.js');
    expect(rfb.status).toBe(200);
    expect(rfb.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(rfb.body).toContain('export default class RFB');
    expect((await get('/novnc/vendor/pako/lib/zlib/inflate.js')).status).toBe(200);
    expect((await get('/static/viewer.js')).body).toContain("from '../novnc/core/rfb.js'");
  });

  it('names an icon on every page, and answers /favicon.ico with it', async () => {
    for (const path of ['/', '/view/demo']) expect((await get(path)).body).toMatch(/<link rel="icon" href="(\.\/|\.\.\/)static\/favicon\.svg"/);
    const icon = await get('/static/favicon.svg');
    expect(icon).toMatchObject({ status: 200, headers: expect.objectContaining({ 'content-type': 'image/svg+xml' }) });
    expect((await get('/favicon.ico')).body).toBe(icon.body);
  });

  it('refuses path traversal, dot-files and files outside the served folders', async () => {
    for (const path of [
      '/novnc/core/../package.json',
      '/novnc/core/%2e%2e/package.json',
      '/novnc/core/..%2fpackage.json',
      '/novnc/package.json',
      '/novnc/core/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/static/../pages.ts',
      '/static/..%5c..%5cpackage.json',
      '/static/.hidden.js',
      '/static/%00.js',
      '/static//etc/passwd',
    ]) {
      expect((await get(path)).status, path).toBe(/%2f|%5c/i.test(path) ? 400 : 404); // an encoded slash: a malformed URL
    }
  });

  it('answers 400 for a malformed percent-encoding and 405 for other methods', async () => {
    expect((await get('/view/%E0%A4%A')).status).toBe(400);
    const post = await get('/', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('stops accepting connections once closed', async () => {
    const local = await startGateway({ desktops: ['lab1=127.0.0.1:1'] });
    expect((await fetch(`${local.httpUrl}/readyz`)).status).toBe(200);
    await local.gateway.close();
    await expect(fetch(`${local.httpUrl}/readyz`)).rejects.toThrow();
  });
});
