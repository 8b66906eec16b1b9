/**
 * Ad-hoc targets (`?target=host:port`): strict parsing and the operator's allow rules.
 * Deny by default: without rules nothing is reachable, and link-local (cloud metadata),
 * unspecified addresses and the gateway's own port stay closed unless a rule names them.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { CidrSet, contains, parseCidr, type Cidr } from '../net/cidr.js';

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
  addresses: CidrSet;
  from: number;
  to: number;
  /** The rule's network itself lies in a range that is otherwise always closed. */
  namesSensitiveRange: boolean;
}

/** Always closed unless a rule lies inside one of them: then the operator named it. */
const SENSITIVE_RANGES: readonly Cidr[] = [
  '169.254.0.0/16', // link-local, incl. cloud metadata 169.254.169.254
  '0.0.0.0/8', // "this network": 0.0.0.0 connects to the local host
  'fe80::/10',
  '::/128',
].map(parseCidr);

const SENSITIVE = new CidrSet(SENSITIVE_RANGES);
const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

export class TargetPolicy {
  readonly #rules: CompiledRule[];
  readonly #ownAddresses: CidrSet;

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
    if (port === gatewayPort && (LOOPBACK.has(address) || this.#ownAddresses.has(address))) return false;
    const sensitive = SENSITIVE.has(address);
    return this.#rules.some(
      (rule) => port >= rule.from && port <= rule.to && rule.addresses.has(address) && (!sensitive || rule.namesSensitiveRange),
    );
  }
}

function compileRule(rule: AllowRuleSpec): CompiledRule {
  const block = parseCidr(rule.cidr);
  const namesSensitiveRange = SENSITIVE_RANGES.some((range) => contains(range, block));
  return { addresses: new CidrSet([block]), from: rule.ports.from, to: rule.ports.to, namesSensitiveRange };
}

function localAddresses(): CidrSet {
  const set = new CidrSet();
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) set.addAddress(info.address);
  }
  return set;
}
