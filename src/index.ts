/** deskgate as a library: build a config, create a gateway, mount or listen. */
export { createGateway, type Gateway, type GatewayOptions } from './gateway.js';
export { parseConfig, ConfigError, type Config, type ConfigInput } from './config/schema.js';
export { GatewayError, ERRORS, CLOSE, type ErrorCode } from './errors.js';
export { events } from './observe/events.js';
export type { Logger, LogMethod } from './observe/log.js';
export type { SessionSnapshot } from './sessions/snapshot.js';
export { startDemoDesktop, type DemoDesktop, type DemoDesktopOptions } from './demo/server.js';
