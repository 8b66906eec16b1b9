/** The Origin check on the WebSocket upgrade: refused with HTTP 403, before any WebSocket or TCP connection. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/processes.js';
import { startPeer, type Peer } from '../helpers/tcp-peers.js';
import { upgradeStatus } from '../helpers/ws-client.js';

describe('Origin check', () => {
  let canary: Peer;
  let gw: RunningGateway;
  let strict: RunningGateway;

  beforeAll(async () => {
    canary = await startPeer();
    const desktops = [`canary=127.0.0.1:${canary.port}`];
    gw = await startGateway({ desktops, allowedOrigins: ['https://console.example.com'] });
    strict = await startGateway({ desktops, requireOrigin: true });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
    await strict?.gateway.destroy();
    await canary?.close();
  });

  it('accepts its own origin, configured origins, and clients that send none', async () => {
    expect(await upgradeStatus(gw.wsUrl('canary'), { origin: `http://127.0.0.1:${gw.port}` })).toBe(101);
    expect(await upgradeStatus(gw.wsUrl('canary'), { origin: 'https://CONSOLE.example.com:443' })).toBe(101);
    expect(await upgradeStatus(gw.wsUrl('canary'))).toBe(101);
  });

  it('refuses foreign and malformed origins with 403, and never connects to the desktop', async () => {
    await waitFor(() => gw.gateway.sessions().length === 0, 'earlier sessions to end');
    const before = canary.accepted;
    for (const origin of ['https://evil.example', `https://127.0.0.1:${gw.port}`, `http://127.0.0.1:${gw.port + 1}`, 'null', 'not a url', 'file://x']) {
      expect(await upgradeStatus(gw.wsUrl('canary'), { origin }), origin).toBe(403);
    }
    expect(canary.accepted).toBe(before);
  });

  it('refuses a missing Origin when requireOrigin is set', async () => {
    expect(await upgradeStatus(strict.wsUrl('canary'))).toBe(403);
    expect(await upgradeStatus(strict.wsUrl('canary'), { origin: `http://127.0.0.1:${strict.port}` })).toBe(101);
  });
});
