// `npm run demo`: a live Perseus network in ~10 seconds — the operator CLI's demo command
// (`perseus demo`, bin/lib/demo.mjs): three members in child processes, one killed and detected
// by the others' sweeper, the rest drained, then the activity log.
// Uses REDIS_URL when set, else starts a throwaway redis-server on a free port.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../bin/perseus.mjs', import.meta.url))
const child = spawn(process.execPath, [cli, 'demo', ...process.argv.slice(2)], { stdio: 'inherit' })
// Ctrl-C reaches the child too (same process group): it cleans up and exits by itself.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => child.kill('SIGTERM'))
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
