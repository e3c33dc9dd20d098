// ESM entry of @livermore/perseus-native (hand-written; index.js is the generated CJS loader).
//
// It loads the one native binding through the CommonJS loader, so `import` and `require` in
// one process share a single addon instance (one tokio runtime, one set of classes), and
// re-exports its names. No top-level await; no side effect beyond loading the binary.
//
// Every name is listed explicitly: TRANSITIONS is set by the native module at load time,
// which Node's CJS named-export detection (cjs-module-lexer) cannot see in index.js.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const binding = require('./index.js')

export const PerseusNetwork = binding.PerseusNetwork
export const TRANSITIONS = binding.TRANSITIONS
export const nextState = binding.nextState
export const makeInstanceId = binding.makeInstanceId
export const privateIp = binding.privateIp
export const detectPublicIp = binding.detectPublicIp
/** The diagnostics_channel TracingChannel names (set by the native module at load time). */
export const diagnosticsChannels = binding.diagnosticsChannels
/** Declared by the generated index.d.ts: which artifact the loader loaded ('native' here). */
export const __napiBindingTarget = binding.__napiBindingTarget

export default binding
