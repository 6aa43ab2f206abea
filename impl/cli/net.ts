/**
 * Small network helpers that the commands starting local nodes (`dht cluster`, `dht verify`)
 * and the end-to-end tests share: a one-shot RESP PING and free loopback ports.
 */
import * as net from "node:net"

/** RESP PING on a fresh connection; true if +PONG came back within a second. */
export const pingOnce = (host: string, port: number, timeoutMs = 1000): Promise<boolean> =>
  new Promise((done) => {
    const socket = net.connect({ host, port })
    let reply = ""
    const finish = (ok: boolean) => {
      socket.destroy()
      done(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.on("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"))
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1")
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"))
    })
    socket.on("error", () => finish(false))
  })

/** `count` distinct ports that were free a moment ago. */
export const freePorts = async (count: number, host = "127.0.0.1"): Promise<Array<number>> => {
  const servers: Array<net.Server> = []
  const ports: Array<number> = []
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject)
        server.listen(0, host, () => resolve())
      })
      ports.push((server.address() as net.AddressInfo).port)
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  }
  return ports
}
