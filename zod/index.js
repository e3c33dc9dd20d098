'use strict';
// @livermore/perseus-native/zod — zod schemas of the shapes the addon reads and writes, for
// services that read `perseus:activity`, `perseus:network:state` or a heartbeat key without
// the addon, and for applications that validate before they call it.
//
// `zod` is an optional peer dependency (^3.25.0 || ^4.0.0): this file uses only the API the two
// majors share (z.object/string/number/boolean/null/enum/array/record(key, value), .optional,
// .nullable, .int, .min, .max, .regex, .refine), so the application's own zod builds them and
// `z.infer<typeof XSchema>` is the type `X` of index.d.ts (proved by __test__/zod-types.test.mjs
// with both majors). Unknown keys are stripped (zod's default), as the addon ignores them.

const { z } = require('zod');

// Written out (not a variable) so tsc infers the literal union from this JS file.
const InstanceStateSchema = z.enum(['idle', 'registering', 'running', 'draining', 'dead']);
/** ISO 8601 date-time as the addon writes it (`toISOString()`-like; an offset is accepted). */
const IsoSchema = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})$/, 'an ISO 8601 date-time');
const StreamIdSchema = z.string().regex(/^\d+-\d+$/, 'a stream ID <ms>-<seq>');
const MsSchema = z.number().int().min(0);
const FIELD_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const SCHEMA_FIELDS = new Set(['instanceId', 'event', 'exchange', 'exchangeId', 'fromState', 'toState', 'reason', 'publicIp', 'hostname', 'ts']);
const utf8Length = (s) => Buffer.byteLength(s, 'utf8');

const InstanceHealthSchema = z.object({
  redisRttMs: z.number().min(0),
  eventLoopLagMs: z.number().min(0),
  rssBytes: z.number().min(0),
});

const InstanceInfoSchema = z.object({
  instanceId: z.string().min(1),
  hostname: z.string(),
  exchangeId: MsSchema,
  exchangeName: z.string(),
  publicIp: z.string().nullable(),
  privateIp: z.string().nullable(),
  pid: z.number().int().min(0),
  version: z.string(),
  state: InstanceStateSchema,
  registeredAt: z.string(),
  lastStateChange: z.string(),
  metadata: z.record(z.string(), z.string()),
  alive: z.boolean(),
  lastHeartbeat: MsSchema.nullable(),
  health: InstanceHealthSchema.nullable(),
});

const ActivityEntrySchema = z.object({
  id: StreamIdSchema,
  time: MsSchema,
  instanceId: z.string(),
  event: z.string(),
  exchange: z.string(),
  exchangeId: z.number().int().nullable(),
  fromState: InstanceStateSchema.optional(),
  toState: InstanceStateSchema.optional(),
  reason: z.string().optional(),
  publicIp: z.string().optional(),
  hostname: z.string().optional(),
  ts: z.string(),
  fields: z.record(z.string(), z.string()),
});

const ActivityInputSchema = z.object({
  event: z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'an event name of /^[A-Z][A-Z0-9_]{0,63}$/'),
  reason: z.string().max(1024).optional(),
  fromState: InstanceStateSchema.optional(),
  toState: InstanceStateSchema.optional(),
  fields: z.record(z.string().regex(FIELD_KEY, 'a field name of [A-Za-z0-9_.:-]{1,64}'), z.string())
    .refine((f) => Object.keys(f).length <= 64, 'at most 64 fields')
    .refine((f) => Object.keys(f).every((k) => !SCHEMA_FIELDS.has(k)), 'a field name that shadows a schema field')
    .refine((f) => Object.values(f).every((v) => utf8Length(v) <= 8192), 'field values of at most 8192 bytes')
    .optional(),
  idempotencyKey: z.string().regex(/^[\x21-\x7e]{1,128}$/, '1-128 printable ASCII characters, no whitespace').optional(),
});

const DrainRequestSchema = z.object({
  instanceId: z.string().min(1),
  reason: z.string().nullable(),
  requestedBy: z.string().min(1),
  at: IsoSchema,
});

const CountsSchema = z.object({
  idle: MsSchema,
  registering: MsSchema,
  running: MsSchema,
  draining: MsSchema,
  dead: MsSchema,
});

const NetworkStateSchema = z.object({
  updatedAt: IsoSchema,
  updatedBy: z.string().min(1),
  instances: z.array(InstanceInfoSchema),
  counts: CountsSchema,
});

const HeartbeatPayloadSchema = z.object({
  lastBeat: MsSchema,
  state: InstanceStateSchema,
  exchange: z.string(),
  eventLoopLagMs: z.number().min(0).optional(),
  redisRttMs: z.number().min(0).optional(),
  rssBytes: z.number().min(0).optional(),
});

const SweeperLeaseSchema = z.object({
  instanceId: z.string().min(1),
  expiresInMs: z.number().min(0),
});

// The dashboard's JSON bodies (API.md "The dashboard").
/** `GET /api/instances` */
const DashboardInstancesSchema = z.array(InstanceInfoSchema);
/** `GET /api/activity` (also each SSE `activity` event's data) */
const DashboardActivitySchema = z.array(ActivityEntrySchema);
/** `GET /api/network` */
const DashboardNetworkSchema = z.object({
  counts: CountsSchema,
  alive: MsSchema,
  streamLength: MsSchema,
  sweeper: SweeperLeaseSchema.nullable(),
  redis: z.enum(['connected', 'disconnected']),
});
/** Every JSON error answer (400/401/403/404/409/421/502/503). */
const DashboardErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
/** `POST /api/instances/:id/drain` request body. */
const DashboardDrainBodySchema = z.object({ reason: z.string().nullable().optional() });

module.exports = {
  InstanceStateSchema,
  InstanceHealthSchema,
  InstanceInfoSchema,
  ActivityEntrySchema,
  ActivityInputSchema,
  DrainRequestSchema,
  NetworkStateSchema,
  HeartbeatPayloadSchema,
  SweeperLeaseSchema,
  DashboardInstancesSchema,
  DashboardActivitySchema,
  DashboardNetworkSchema,
  DashboardErrorSchema,
  DashboardDrainBodySchema,
};
