/** A gateway started in-process on an ephemeral loopback port, logs silenced. */
import { parseConfig, type ConfigInput } from '../../src/config.js';
import { createGateway, type Gateway } from '../../src/gateway.js';

export interface RunningGateway {
  gateway: Gateway;
  port: number;
  httpUrl: string;
  /** The WebSocket URL for a desktop name, or any raw query string when it starts with '?'. */
  wsUrl(desktopOrQuery: string): string;
}

export async function startGateway(input: ConfigInput = {}): Promise<RunningGateway> {
  const config = parseConfig({ listen: '127.0.0.1:0', log: { level: 'silent' }, ...input });
  const gateway = await createGateway(config);
  const { port } = await gateway.listen();
  return {
    gateway,
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: (what) =>
      `ws://127.0.0.1:${port}/websockify${what.startsWith('?') ? what : `?desktop=${encodeURIComponent(what)}`}`,
  };
}
