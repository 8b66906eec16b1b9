/** A gateway started in-process on an ephemeral loopback port, logs silenced unless a logger is given. */
import { parseConfig, type ConfigInput } from '../../src/config/schema.js';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway.js';

export interface RunningGateway {
  gateway: Gateway;
  port: number;
  /** http://127.0.0.1:PORT, or https:// when the config has tls. */
  httpUrl: string;
  /** The WebSocket URL (ws:// or wss://) for a desktop name, or any raw query string when it starts with '?'. */
  wsUrl(desktopOrQuery: string): string;
}

export async function startGateway(input: ConfigInput = {}, options: GatewayOptions = {}): Promise<RunningGateway> {
  const config = parseConfig({ listen: '127.0.0.1:0', log: { level: 'silent' }, ...input });
  const gateway = await createGateway(config, options);
  const { port } = await gateway.listen();
  const s = config.tls ? 's' : '';
  return {
    gateway,
    port,
    httpUrl: `http${s}://127.0.0.1:${port}`,
    wsUrl: (what) => `ws${s}://127.0.0.1:${port}/websockify${what.startsWith('?') ? what : `?desktop=${encodeURIComponent(what)}`}`,
  };
}
