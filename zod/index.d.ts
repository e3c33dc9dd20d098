// Hand-written declarations of @livermore/perseus-native/zod (see API.md, third round).
//
// Each schema is declared as `z.ZodType<T>` so one declaration serves zod 3.25 and zod 4 (the
// optional peer's two majors): `z.infer<typeof XSchema>` is exactly `X` of the root types, and
// `.parse`/`.safeParse` return it. That the implementation's own inferred types equal these is
// proved by __test__/zod-types.test.mjs (tsc over zod/index.js with each major).
import type { z } from 'zod'
import type {
  ActivityEntry, ActivityInput, DrainRequest, HeartbeatPayload, InstanceHealth, InstanceInfo,
  InstanceState, NetworkState, SweeperLease,
} from '../index.js'

export declare const InstanceStateSchema: z.ZodType<InstanceState>
export declare const InstanceHealthSchema: z.ZodType<InstanceHealth>
export declare const InstanceInfoSchema: z.ZodType<InstanceInfo>
export declare const ActivityEntrySchema: z.ZodType<ActivityEntry>
export declare const ActivityInputSchema: z.ZodType<ActivityInput>
export declare const DrainRequestSchema: z.ZodType<DrainRequest>
export declare const NetworkStateSchema: z.ZodType<NetworkState>
/** The JSON in `<keyPrefix>:heartbeat:<instanceId>`. */
export declare const HeartbeatPayloadSchema: z.ZodType<HeartbeatPayload>
export declare const SweeperLeaseSchema: z.ZodType<SweeperLease>

// ─── The dashboard's JSON bodies ───────────────────────────────────────────────
/** `GET /api/network` (the contract's fields; the dashboard may send more, which parse strips). */
export interface DashboardNetwork {
  counts: Record<InstanceState, number>
  alive: number
  streamLength: number
  sweeper: SweeperLease | null
  redis: 'connected' | 'disconnected'
}
/** Every JSON error answer. */
export interface DashboardError { error: { code: string; message: string } }
/** `POST /api/instances/:id/drain` request body. */
export interface DashboardDrainBody { reason?: string | null }

/** `GET /api/instances` */
export declare const DashboardInstancesSchema: z.ZodType<InstanceInfo[]>
/** `GET /api/activity` */
export declare const DashboardActivitySchema: z.ZodType<ActivityEntry[]>
export declare const DashboardNetworkSchema: z.ZodType<DashboardNetwork>
export declare const DashboardErrorSchema: z.ZodType<DashboardError>
export declare const DashboardDrainBodySchema: z.ZodType<DashboardDrainBody>
