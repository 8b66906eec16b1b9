/**
 * Password mode's users: a YAML file of argon2id hashes and groups, read at start-up and
 * again on SIGHUP. A user removed from the file loses access at the next request, since
 * login cookies are checked against the file each time.
 */
import { z } from 'zod';
import { FileError } from '../config/schema.js';
import { readOperatorFile } from '../config/sources.js';
import { groupName, userName } from '../config/names.js';

const ARGON2ID_HASH = /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

const usersFileSchema = z.strictObject({
  users: z.record(
    userName,
    z.strictObject({
      password: z.string().regex(ARGON2ID_HASH, 'expected an argon2id hash (deskgate hash-password prints one)'),
      groups: z.array(groupName).default([]),
    }),
  ),
});

export interface User {
  readonly name: string;
  readonly passwordHash: string;
  readonly groups: readonly string[];
}

// @node-rs/argon2 is a native module: loaded only by the commands and modes that hash.
const argon2 = () => import('@node-rs/argon2');

/** OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane (the library's defaults, pinned here). */
const HASH_OPTIONS = { algorithm: 2 /* Argon2id */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

interface Cost {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export async function hashPassword(password: string, cost: Cost = HASH_OPTIONS): Promise<string> {
  return (await argon2()).hash(password, { ...HASH_OPTIONS, ...cost });
}

/** The cost parameters a hash was made with: `$argon2id$v=19$m=…,t=…,p=…$…`. */
function costOf(hash: string): Cost {
  const [, m, t, p] = /\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(hash) ?? [];
  return { memoryCost: Number(m), timeCost: Number(t), parallelism: Number(p) };
}

export class UserDirectory {
  #users = new Map<string, User>();
  readonly #file: string;
  /** Checked when the user does not exist, with the file's own cost: a wrong name takes as long as a wrong password. */
  #decoyHash: Promise<string> | undefined;

  private constructor(file: string) {
    this.#file = file;
  }

  static async load(file: string): Promise<UserDirectory> {
    const directory = new UserDirectory(file);
    await directory.reload();
    return directory;
  }

  get size(): number {
    return this.#users.size;
  }

  get(name: string): User | undefined {
    return this.#users.get(name);
  }

  /** Re-read the file; on any error the current users stay in place and the error is thrown. */
  async reload(): Promise<void> {
    this.#users = await readUsersFile(this.#file);
    const sample = this.#users.values().next().value?.passwordHash;
    this.#decoyHash = hashPassword('deskgate decoy password', sample ? costOf(sample) : undefined);
    this.#decoyHash.catch(() => {}); // awaited, and its error seen, at the first unknown name
  }

  /** The user, if the password is theirs. Takes the same time for unknown users. */
  async verify(name: string, password: string): Promise<User | undefined> {
    const { verify } = await argon2();
    const user = this.#users.get(name);
    if (!user) {
      await verify(await (this.#decoyHash as Promise<string>), password);
      return undefined;
    }
    return (await verify(user.passwordHash, password)) ? user : undefined;
  }
}

async function readUsersFile(file: string): Promise<Map<string, User>> {
  const text = readOperatorFile('auth.usersFile', file).toString('utf8');
  const { parse } = await import('yaml');
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new FileError('auth.usersFile', file, `users file ${file} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  const result = usersFileSchema.safeParse(data);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(file)'}: ${issue.message}`);
    throw new FileError('auth.usersFile', file, `users file ${file} is not valid:\n${problems.join('\n')}`);
  }
  const users = new Map<string, User>();
  for (const [name, entry] of Object.entries(result.data.users)) users.set(name, { name, passwordHash: entry.password, groups: entry.groups });
  return users;
}
