// Connection authentication: a bearer token, generated with the OS CSPRNG when the user gives none. Every WebSocket
// upgrade must present it — in the `Authorization: Bearer` header, or a `token` query parameter for clients that
// cannot set headers (browsers). A loopback engine without a token would still be reachable from any web page the
// user opens (browsers let pages open ws://127.0.0.1), so there is no "no auth" mode.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison (hashing first makes the lengths equal, so the length does not leak either). */
export function tokenMatches(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

export type AuthOutcome = { ok: true } | { ok: false; reason: string };

/** Checks an upgrade request's token; the reason is sent back in the HTTP 401 body. */
export function checkUpgradeAuth(req: IncomingMessage, expected: string): AuthOutcome {
  const header = req.headers.authorization;
  let given: string | undefined;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return { ok: false, reason: 'malformed Authorization header: expected "Authorization: Bearer <token>"' };
    given = m[1];
  } else {
    const url = new URL(req.url ?? '/', 'http://localhost');
    given = url.searchParams.get('token') ?? undefined;
  }
  if (given === undefined || given === '') {
    return {
      ok: false,
      reason: 'no token: send "Authorization: Bearer <token>" or connect to ...?token=<token>; heed serve prints the token and writes it to its server.json',
    };
  }
  if (!tokenMatches(expected, given)) return { ok: false, reason: 'invalid token: it does not match the token this server was started with (see its server.json)' };
  return { ok: true };
}
