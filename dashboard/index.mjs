// ESM entry of @livermore/perseus-native/dashboard: the CommonJS implementation, re-exported,
// so `import` and `require` share one module instance.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const dashboard = require('./index.js')

export const createDashboard = dashboard.createDashboard
export default dashboard
