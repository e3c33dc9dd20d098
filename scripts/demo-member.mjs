// One network member for the demo: starts, reports its id, drains on "drain" from stdin.
import { createRequire } from 'node:module'
const { PerseusNetwork } = createRequire(import.meta.url)('../index.js')

const net = new PerseusNetwork(JSON.parse(process.argv[2]))
const info = await net.start()
process.stdout.write(JSON.stringify({ started: info.instanceId }) + '\n')
process.stdin.setEncoding('utf8')
process.stdin.on('data', async (line) => {
  if (line.trim() === 'drain') {
    await net.close()
    process.stdout.write(JSON.stringify({ drained: info.instanceId }) + '\n')
    process.stdin.pause()
  }
})
