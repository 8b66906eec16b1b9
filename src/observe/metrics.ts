/**
 * Prometheus metrics (prom-client), fed by the lifecycle events like the log is: nothing on
 * the relay's hot path counts anything. Counts that live sessions hold (open sessions, bytes
 * relayed so far) are read from the sessions when Prometheus scrapes. One registry per
 * gateway, so two gateways in one process keep their own. The README's metrics table lists
 * every name below; a test holds the two to each other.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SessionSnapshot } from '../sessions/snapshot.js';
import { events } from './events.js';

/** Connects and handshakes are loopback-fast or WAN-slow: 1 ms to 10 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface Metrics {
  readonly registry: Registry;
  /** The exposition text, as GET /metrics answers it. */
  text(): Promise<string>;
  stop(): void;
}

export function createMetrics(gateway: object, sessions: () => SessionSnapshot[]): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const mine =
    <T extends { gateway: object }>(count: (message: T) => void) =>
    (message: T): void => {
      if (message.gateway === gateway) count(message);
    };

  new Gauge({
    name: 'deskgate_sessions_open',
    help: 'Sessions open now, by desktop and role (control or view).',
    labelNames: ['desktop', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const session of sessions()) this.inc({ desktop: session.desktop, role: session.viewOnly ? 'view' : 'control' });
    },
  });
  const started = new Counter({
    name: 'deskgate_sessions_started_total',
    help: 'Sessions bridged to their VNC server, by desktop.',
    labelNames: ['desktop'],
    registers: [registry],
  });
  const ended = new Counter({
    name: 'deskgate_sessions_ended_total',
    help: 'Sessions ended, by close code and by who ended them (browser, upstream, gateway).',
    labelNames: ['code', 'by'],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'deskgate_sessions_refused_total',
    help: 'Sessions refused, before the WebSocket (HTTP status) or before the relay (close code), by catalogue error.',
    labelNames: ['error'],
    registers: [registry],
  });
  const requestsRefused = new Counter({
    name: 'deskgate_requests_refused_total',
    help: 'Pages, forms and API requests refused, by catalogue error.',
    labelNames: ['error'],
    registers: [registry],
  });
  // Bytes of ended sessions, plus what the live ones have relayed so far: a counter that only grows.
  const endedBytes = { to_upstream: 0, to_browser: 0 };
  const reported = { to_upstream: 0, to_browser: 0 };
  new Counter({
    name: 'deskgate_relayed_bytes_total',
    help: 'Bytes relayed, by direction: to_upstream (browser to VNC) and to_browser.',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      const total = { ...endedBytes };
      for (const session of sessions()) {
        total.to_upstream += session.bytesToUpstream;
        total.to_browser += session.bytesToBrowser;
      }
      for (const direction of ['to_upstream', 'to_browser'] as const) {
        // A session that ended since the last scrape moved its bytes from live to ended: the sum never shrinks.
        this.inc({ direction }, Math.max(0, total[direction] - reported[direction]));
        reported[direction] = Math.max(reported[direction], total[direction]);
      }
    },
  });
  const connect = new Histogram({
    name: 'deskgate_upstream_connect_seconds',
    help: 'Time to connect to the VNC server (TCP, and TLS for tls-first desktops).',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const handshake = new Histogram({
    name: 'deskgate_rfb_handshake_seconds',
    help: 'Time of the RFB handshake, from connected to relaying.',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const logins = new Counter({
    name: 'deskgate_logins_total',
    help: 'Login form posts, by result (succeeded, failed).',
    labelNames: ['result'],
    registers: [registry],
  });
  const tickets = new Counter({ name: 'deskgate_tickets_issued_total', help: 'One-time tickets issued by POST /api/tickets.', registers: [registry] });
  const adminActions = new Counter({
    name: 'deskgate_admin_actions_total',
    help: 'Sessions an administrator ended or changed, by action.',
    labelNames: ['action'],
    registers: [registry],
  });

  const stops = [
    events.sessionStarted.subscribe(
      mine((m) => {
        started.inc({ desktop: m.desktop });
        connect.observe(m.connectMs / 1000);
        handshake.observe(m.handshakeMs / 1000);
      }),
    ),
    events.sessionEnded.subscribe(
      mine((m) => {
        ended.inc({ code: String(m.code), by: m.by });
        endedBytes.to_upstream += m.bytesToUpstream;
        endedBytes.to_browser += m.bytesToBrowser;
      }),
    ),
    events.upgradeRefused.subscribe(mine((m) => refused.inc({ error: m.code }))),
    events.sessionRefused.subscribe(mine((m) => refused.inc({ error: m.error }))),
    events.requestRefused.subscribe(mine((m) => requestsRefused.inc({ error: m.code }))),
    events.loggedIn.subscribe(mine(() => logins.inc({ result: 'succeeded' }))),
    events.loginFailed.subscribe(mine(() => logins.inc({ result: 'failed' }))),
    events.ticketIssued.subscribe(mine(() => tickets.inc())),
    events.adminAction.subscribe(mine((m) => adminActions.inc({ action: m.action }))),
  ];

  return {
    registry,
    text: () => registry.metrics(),
    stop() {
      for (const stop of stops) stop();
      registry.clear();
    },
  };
}
