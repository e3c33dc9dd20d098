// A live Perseus network in ~10 seconds: three members in child processes, one killed and
// detected by the others' sweeper, the rest drained, then the activity log.
// Uses REDIS_URL when set, else starts a throwaway redis-server on a free port.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { startStandalone } from './redis.mjs'

const { PerseusNetwork } = createRequire(import.meta.url)('../index.js')
const member = fileURLToPath(new URL('./demo-member.mjs', import.meta.url))
const step = (msg) => console.log(`\n▶ ${msg}`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function main() {
  let server = null
  let redisUrl = process.env.REDIS_URL
  if (!redisUrl) {
    step('starting a throwaway redis-server')
    server = await startStandalone()
    redisUrl = server.url
  }
  const keyPrefix = `perseus-demo-${Date.now()}`
  const timing = { heartbeatIntervalMs: 200, heartbeatTtlMs: 600, sweepIntervalMs: 2000 }
  console.log(`  Redis ${redisUrl.replace(/\/\/[^@]*@/, '//***@')}, key prefix ${keyPrefix}`)

  // An observer that never starts: it only listens and queries.
  const observer = new PerseusNetwork({ redisUrl, keyPrefix, exchangeId: 0, exchangeName: 'observer', publicIp: false, logLevel: 'warn' })
  const lostAt = new Map()
  observer
    .on('instanceJoined', (i) => console.log(`  + joined  ${i.instanceId}`))
    .on('instanceLost', (i) => { lostAt.set(i.instanceId, Date.now()); console.log(`  ✖ lost    ${i.instanceId}`) })
    .on('instanceLeft', (i) => console.log(`  - left    ${i.instanceId}`))
  await sleep(300)

  step('starting three members (200 ms heartbeat, 600 ms TTL) in child processes')
  const exchanges = [['coinbase', 1], ['kraken', 2], ['binance', 3]]
  const members = []
  for (const [name, id] of exchanges) {
    const opts = { redisUrl, keyPrefix, exchangeId: id, exchangeName: name, publicIp: false, logLevel: 'warn', ...timing }
    const child = spawn(process.execPath, [member, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'inherit'] })
    const lines = createInterface({ input: child.stdout })
    const [first] = await once(lines, 'line')
    members.push({ child, lines, id: JSON.parse(first).started, name })
  }
  await sleep(500)
  await table(observer)

  const victim = members[1]
  step(`killing ${victim.name} (SIGKILL: no drain, its heartbeat just stops)`)
  const killedAt = Date.now()
  victim.child.kill('SIGKILL')
  const deadline = Date.now() + 5000
  while (!lostAt.has(victim.id) && Date.now() < deadline) await sleep(20)
  if (!lostAt.has(victim.id)) throw new Error('the death was not detected within 5 s')
  console.log(`  detected ${lostAt.get(victim.id) - killedAt} ms after the kill (TTL ${timing.heartbeatTtlMs} ms), one HEARTBEAT_LOST entry`)
  await table(observer)

  step('draining the other two')
  for (const m of members.filter((m) => m !== victim)) {
    m.child.stdin.write('drain\n')
    await once(m.child, 'exit')
  }
  await sleep(300)

  step('activity log')
  for (const e of await observer.queryActivity({ limit: 100 })) {
    const detail = e.fromState ? `${e.fromState} → ${e.toState}` : (e.reason ?? '')
    const by = e.fields.reporter ? ` (reported by ${e.fields.reporter})` : ''
    console.log(`  ${new Date(e.time).toISOString().slice(11, 23)}  ${e.event.padEnd(14)} ${e.exchange.padEnd(9)} ${detail}${by}`)
  }
  await observer.close()
  if (server) await server.stop()
  step('done')
}

async function table(net) {
  const rows = await net.listInstances({ includeDead: true })
  console.log('  instance                                    exchange  state     alive')
  for (const i of rows.sort((a, b) => a.exchangeId - b.exchangeId)) {
    console.log(`  ${i.instanceId.padEnd(43)} ${i.exchangeName.padEnd(9)} ${i.state.padEnd(9)} ${i.alive ? 'yes' : 'no'}`)
  }
}

main().catch((e) => {
  console.error(`demo failed: ${e.message}`)
  process.exit(1)
})
