/**
 * deskgate inside a host application: the three examples (node:http, Express 5, Fastify 5)
 * run as a person would run them, each with deskgate below /remote beside the host's own
 * routes and body parsers; and the contract they rely on, in-process: `handleRequest(req,
 * res, next)` passes on what is not its own, `handleUpgrade` says whether it took an upgrade,
 * and a body a host consumed is never a wrong password.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { createGateway, type Gateway } from '../../src/gateway.js';
import { cookieFrom, logIn, loginSetCookie, writeUsers } from '../helpers/auth.js';
import { form, send } from '../helpers/http-client.js';
import { waitFor, within } from '../helpers/processes.js';
import { newApiKey, requestTicket } from '../helpers/tickets.js';
import { closeOpenedSockets, openDesktop, tryUpgrade } from '../helpers/ws-client.js';

const PASSWORD = 'the-example-password-1';
const apiKey = newApiKey();

afterAll(() => closeOpenedSockets());

interface Example {
  readonly origin: string;
  stop(): Promise<void>;
}

/** `node examples/NAME.js` on an ephemeral port, once it says where it listens. */
async function startExample(name: string): Promise<Example> {
  const script = fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));
  const child: ChildProcess = spawn(process.execPath, [script], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', EXAMPLE_PASSWORD: PASSWORD, EXAMPLE_API_KEY: apiKey.key, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'close');
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await within(10_000, `examples/${name}.js to stop`, exited);
  };
  try {
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`examples/${name}.js exited with ${child.exitCode}:\n${output}`);
      return /^Listening on /m.test(output);
    }, `examples/${name}.js to listen`);
  } catch (err) {
    await stop();
    throw err;
  }
  const origin = /^Listening on (http:\/\/\S+?)\/ /m.exec(output)?.[1] as string;
  return { origin, stop };
}

/** What each host answers to a path it does not know. */
const HOST_NOT_FOUND: Record<string, RegExp> = {
  'node-http': /Not found in the host application/,
  express: /Cannot GET \/nope/,
  fastify: /Route GET:\/nope not found/,
};

describe.each(['node-http', 'express', 'fastify'])('examples/%s.js, deskgate below /remote', (name) => {
  let example: Example | undefined;
  let origin: string;
  let remote: string;

  beforeAll(async () => {
    example = await startExample(name);
    origin = example.origin;
    remote = `${origin}/remote`;
  });
  afterAll(async () => {
    await example?.stop();
  });

  it('leaves the host its routes and its 404, and is ready once mounted', async () => {
    expect((await send(`${origin}/hello`)).body).toBe('Hello from the host application\n');
    const unknown = await send(`${origin}/nope`);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatch(HOST_NOT_FOUND[name] as RegExp);
    expect((await send(`${remote}/readyz`)).status).toBe(200);
    const dashboard = await send(`${origin}/remote`);
    expect(dashboard.status).toBe(303);
  });

  it("logs in with the right password beside the host's body parsers; a wrong one gets 401 and does not lock it out", async () => {
    for (let i = 0; i < 3; i++) expect((await logIn(remote, 'demo', 'not-the-password')).status).toBe(401);
    const login = await logIn(remote, 'demo', PASSWORD, { next: 'view/demo' });
    expect(login.status).toBe(303);
    expect(new URL(login.headers.location ?? '', `${remote}/login`).href).toBe(`${remote}/view/demo`);
    expect(loginSetCookie(login)).toMatch(/; Path=\/remote;/);
    if (name === 'node-http') return;
    // The host's own parsers still parse the host's bodies.
    const json = await send(`${origin}/echo`, { headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' });
    expect(JSON.parse(json.body)).toEqual({ a: 1 });
    expect(JSON.parse((await send(`${origin}/echo`, form({ b: '2' }))).body)).toEqual({ b: '2' });
  });

  it('issues tickets, with links below /remote that open the desktop', async () => {
    const issued = await requestTicket(remote, apiKey, { desktop: 'demo', user: 'alice' });
    expect(issued.url).toMatch(/^\/remote\/view\/demo\?ticket=/);
    expect((await send(`${origin}${issued.url}`)).status).toBe(200);
    await openDesktop(`${origin.replace('http', 'ws')}/remote/websockify?desktop=demo&ticket=${encodeURIComponent(issued.ticket)}`);
  });

  it('opens a session over the WebSocket below /remote, and leaves other upgrades to the host', async () => {
    const cookie = cookieFrom(await logIn(remote, 'demo', PASSWORD));
    const ws = origin.replace('http', 'ws');
    await openDesktop(`${ws}/remote/websockify?desktop=demo`, { headers: cookie });
    if (name === 'node-http') {
      const echo = new WebSocket(`${ws}/echo`);
      await once(echo, 'open');
      echo.send('ping');
      const [reply] = (await once(echo, 'message')) as [Buffer];
      expect(reply.toString()).toBe('ping');
      echo.close();
    } else {
      await expect(tryUpgrade(`${ws}/elsewhere`)).rejects.toThrow();
    }
  });
});

describe('handleRequest(req, res, next) and handleUpgrade, at the root of a host', () => {
  let gateway: Gateway;
  let host: Server;
  let url: string;
  const hostAnswered: string[] = [];
  const upgrades: { url: string | undefined; taken: boolean }[] = [];

  beforeAll(async () => {
    gateway = await createGateway(parseConfig({ demo: true, log: { level: 'silent' } }));
    host = createServer((req, res) =>
      gateway.handleRequest(req, res, () => {
        hostAnswered.push(`${req.method} ${req.url}`);
        res.end('the host application');
      }),
    );
    host.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const taken = gateway.handleUpgrade(req, socket, head);
      upgrades.push({ url: req.url, taken });
      if (!taken) socket.end('HTTP/1.1 418 I am a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await gateway?.destroy();
    await new Promise((resolve) => host?.close(resolve));
  });

  it("passes on every path and method that is not the gateway's, and answers its own", async () => {
    for (const [method, path] of [
      ['GET', '/hello'],
      ['POST', '/host-form'],
      ['GET', '/static/not-a-file.js'],
      ['GET', '/novnc/app/ui.js'],
      ['GET', '/login'], // no login page without password mode: the host may have its own
      ['GET', '/other%zz'],
    ] as const) {
      const reply = await send(`${url}${path}`, { method });
      expect([reply.status, reply.body], `${method} ${path}`).toEqual([200, 'the host application']);
    }
    expect(hostAnswered).toContain('POST /host-form');
    expect((await send(`${url}/healthz`)).status).toBe(200);
    expect((await send(`${url}/`)).body).toContain('href="view/demo"');
    expect((await send(`${url}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('takes the WebSocket to its own path and returns false, touching nothing, for the others', async () => {
    await openDesktop(`${url.replace('http', 'ws')}/websockify?desktop=demo`);
    const other = await tryUpgrade(`${url.replace('http', 'ws')}/host-socket`);
    expect(other.status).toBe(418);
    // curl --http2 offers h2c on every request: on the gateway's pages it is answered as the plain request it also is.
    const h2c = { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA' };
    expect((await send(`${url}/healthz`, { headers: h2c })).status).toBe(200);
    expect((await send(`${url}/hello`, { headers: h2c })).status).toBe(418);
    expect(upgrades).toEqual([
      { url: '/websockify?desktop=demo', taken: true },
      { url: '/host-socket', taken: false },
      { url: '/healthz', taken: true },
      { url: '/hello', taken: false },
    ]);
  });
});

describe('a host whose body parser ran before deskgate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-embed-'));
  const usersFile = join(dir, 'users.yaml');
  let gateway: Gateway;
  let host: Server;
  let url: string;

  /** Reads the body itself, then hands the request on with what a parser of `kind` leaves in req.body. */
  async function parseFirst(req: IncomingMessage & { body?: unknown }, res: ServerResponse): Promise<void> {
    const kind = req.headers['x-test-parser'];
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const raw = Buffer.concat(chunks);
    if (kind === 'buffer') req.body = raw;
    if (kind === 'text') req.body = raw.toString();
    if (kind === 'form') req.body = Object.fromEntries(new URLSearchParams(raw.toString()));
    if (kind === 'json') req.body = JSON.parse(raw.toString());
    gateway.handleRequest(req, res);
  }

  beforeAll(async () => {
    await writeUsers(usersFile, { alice: { password: PASSWORD } });
    gateway = await createGateway(
      parseConfig({
        demo: true,
        auth: { mode: 'password', usersFile },
        tickets: { secret: 'a-ticket-secret-of-at-least-32-characters', apiKeys: [apiKey.hash] },
        log: { level: 'silent' },
      }),
    );
    host = createServer((req, res) => {
      if (!req.headers['x-test-parser']) return gateway.handleRequest(req, res);
      parseFirst(req, res).catch((err: unknown) => res.destroy(err as Error));
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await gateway?.destroy();
    await new Promise((resolve) => host?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const login = (password: string, parser: string) => {
    const { body, headers } = form({ user: 'alice', password });
    return send(`${url}/login`, { body, headers: { ...headers, 'X-Test-Parser': parser } });
  };

  it('takes the login form from what the parser left: an object, text or bytes', async () => {
    for (const parser of ['form', 'text', 'buffer']) expect((await login(PASSWORD, parser)).status, parser).toBe(303);
    expect((await login('wrong', 'form')).status).toBe(401);
  });

  it('refuses, saying what to change, when the parser left nothing, and never counts it as a failed login', async () => {
    for (let i = 0; i < 8; i++) {
      const refused = await login(PASSWORD, 'none');
      expect(refused.status).toBe(500);
      expect(refused.body).toMatch(/read by another handler before deskgate.*mount deskgate before .*express\.urlencoded\(\)/);
    }
    expect((await login(PASSWORD, 'form')).status).toBe(303);
  });

  it('takes the ticket request from a JSON parser, and refuses as the API refuses when there is nothing', async () => {
    const ask = (parser: string) =>
      send(`${url}/api/tickets`, {
        headers: { Authorization: `Bearer ${apiKey.key}`, 'Content-Type': 'application/json', 'X-Test-Parser': parser },
        body: JSON.stringify({ desktop: 'demo', user: 'bob' }),
      });
    expect((await ask('json')).status).toBe(201);
    expect((await ask('text')).status).toBe(201);
    const refused = await ask('none');
    expect(refused.status).toBe(500);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'DG_ERR_BODY_CONSUMED' });
  });
});
