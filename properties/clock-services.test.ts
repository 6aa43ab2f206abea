/**
 * The RESP server (impl/node/resp-server.ts) and the TCP peer transport (impl/node/transport.ts)
 * take their time from the clock they are given (the `NodeClock` service of
 * impl/node/runtime.ts), never from the process. Each is built here over a fake clock set to a
 * time far from the real one (2001), which moves only when the test moves it and fires a timer
 * only when the test says so:
 *
 *  - RESP: relative expiries (SET EX/PX, PEXPIRE, GETEX PX) are counted from the fake time,
 *    PTTL/TTL and GET judge a value's expiry at the fake time, and INFO's uptime is fake time
 *    elapsed since the server started.
 *  - Transport: the reconnect after a lost connection is a timer on the fake clock at
 *    now + reconnectMinMs (twice that after a refused attempt), and no reconnect happens until
 *    the test fires it;
 *    a peer away for dropAfterDisconnectedMs of fake time has its messages dropped; an inbound
 *    connection without Hello is closed when the fake clock reaches now + 5000 ms, not before.
 *  - Driver: its ticks keep a fixed cadence (a late tick does not push the later ones back),
 *    and after a pause they restart from now, without a burst of missed ticks.
 *  - Neither source reads `Date.now` or sets a timer of its own (as properties/driver-clock.test.ts
 *    checks of the driver).
 */
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import * as net from "node:net"
import { Effect, Either } from "effect"
import { Redis } from "ioredis"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientOp, ClientResult, PeerMessage } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import * as Config from "../impl/node/config.ts"
import { Driver } from "../impl/node/driver.ts"
import * as Store from "../impl/node/store.ts"
import type { Log } from "../impl/node/log.ts"
import * as RespServer from "../impl/node/resp-server.ts"
import type { Cancel, ClockShape } from "../impl/node/runtime.ts"
import * as Transport from "../impl/node/transport.ts"
import { config as machineConfig } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/** 2001-09-09T01:46:40Z: years before the real clock, so that no real reading passes for it. */
const FAKE_EPOCH = 1_000_000_000_000

interface FakeTimer {
  readonly at: number
  readonly fn: () => void
  done: boolean
}

/** A clock that moves only by `advance`, which runs the timers then due, earliest first. */
class FakeClock implements ClockShape {
  private time: number
  /** Every timer ever scheduled, in order of scheduling. */
  readonly timers: Array<FakeTimer> = []

  constructor(start: number) {
    this.time = start
  }

  readonly now = (): number => this.time

  readonly schedule = (at: number, fn: () => void): Cancel => {
    const timer: FakeTimer = { at, fn, done: false }
    this.timers.push(timer)
    return () => {
      timer.done = true
    }
  }

  /** Timers scheduled for `at`, neither fired nor cancelled. */
  pendingAt(at: number): ReadonlyArray<FakeTimer> {
    return this.timers.filter((t) => !t.done && t.at === at)
  }

  advance(ms: number): void {
    this.time += ms
    for (;;) {
      const due = this.timers
        .filter((t) => !t.done && t.at <= this.time)
        .sort((a, b) => a.at - b.at)[0]
      if (due === undefined) return
      due.done = true
      due.fn()
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Poll `condition` (real time) until it holds; fail after `ms`. */
const until = async (what: string, condition: () => boolean, ms = 5000): Promise<void> => {
  const deadline = performance.now() + ms
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

const config = (input: Omit<Config.Input, "id">): Config.Config =>
  Either.getOrThrow(Config.make({ id: "n0", store: "memory", n: 1, r: 1, w: 1, ...input }))

const logTo = (lines: Array<string>): Log => ({
  info: (m) => lines.push(m),
  warn: (m) => lines.push(m),
  error: (m) => lines.push(m),
})

// ---------------------------------------------------------------------------------------------
// RESP server

test("the RESP server's expiries, TTLs, reads at now and uptime follow the clock it is given", async () => {
  const clock = new FakeClock(FAKE_EPOCH)
  /** The machine's answer to every GET: one value that expires 5 s after the fake epoch. */
  const stored = Version.update(
    Version.empty,
    [],
    { value: "v", ts: 1, exp: FAKE_EPOCH + 5000 },
    "n0",
  )
  const puts: Array<ClientOp & { _tag: "Put" }> = []
  const submit = (op: ClientOp, onResult: (result: ClientResult) => void): void => {
    if (op._tag === "Put") {
      puts.push(op)
      onResult({
        _tag: "PutOk",
        context: [["n0", 1]],
        dot: ["n0", 1],
        existed: true,
        previous: { value: "v" },
      })
    } else if (op._tag === "Get") onResult({ _tag: "GetOk", obj: stored })
  }
  const cfg = config({
    members: [{ id: "n0", peerAddress: { host: "127.0.0.1", port: 1 } }],
    client: { host: "127.0.0.1", port: 0 },
  })
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* RespServer.make({
          config: cfg,
          log: logTo([]),
          clock,
          submit,
          operator: () => {},
          status: () => ({}),
          starting: () => false,
          info: () => [],
        })
        yield* Effect.promise(async () => {
          const redis = new Redis({
            host: "127.0.0.1",
            port: server.listening.port,
            enableReadyCheck: false,
            maxRetriesPerRequest: 0,
          })
          try {
            // Relative expiries are counted from the fake time.
            assert.equal(await redis.call("SET", "k", "v", "PX", "1500"), "OK")
            assert.equal(await redis.call("SET", "k", "v", "EX", "7"), "OK")
            assert.equal(await redis.call("PEXPIRE", "k", "250"), 1)
            assert.equal(await redis.call("GETEX", "k", "PX", "40"), "v")
            assert.deepEqual(
              puts.map((p) => p.exp),
              [FAKE_EPOCH + 1500, FAKE_EPOCH + 7000, FAKE_EPOCH + 250, FAKE_EPOCH + 40],
            )
            // The stored value expires 5 s after the fake epoch: alive now by the fake clock
            // (long expired by the real one).
            assert.equal(await redis.call("PTTL", "k"), 5000)
            assert.equal(await redis.call("TTL", "k"), 5)
            assert.equal(await redis.call("GET", "k"), "v")
            assert.equal(await redis.call("EXISTS", "k"), 1)
            assert.match(String(await redis.call("INFO", "server")), /uptime_in_seconds:0\r\n/)
            // 90 s later by the fake clock (no real time passes): expired, and up 90 s.
            clock.advance(90_000)
            assert.equal(await redis.call("PTTL", "k"), -2)
            assert.equal(await redis.call("GET", "k"), null)
            assert.equal(await redis.call("EXISTS", "k"), 0)
            assert.match(String(await redis.call("INFO", "server")), /uptime_in_seconds:90\r\n/)
          } finally {
            redis.disconnect()
          }
        })
      }),
    ),
  )
})

// ---------------------------------------------------------------------------------------------
// Transport

const heartbeat: PeerMessage = { _tag: "Heartbeat" }

test("the TCP transport's reconnect backoff, away time and Hello timeout are timers and readings of the clock it is given", async () => {
  const clock = new FakeClock(FAKE_EPOCH)
  // A peer that accepts every connection and closes it at once.
  let accepted = 0
  const peer = net.createServer((socket) => {
    accepted++
    socket.destroy()
  })
  await new Promise<void>((resolve) => peer.listen(0, "127.0.0.1", resolve))
  const peerPort = (peer.address() as net.AddressInfo).port
  const lines: Array<string> = []
  const reconnectMinMs = 20
  const cfg = config({
    members: [
      { id: "n0", peerAddress: { host: "127.0.0.1", port: 0 } },
      { id: "n1", peerAddress: { host: "127.0.0.1", port: peerPort } },
    ],
    peer: { host: "127.0.0.1", port: 0 },
    reconnectMinMs,
    reconnectMaxMs: 2000,
    dropAfterDisconnectedMs: 2000,
  })
  try {
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const transport = yield* Transport.make({
            config: cfg,
            log: logTo(lines),
            clock,
            onMessage: () => {},
          })
          yield* Effect.promise(async () => {
            // Reconnect: the lost connection is retried by a timer at now + reconnectMinMs on
            // the fake clock, and by nothing else.
            await until("the first connection", () => accepted === 1)
            await until("the reconnect timer", () => {
              return clock.pendingAt(FAKE_EPOCH + reconnectMinMs).length === 1
            })
            await sleep(10 * reconnectMinMs)
            assert.equal(accepted, 1, "reconnected without the fake clock firing its timer")
            assert.equal(transport.peers()[0]?.connected, false)
            // Messages to a peer away for less than dropAfterDisconnectedMs of fake time queue.
            transport.send(NodeId("n1"), heartbeat)
            assert.equal(transport.stats().dropped, 0)
            clock.advance(reconnectMinMs)
            await until("the second connection", () => accepted === 2)
            // That connection was made (and lost): the backoff starts again at reconnectMinMs,
            // from the fake time the timer fired at.
            await until("the second reconnect timer", () => {
              return clock.pendingAt(FAKE_EPOCH + 2 * reconnectMinMs).length === 1
            })
            await sleep(10 * reconnectMinMs)
            assert.equal(accepted, 2)
            // The peer goes away for good: the next attempt is refused, and the one after it
            // waits twice as long on the fake clock.
            await new Promise<void>((resolve) => peer.close(() => resolve()))
            clock.advance(reconnectMinMs)
            await until("the refused attempt's retry timer", () => {
              return clock.pendingAt(FAKE_EPOCH + 4 * reconnectMinMs).length === 1
            })
            await sleep(10 * reconnectMinMs)
            assert.equal(accepted, 2)
            const before = transport.stats().dropped

            // Away bookkeeping: 2.5 s of fake time later the peer has been away longer than
            // dropAfterDisconnectedMs, so what is queued for it and what is sent to it are dropped.
            clock.advance(2500)
            transport.send(NodeId("n1"), heartbeat)
            assert.ok(transport.stats().dropped > before, JSON.stringify(transport.stats()))

            // Hello timeout: an inbound connection that says nothing is closed once the fake
            // clock reaches now + 5000 ms, not before.
            const silent = net.connect(transport.listening.port, "127.0.0.1")
            let closed = false
            silent.on("error", () => {})
            silent.on("close", () => {
              closed = true
            })
            await until("the inbound connection", () => transport.stats().inboundConnections === 1)
            const helloAt = clock.now() + 5000
            assert.equal(clock.pendingAt(helloAt).length, 1, "no Hello timer at now + 5000")
            await sleep(100)
            assert.equal(closed, false)
            assert.equal(transport.stats().rejectedConnections, 0)
            clock.advance(4999)
            await sleep(20)
            assert.equal(closed, false)
            clock.advance(1)
            await until("the silent connection to be closed", () => closed)
            assert.equal(transport.stats().rejectedConnections, 1)
            assert.ok(
              lines.some((l) => l.includes("no Hello within 5000 ms")),
              lines.join("\n"),
            )
          })
        }),
      ),
    )
  } finally {
    if (peer.listening) await new Promise<void>((resolve) => peer.close(() => resolve()))
  }
})

test("the RESP server's and the transport's sources read no clock and set no timer but the one they are given", () => {
  for (const file of ["resp-server.ts", "transport.ts"]) {
    const source = readFileSync(new URL(`../impl/node/${file}`, import.meta.url), "utf8")
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "")
    for (const banned of [
      "Date.now",
      "new Date",
      "performance.now",
      "setTimeout",
      "clearTimeout",
      "setInterval",
    ]) {
      assert.ok(!code.includes(banned), `impl/node/${file} uses ${banned}`)
    }
  }
})

test("driver: ticks keep a fixed cadence however late a tick runs, and restart from now after a pause", () => {
  const TICK = 100
  const clock = new FakeClock(FAKE_EPOCH)
  const ticks: Array<number> = []
  const driver = new Driver({
    machine: machineConfig,
    store: Store.makeMemory(),
    clock,
    tickMs: TICK,
    log: { info: () => {}, warn: () => {}, error: () => {} },
    send: () => {},
    onFatal: (reason) => assert.fail(`driver stopped: ${reason}`),
    onRemoved: () => {},
  })
  const nextTick = (): number => {
    const pending = clock.timers.filter((t) => !t.done).map((t) => t.at)
    ticks.push(Math.min(...pending))
    return ticks[ticks.length - 1]!
  }
  try {
    assert.equal(nextTick(), FAKE_EPOCH + TICK)
    // Each tick runs 30 ms late (a busy event loop): the next is still due a period after the
    // previous one was due, not a period after it ran.
    for (let k = 1; k <= 5; k++) {
      clock.advance(TICK + (k === 1 ? 30 : 0))
      assert.equal(nextTick(), FAKE_EPOCH + (k + 1) * TICK, `tick ${k} drifted`)
    }
    // A pause of ten periods: no burst of missed ticks; the cadence restarts from now.
    const before = clock.timers.length
    clock.advance(10 * TICK)
    const now = FAKE_EPOCH + 5 * TICK + 30 + 10 * TICK
    assert.equal(nextTick(), now + TICK)
    assert.equal(clock.timers.length - before, 1, "one tick after the pause, not a burst")
  } finally {
    driver.stop()
  }
})
