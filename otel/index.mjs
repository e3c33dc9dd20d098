// ESM entry of @livermore/perseus-native/otel: the CommonJS implementation, re-exported, so
// `import` and `require` share one module instance.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const otel = require('./index.js')

export const instrument = otel.instrument
export default otel
