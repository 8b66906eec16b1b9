/**
 * Ad-hoc targets (`?target=host:port`): strict parsing and the operator's allow rules.
 * Deny by default: without rules nothing is reachable, and link-local (cloud metadata),
 * unspecified addresses and the gateway's own port stay closed unless a rule names them.
 */
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

export interface HostPort {
  host: string;
  port: number;
}

const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
/** A last label that is all digits or hex: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`. */
const NUMERIC_LAST_LABEL = /(^|\.)(0x[0-9a-f]*|\d+)\.?$/i;

/**
 * A host name or canonical IP literal. Numeric spellings that resolvers would quietly turn
 * into addresses (decimal, octal, hex, shortened dotted forms) are rejected, so what is
 * checked against the rules is exactly what is connected to.
 */
export function isValidHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  return DNS_NAME.test(host) && !NUMERIC_LAST_LABEL.test(host);
}

/** Parse `host:port` or `[v6]:port`. Returns undefined for anything else. */
export function parseHostPort(text: string, options: { allowPortZero?: boolean } = {}): HostPort | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  if (match[1] !== undefined && isIP(host) !== 6) return undefined;
  if (!isValidHost(host)) return undefined;
  if (port > 65535 || (port === 0 && !options.allowPortZero)) return undefined;
  return { host, port };
}

export interface AllowRuleSpec {
  cidr: string;
  ports: { from: number; to: number };
}

interface CompiledRule {
  addresses: BlockList;
  from: number;
  to: number;
  /** The rule's network itself lies in a range that is otherwise always closed. */
  namesSensitiveRange: boolean;
}

/** Always closed unless a rule lies inside one of them: then the operator named it. */
const SENSITIVE_RANGES = [
  { network: '169.254.0.0', prefix: 16, family: 'ipv4' }, // link-local, incl. cloud metadata 169.254.169.254
  { network: '0.0.0.0', prefix: 8, family: 'ipv4' }, // "this network": 0.0.0.0 connects to the local host
  { network: 'fe80::', prefix: 10, family: 'ipv6' },
  { network: '::', prefix: 128, family: 'ipv6' },
] as const;

const SENSITIVE = new BlockList();
for (const range of SENSITIVE_RANGES) SENSITIVE.addSubnet(range.network, range.prefix, range.family);

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export class TargetPolicy {
  readonly #rules: CompiledRule[];
  readonly #ownAddresses: BlockList;

  constructor(rules: readonly AllowRuleSpec[]) {
    this.#rules = rules.map(compileRule);
    this.#ownAddresses = localAddresses();
  }

  get enabled(): boolean {
    return this.#rules.length > 0;
  }

  /**
   * Whether a resolved IP address and port may be connected to. `gatewayPort` is the port
   * the request came in on, so the gateway cannot be made to connect to itself.
   */
  allows(address: string, port: number, gatewayPort: number): boolean {
    const ip = normalizeAddress(address);
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (port === gatewayPort && (LOOPBACK.check(ip, family) || this.#ownAddresses.check(ip, family))) return false;
    const sensitive = SENSITIVE.check(ip, family);
    return this.#rules.some(
      (rule) => port >= rule.from && port <= rule.to && rule.addresses.check(ip, family) && (!sensitive || rule.namesSensitiveRange),
    );
  }
}

function compileRule(rule: AllowRuleSpec): CompiledRule {
  const [network = '', bits = '0'] = rule.cidr.split('/');
  const prefix = Number(bits);
  const family = isIP(network) === 6 ? 'ipv6' : 'ipv4';
  const addresses = new BlockList();
  addresses.addSubnet(network, prefix, family);
  const namesSensitiveRange = SENSITIVE_RANGES.some((range) => {
    if (range.family !== family || prefix < range.prefix) return false;
    const inside = new BlockList();
    inside.addSubnet(range.network, range.prefix, range.family);
    return inside.check(network, family);
  });
  return { addresses, from: rule.ports.from, to: rule.ports.to, namesSensitiveRange };
}

/** `::ffff:10.0.0.1` is the IPv4 address 10.0.0.1 and must meet the IPv4 rules. */
export function normalizeAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hexMapped?.[1] && hexMapped[2]) {
    const high = parseInt(hexMapped[1], 16);
    const low = parseInt(hexMapped[2], 16);
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
  }
  return address;
}

function localAddresses(): BlockList {
  const list = new BlockList();
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) list.addAddress(normalizeAddress(info.address), info.family === 'IPv6' ? 'ipv6' : 'ipv4');
  }
  return list;
}
