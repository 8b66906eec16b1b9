/**
 * The gateway in front of a real TigerVNC server: the RFB handshake and a framebuffer
 * update through the WebSocket, the colour xsetroot painted, a VNC server killed
 * mid-session, and a graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { NOVNC_PIXEL_FORMAT } from '../helpers/rfb-client.js';
import { connectRfb } from '../helpers/ws-client.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';
import { Encoding } from '../../src/rfb/protocol.js';

describe('through the gateway to TigerVNC', () => {
  let red: Xvnc;
  let green: Xvnc;
  let gw: RunningGateway;

  beforeAll(async () => {
    [red, green] = await Promise.all([startXvnc({ width: 320, height: 240 }), startXvnc({ width: 200, height: 100 })]);
    await Promise.all([red.paint('#ff0000'), green.paint('#00c060')]);
    gw = await startGateway({ desktops: [`red=127.0.0.1:${red.port}`, `green=127.0.0.1:${green.port}`], demo: true });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
    await Promise.all([red?.stop(), green?.stop()]);
  });

  async function centrePixel(desktop: string): Promise<{ pixel: number; width: number; height: number }> {
    const { rfb, init, ws, closed } = await connectRfb(gw.wsUrl(desktop));
    rfb.setPixelFormat(NOVNC_PIXEL_FORMAT);
    rfb.setEncodings([Encoding.Raw]);
    rfb.requestUpdate(false);
    await rfb.readUpdate();
    const pixel = rfb.pixel(init.width >> 1, init.height >> 1);
    ws.close(1000);
    expect((await closed).code).toBe(1000);
    return { pixel, width: init.width, height: init.height };
  }

  it('completes the RFB handshake and shows the colour the root window was painted', async () => {
    expect(await centrePixel('red')).toEqual({ pixel: 0xff0000, width: 320, height: 240 });
    expect(await centrePixel('green')).toEqual({ pixel: 0x00c060, width: 200, height: 100 });
  });

  it('closes with 4500 when the VNC server dies mid-session, and keeps serving others', async () => {
    const doomed = await startXvnc();
    const local = await startGateway({ desktops: [`doomed=127.0.0.1:${doomed.port}`, `red=127.0.0.1:${red.port}`] });
    try {
      const session = await connectRfb(local.wsUrl('doomed'));
      const other = await connectRfb(local.wsUrl('red'));
      await doomed.stop('SIGKILL');
      const closed = await session.closed;
      expect(closed.code).toBe(4500);
      expect(closed.reason).toMatch(/^Desktop 'doomed' (closed|broke) the connection/);

      other.rfb.setPixelFormat(NOVNC_PIXEL_FORMAT);
      other.rfb.requestUpdate(false);
      await other.rfb.readUpdate();
      expect(other.rfb.pixel(10, 10)).toBe(0xff0000);
      other.ws.close();
      await other.closed;
    } finally {
      await local.gateway.destroy();
      await doomed.stop('SIGKILL');
    }
  });

  it('closes every session with 1001 on shutdown, then refuses new ones', async () => {
    const local = await startGateway({ desktops: [`red=127.0.0.1:${red.port}`] });
    const sessions = await Promise.all([connectRfb(local.wsUrl('red')), connectRfb(local.wsUrl('red'))]);
    expect(local.gateway.sessions().length).toBe(2);
    const stopping = local.gateway.close();
    for (const s of sessions) expect(await s.closed).toEqual({ code: 1001, reason: 'The gateway is shutting down' });
    await stopping;
    expect(local.gateway.sessions().length).toBe(0);
    await expect(fetch(`${local.httpUrl}/healthz`)).rejects.toThrow();
  });
});
