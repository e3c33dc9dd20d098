// Hand-written declarations of @livermore/perseus-native/dashboard (see API.md "The dashboard").
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { PerseusNetwork } from '../index.js'

export interface DashboardOptions {
  /** Default true: no drain/forget controls; the action routes answer 403. */
  readOnly?: boolean
  /** Required on every request when set (header `Authorization: Bearer <token>`, or the
   *  page's login form); compared in constant time. Required when readOnly is false. */
  token?: string
  /** Where it is mounted, e.g. '/ops/perseus'. Default ''. */
  basePath?: string
  /** Host names (the `Host` header, without port) the dashboard answers when it has no token.
   *  Default: `localhost`, `127.0.0.1`, `[::1]` and the address it is bound to. Other hosts get
   *  421 — a page elsewhere cannot read the network through DNS rebinding. With a token set,
   *  every host is answered (the token decides). */
  allowedHosts?: string[]
}

/** Tuning beyond API.md's options (kept apart so `Required<DashboardOptions>` stays as
 *  the contract has it). */
export interface DashboardTuning {
  /** Live (SSE) viewers served at once; more get 503. Default 32. */
  maxSseClients?: number
  /** The network's heartbeat TTL, which the page draws heartbeat ages against. Default 45000. */
  heartbeatTtlMs?: number
  /** How often the shared poll re-reads the instance list while anyone watches. Default 1000. */
  pollIntervalMs?: number
  /** Activity searches (`/api/activity?q=` or `exchange=`) run at once; 16 more wait, further
   *  ones get 503. Default 2. */
  maxSearches?: number
}

/** The handler returned by createDashboard. */
export interface DashboardHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void
  /** Ends every live stream and drops the shared subscription. */
  close(): void
  /** Live viewers connected, and whether the one shared subscription is held. */
  stats(): { clients: number; listening: boolean; polling: boolean }
}

/** A Node request handler (http.createServer, Express, Fastify's raw handler, Connect):
 *  the page, its JSON/SSE API and /metrics, served from files inside the package — no CDN. */
export function createDashboard(network: PerseusNetwork, options?: DashboardOptions & DashboardTuning): DashboardHandler
