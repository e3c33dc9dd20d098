// Hand-written declarations of @livermore/perseus-native/otel (see API.md, third round).
import type { TracerProvider, MeterProvider } from '@opentelemetry/api'
import type { PerseusNetwork } from '../index.js'

export interface InstrumentOptions {
  /** Default: the global one. */
  tracerProvider?: TracerProvider
  /** Default: the global one. */
  meterProvider?: MeterProvider
}

/** Spans (database semantic conventions for Redis where they apply) and metrics
 *  (`db.client.operation.duration`, plus the families of `metrics()` as observable
 *  instruments) for one network. Depends on `@opentelemetry/api` only (optional peer).
 *  `disable()` unsubscribes everything; it is idempotent. */
export function instrument(network: PerseusNetwork, options?: InstrumentOptions): { disable(): void }
