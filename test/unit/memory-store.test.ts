import { describe } from 'vitest';
import { MemoryStore } from '../../src/coordination/memory.js';
import { storeContract } from '../helpers/store-contract.js';

describe('memory coordination store', () => {
  storeContract({
    distinctNodes: false,
    async nodes(leaseTtlMs) {
      const store = new MemoryStore({ node: 'solo', leaseTtlMs });
      return [store, store];
    },
  });
});
