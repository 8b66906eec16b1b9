/**
 * How desktops, users and groups may be named, and what to tell someone who names one
 * otherwise: once, for the config file, the users file, the ticket API, the command line
 * and the requests the gateway parses. Names appear in URLs, cookies, ticket claims, logs
 * and close reasons.
 */
import { z } from 'zod';

export const DESKTOP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const DESKTOP_NAME_EXPECTED = 'expected a desktop name: 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit';

/** A websockify token, which names a desktop from a token file: any text a URL can carry, but control characters. */
export const TOKEN = /^[^\p{Cc}]{1,256}$/u;

export const PRINCIPAL_NAME = /^[^\s,\p{Cc}]{1,128}$/u;
export const USER_NAME_EXPECTED = 'expected a user name: 1-128 characters, no spaces, commas or control characters';
const GROUP_NAME_EXPECTED = 'expected a group name: 1-128 characters, no spaces, commas or control characters';

export const desktopName = z.string({ error: 'expected a desktop name' }).regex(DESKTOP_NAME, DESKTOP_NAME_EXPECTED);
export const userName = z.string({ error: 'expected a user name' }).regex(PRINCIPAL_NAME, USER_NAME_EXPECTED);
export const groupName = z.string({ error: 'expected a group name' }).regex(PRINCIPAL_NAME, GROUP_NAME_EXPECTED);
