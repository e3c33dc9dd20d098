// ESM entry of @livermore/perseus-native/zod: the CommonJS implementation, re-exported, so
// `import` and `require` share one set of schemas (built with the application's zod).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const schemas = require('./index.js')

export const InstanceStateSchema = schemas.InstanceStateSchema
export const InstanceHealthSchema = schemas.InstanceHealthSchema
export const InstanceInfoSchema = schemas.InstanceInfoSchema
export const ActivityEntrySchema = schemas.ActivityEntrySchema
export const ActivityInputSchema = schemas.ActivityInputSchema
export const DrainRequestSchema = schemas.DrainRequestSchema
export const NetworkStateSchema = schemas.NetworkStateSchema
export const HeartbeatPayloadSchema = schemas.HeartbeatPayloadSchema
export const SweeperLeaseSchema = schemas.SweeperLeaseSchema
export const DashboardInstancesSchema = schemas.DashboardInstancesSchema
export const DashboardActivitySchema = schemas.DashboardActivitySchema
export const DashboardNetworkSchema = schemas.DashboardNetworkSchema
export const DashboardErrorSchema = schemas.DashboardErrorSchema
export const DashboardDrainBodySchema = schemas.DashboardDrainBodySchema
export default schemas
