/**
 * The coordination store a config asks for: Redis when `cluster.redis` is set, this
 * process's memory otherwise. Redis is loaded only when configured.
 */
import { ConfigError, type Config } from '../config/schema.js';
import { readOperatorFile } from '../config/sources.js';
import type { Logger } from '../observe/log.js';
import { defaultNodeName, MemoryStore } from './memory.js';
import type { CoordinationStore } from './store.js';

export async function openStore(cluster: Config['cluster'], logger: Logger): Promise<CoordinationStore> {
  const node = cluster.node ?? defaultNodeName();
  if (!cluster.redis) return new MemoryStore({ node, leaseTtlMs: cluster.leaseTtlMs });
  const { RedisStore } = await import('./redis.js');
  const password = cluster.redisPasswordFile
    ? (readOperatorFile('cluster.redisPasswordFile', cluster.redisPasswordFile).toString('utf8').split(/\r?\n/, 1)[0] ?? '')
    : cluster.redisPassword;
  // Unreachable at start-up is the operator's to fix (a wrong URL, Redis not started): exit 2 with the reason.
  return RedisStore.connect({
    url: cluster.redis,
    password,
    ca: cluster.redisCa === undefined ? undefined : readOperatorFile('cluster.redisCa', cluster.redisCa),
    node,
    leaseTtlMs: cluster.leaseTtlMs,
    keyPrefix: cluster.keyPrefix,
    log: logger,
  }).catch((err: unknown) => {
    throw new ConfigError(`cluster.redis: ${(err as Error).message}`, { cause: err });
  });
}
