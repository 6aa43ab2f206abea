/**
 * The real driver (impl/node/driver.ts) over the real LMDB store (impl/node/store.ts), wired by
 * the runtime's own `startNode` (impl/node/runtime.ts), under Effect's TestClock. The fast suites
 * otherwise never load the driver (the simulator has its own executor), so this is where the
 * durability ordering of real nodes is checked below the end-to-end suites.
 *
 * Three nodes, each built from the memory layers (`Runtime.layerMemory`): the node clock on
 * TestClock, a MemoryNetwork that holds every peer message until the schedule delivers or drops
 * it, and, in place of the memory store, a fresh LMDB store in a temporary directory, wrapped so
 * that a write becomes durable (its promise resolves) only once LMDB has flushed it and the
 * schedule says so, in the order writes were issued (as LMDB's group commits do). fast-check
 * generates the replication (N=3 AP, or N=2 CP where writes are forwarded) and the schedule:
 * client SET, DEL and GET at any node, delivery or loss of any message in flight, writes of a
 * node becoming durable, and TestClock.adjust by amounts that fire ticks, forward timers and
 * request deadlines.
 *
 * Checked, with every release of a Send or a Reply recorded against the writes made durable:
 *  (a) KV-1: nothing leaves a node ahead of a write before it. A Send or Reply released inside a
 *      step of its node (synchronously) while a write that node issued earlier is not durable
 *      breaks the executor's rule, whatever it carries; and what a write causes waits for that
 *      write: a WriteRequest leaves only once the coordinator's own copy is durable, a WriteAck
 *      once the replica's copy is, and a PutOk (to the client, or to a forwarder) once W nodes
 *      hold the write durably.
 *  (b) DUR-1: every acknowledged SET or DEL was durable on W nodes when it was acknowledged (so
 *      no crash after that point can lose it; no crash is simulated here: LMDB cannot be made to
 *      forget a flushed write), is read back by a quorum GET after the network heals, and is
 *      still on W stores after they are closed and opened again from disk.
 *  (c) The driver's time is TestClock's: a timer never fires before TestClock reaches its
 *      deadline, none is left overdue after an adjust, a request fails by its deadline no sooner
 *      than requestTimeoutMs after it began, and the driver never reads Date.now nor sets a timer
 *      of its own (a trap on Date.now, setTimeout and setInterval while a driver steps, and a
 *      look at its source).
 *
 * Negative control: the same correct driver over a store that acknowledges every write as durable
 * the moment it is issued (`acknowledgedAtOnce`, a `Store` layer of this test: it answers
 * "already durable" while the write is still pending on the gated LMDB store) fails (a) at the
 * first write that is followed by a send.
 */
import assert from "node:assert/strict"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Clock, Effect, Either, Layer, TestClock, TestContext } from "effect"
import fc from "fast-check"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientOp, ClientResult, PeerMessage } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import * as Config from "../impl/node/config.ts"
import type { Driver } from "../impl/node/driver.ts"
import type { Log } from "../impl/node/log.ts"
import * as Runtime from "../impl/node/runtime.ts"
import * as Store from "../impl/node/store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

const NODES = 3
const KEYS = ["a", "b", "c"]
const TICK_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
/** TestClock starts here, not at 0, so that the machine sees plausible wall-clock times. */
const EPOCH = Date.UTC(2025, 0, 1)
const ids = Array.from({ length: NODES }, (_, i) => NodeId(`n${i}`))

// ---------------------------------------------------------------------------------------------
// Schedules

type Step =
  | { readonly _tag: "Set" | "Del" | "Get"; readonly node: number; readonly key: number }
  | { readonly _tag: "Deliver" | "Drop"; readonly pick: number }
  | { readonly _tag: "DeliverAll" }
  | { readonly _tag: "Durable"; readonly node: number; readonly count: number }
  | { readonly _tag: "Advance"; readonly ms: number }

const nodeArb = fc.nat(NODES - 1)
const keyArb = fc.nat(KEYS.length - 1)
const clientArb = (tag: "Set" | "Del" | "Get") =>
  fc.record({ _tag: fc.constant(tag), node: nodeArb, key: keyArb })

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: clientArb("Set") },
  { weight: 1, arbitrary: clientArb("Del") },
  { weight: 2, arbitrary: clientArb("Get") },
  { weight: 4, arbitrary: fc.record({ _tag: fc.constant("Deliver" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Drop" as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.constant({ _tag: "DeliverAll" as const }) },
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Durable" as const),
      node: nodeArb,
      count: fc.integer({ min: 1, max: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Advance" as const),
      // Short steps, steps past a tick and the forward timer, and steps past a deadline.
      ms: fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 1, max: 400 }) },
        { weight: 2, arbitrary: fc.integer({ min: 400, max: 1500 }) },
        { weight: 1, arbitrary: fc.integer({ min: REQUEST_TIMEOUT_MS, max: 2600 }) },
      ),
    }),
  },
)

const MAX_STEPS = 60
const scheduleArb = fc.array(stepArb, { minLength: 1, maxLength: MAX_STEPS })

/**
 * Replication: every node a replica of every key (N=3, the default); or N=2 in CP mode, where a
 * node outside a key's preference list forwards its writes (claim, grant, response) and quorums
 * are strict.
 */
interface Replication {
  readonly n: number
  readonly r: number
  readonly w: number
  readonly mode: "ap" | "cp"
}

const replicationArb: fc.Arbitrary<Replication> = fc.constantFrom<Replication>(
  { n: 3, r: 2, w: 2, mode: "ap" },
  { n: 2, r: 1, w: 2, mode: "cp" },
)

// ---------------------------------------------------------------------------------------------
// One node's view, as the test keeps it

/** What a node holds durably: what its writes left once their promises resolved. */
interface Image {
  readonly objects: Map<string, Version.Obj>
  /** "owner\0key" -> hinted object. */
  readonly hints: Map<string, Version.Obj>
}

interface PendingWrite {
  readonly what: string
  /** LMDB's own promise: committed and flushed. */
  readonly real: Promise<void>
  readonly apply: (image: Image) => void
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

interface Timer {
  readonly at: number
}

interface NodeView {
  readonly id: NodeId
  readonly dataDir: string
  readonly durable: Image
  /** Writes issued and not yet durable, oldest first. */
  readonly pending: Array<PendingWrite>
  /** Timers set through the node clock, not yet fired or cancelled. */
  readonly timers: Set<Timer>
}

const hintKey = (owner: string, key: string): string => `${owner}\u0000${key}`

const covers = (obj: Version.Obj | undefined, clock: Version.Clock): boolean =>
  obj !== undefined && Version.descends(Version.context(obj), clock)

/** The node holds `clock` durably for `key`: as its object, or as a hint for another owner. */
const holds = (image: Image, key: string, clock: Version.Clock): boolean => {
  if (covers(image.objects.get(key), clock)) return true
  for (const [k, obj] of image.hints)
    if (k.endsWith(`\u0000${key}`) && covers(obj, clock)) return true
  return false
}

/**
 * The real store with durability under the schedule's control: every write is issued to LMDB at
 * once (reads see it at once, as the driver needs), and its promise resolves only when `durable`
 * takes it, after LMDB's own promise.
 */
const gated = (inner: Store.StoreShape, view: NodeView, counts: Counts): Store.StoreShape => {
  const hold = (what: string, real: Store.Durable, apply: (image: Image) => void) => {
    // LMDB answers undefined only when there is nothing to do (a drop of what is not there).
    if (real === undefined) return undefined
    counts.writesIssued++
    return new Promise<void>((resolve, reject) => {
      view.pending.push({ what, real, apply, resolve, reject })
    })
  }
  return {
    ...inner,
    put: (key, obj) => hold(`put ${key}`, inner.put(key, obj), (i) => i.objects.set(key, obj)),
    remove: (key) => hold(`remove ${key}`, inner.remove(key), (i) => i.objects.delete(key)),
    drop: (key, obj) => hold(`drop ${key}`, inner.drop(key, obj), (i) => i.objects.delete(key)),
    putHint: (owner, key, obj) =>
      hold(`hint ${key}`, inner.putHint(owner, key, obj), (i) =>
        i.hints.set(hintKey(owner, key), obj),
      ),
    dropHint: (owner, key, obj) =>
      hold(`drop hint ${key}`, inner.dropHint(owner, key, obj), (i) =>
        i.hints.delete(hintKey(owner, key)),
      ),
  }
}

/**
 * A store that lies about durability: every write answers "already durable" (undefined) at once,
 * while underneath it is still pending until the schedule makes it durable. A correct driver
 * over it releases sends and replies before the writes they follow are durable (breaks KV-1).
 */
const acknowledgedAtOnce = (inner: Store.StoreShape): Store.StoreShape => {
  const atOnce = (durable: Store.Durable): Store.Durable => {
    durable?.catch(() => {})
    return undefined
  }
  return {
    ...inner,
    put: (key, obj) => atOnce(inner.put(key, obj)),
    remove: (key) => atOnce(inner.remove(key)),
    drop: (key, obj) => atOnce(inner.drop(key, obj)),
    putHint: (owner, key, obj) => atOnce(inner.putHint(owner, key, obj)),
    dropHint: (owner, key, obj) => atOnce(inner.dropHint(owner, key, obj)),
  }
}

const quietLog: Log = { info: () => {}, warn: () => {}, error: () => {} }

/** Let promise callbacks (the driver's releases after a write is durable) run. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

// ---------------------------------------------------------------------------------------------
// The trap on the process clock

/** Index of the node whose driver is being stepped synchronously, if any. */
let stepping: number | undefined
/** Calls of Date.now, setTimeout or setInterval made by the driver or the machine. */
const clockReads: Array<string> = []
const DRIVER_FRAME = /\/impl\/(node\/driver\.ts|core\/)/

const caller = (): string => (new Error().stack ?? "").split("\n")[3]?.trim() ?? ""

const trapped = <F extends (...args: Array<any>) => any>(name: string, real: F): F =>
  function (this: unknown, ...args: Array<any>) {
    if (stepping !== undefined) {
      const frame = caller()
      if (DRIVER_FRAME.test(frame)) clockReads.push(`${name} from ${frame}`)
    }
    return real.apply(this, args)
  } as F

/** Run `body` with Date.now, setTimeout and setInterval trapped. */
const withClockTrap = async <A>(body: () => Promise<A>): Promise<A> => {
  const real = { now: Date.now, setTimeout, setInterval }
  Date.now = trapped("Date.now", real.now)
  globalThis.setTimeout = trapped("setTimeout", real.setTimeout)
  globalThis.setInterval = trapped("setInterval", real.setInterval)
  try {
    return await body()
  } finally {
    Date.now = real.now
    globalThis.setTimeout = real.setTimeout
    globalThis.setInterval = real.setInterval
  }
}

// ---------------------------------------------------------------------------------------------
// One run

interface Counts {
  runs: number
  /** Every Send and Reply a driver released. */
  releases: number
  /** Released later than the step that emitted it: held behind a write, then released. */
  heldReleases: number
  /** Released inside a step while an earlier write of that node was still not durable. */
  /** WriteRequests, WriteAcks and PutOks checked against the durable writes they follow. */
  writeCausedChecked: number
  /** PutOks of forwarded writes checked as they left their coordinator (N=2). */
  forwardedChecked: number
  /** SETs and DELs acknowledged to a client. */
  ackedWrites: number
  /** Acknowledged writes found on W reopened stores. */
  ackedOnDisk: number
  /** Acknowledged writes read back by a quorum GET after the network healed. */
  ackedReadBack: number
  /** Writes issued to the store. */
  writesIssued: number
  timersFired: number
  /** Requests failed by their deadline, each no sooner than requestTimeoutMs after it began. */
  deadlinesHit: number
  /** Client requests that failed (deadlines, quorums not met). */
  clientFailures: number
  delivered: number
  dropped: number
}

const zero = (): Counts => ({
  runs: 0,
  releases: 0,
  heldReleases: 0,
  writeCausedChecked: 0,
  forwardedChecked: 0,
  ackedWrites: 0,
  ackedOnDisk: 0,
  ackedReadBack: 0,
  writesIssued: 0,
  timersFired: 0,
  deadlinesHit: 0,
  clientFailures: 0,
  delivered: 0,
  dropped: 0,
})

interface Options {
  readonly replication?: Replication
  /** Negative control: the store acknowledges every write as durable at once (`acknowledgedAtOnce`). */
  readonly acknowledgedAtOnce?: boolean
}

interface Acked {
  readonly key: string
  readonly dot: Version.Clock
}

/** Runs one schedule; returns the violations found (empty: it passed). */
const runSchedule = (
  steps: ReadonlyArray<Step>,
  counts: Counts,
  options: Options = {},
): Promise<ReadonlyArray<string>> => {
  const root = mkdtempSync(join(tmpdir(), "dht-driver-clock-"))
  const violations: Array<string> = []
  const violate = (text: string) => {
    violations.push(text)
  }
  counts.runs++
  const views: Array<NodeView> = ids.map((id, i) => ({
    id,
    dataDir: join(root, `n${i}`, "data.v1"),
    durable: { objects: new Map(), hints: new Map() },
    pending: [],
    timers: new Set(),
  }))
  const indexOf = (id: NodeId): number => ids.indexOf(id)
  const configs = views.map((view) =>
    Either.getOrThrow(
      Config.make({
        id: view.id,
        members: ids.map((id, i) => ({ id, peerAddress: { host: "127.0.0.1", port: 9000 + i } })),
        store: "lmdb",
        dataDir: view.dataDir,
        tickMs: TICK_MS,
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
        ...(options.replication ?? { n: 3, r: 2, w: 2, mode: "ap" }),
      }),
    ),
  )
  const w = configs[0]!.w
  /** Writes a node was asked to make (from, to, rid) -> what, to check its WriteAck. */
  const asked = new Map<string, { key: string; obj: Version.Obj }>()
  /** Forwarded writes (from, to, rid) -> key, to check a CoordinateResponse. */
  const forwarded = new Map<string, string>()
  const acked: Array<Acked> = []
  const durableCopies = (key: string, dot: Version.Clock): number =>
    views.filter((v) => holds(v.durable, key, dot)).length

  /** A Send or Reply leaves node `i`. */
  const release = (i: number, what: string, cause: () => string | undefined): void => {
    counts.releases++
    const view = views[i]!
    if (stepping === i) {
      if (view.pending.length > 0) {
        violate(
          `${view.id} released ${what} inside a step while ${view.pending.length} earlier ` +
            `write(s) were not durable (${view.pending.map((p) => p.what).join(", ")})`,
        )
      }
    } else {
      counts.heldReleases++
    }
    const problem = cause()
    if (problem !== undefined) violate(`${view.id} released ${what} ${problem}`)
  }

  /** A PutOk for `key` leaves a node: W nodes hold its dot durably. */
  const checkPutOk = (result: ClientResult, key: string): string | undefined => {
    if (result._tag !== "PutOk") return undefined
    counts.writeCausedChecked++
    const copies = durableCopies(key, [result.dot])
    return copies >= w
      ? undefined
      : `for ${key} ${result.dot.join(":")} with ${copies} durable cop(ies), fewer than W=${w}`
  }

  const checkSend = (from: number, to: NodeId, message: PeerMessage): string | undefined => {
    const image = views[from]!.durable
    switch (message._tag) {
      case "WriteRequest":
        counts.writeCausedChecked++
        return covers(image.objects.get(message.key), Version.context(message.obj))
          ? undefined
          : `for ${message.key} before its own write of it was durable`
      case "WriteAck": {
        const write = asked.get(`${to}>${ids[from]}#${message.rid}`)
        if (write === undefined) return undefined
        counts.writeCausedChecked++
        return holds(image, write.key, Version.context(write.obj))
          ? undefined
          : `for ${write.key} before the acknowledged write was durable`
      }
      case "CoordinateResponse": {
        const key = forwarded.get(`${to}>${ids[from]}#${message.rid}`)
        if (key === undefined) return undefined
        if (message.result._tag === "PutOk") counts.forwardedChecked++
        return checkPutOk(message.result, key)
      }
      default:
        return undefined
    }
  }

  const network = new Runtime.MemoryNetwork((sent) => {
    const from = indexOf(sent.from)
    release(from, `Send ${sent.message._tag} to ${sent.to}`, () =>
      checkSend(from, sent.to, sent.message),
    )
  })

  const deliver = (index: number): void => {
    const m = network.inFlight[index]
    if (m === undefined) return
    const key = `${m.from}>${m.to}#${"rid" in m.message ? m.message.rid : ""}`
    if (m.message._tag === "WriteRequest" || m.message._tag === "HintedWrite") {
      asked.set(key, { key: m.message.key, obj: m.message.obj })
    } else if (m.message._tag === "CoordinateRequest") {
      forwarded.set(key, m.message.op.key)
    }
    counts.delivered++
    stepIn(indexOf(m.to), () => network.deliver(index))
  }

  const stepIn = <A>(i: number, body: () => A): A => {
    const outer = stepping
    stepping = i
    try {
      return body()
    } finally {
      stepping = outer
    }
  }

  /** The node clock of node i: TestClock's, observed. */
  const clockLayer = (i: number): Layer.Layer<Runtime.NodeClock> =>
    Layer.effect(
      Runtime.NodeClock,
      Effect.map(Runtime.NodeClock, (clock) => ({
        now: clock.now,
        schedule: (at: number, fn: () => void) => {
          const timer: Timer = { at }
          views[i]!.timers.add(timer)
          const cancel = clock.schedule(at, () => {
            views[i]!.timers.delete(timer)
            const now = clock.now()
            if (now < at) violate(`${ids[i]}: a timer due at ${at} fired at ${now}`)
            counts.timersFired++
            stepIn(i, fn)
          })
          return () => {
            views[i]!.timers.delete(timer)
            cancel()
          }
        },
      })),
    ).pipe(Layer.provide(Runtime.layerEffectClock))

  const storeLayer = (i: number): Layer.Layer<Store.Store, Error> =>
    Layer.effect(
      Store.Store,
      Effect.map(Store.Store, (inner) => {
        const store = gated(inner, views[i]!, counts)
        return options.acknowledgedAtOnce === true ? acknowledgedAtOnce(store) : store
      }),
    ).pipe(Layer.provide(Store.layerLmdb(views[i]!.dataDir)))

  /** The oldest `count` pending writes of node i become durable, in order. */
  const durable = (i: number, count: number) =>
    Effect.promise(async () => {
      const view = views[i]!
      for (let n = 0; n < count && view.pending.length > 0; n++) {
        const write = view.pending[0]!
        try {
          await write.real
        } catch (e) {
          view.pending.shift()
          write.reject(e)
          continue
        }
        write.apply(view.durable)
        view.pending.shift()
        write.resolve()
      }
    }).pipe(Effect.zipRight(settle))

  const durableAll = Effect.forEach(views, (_, i) => durable(i, Number.POSITIVE_INFINITY), {
    discard: true,
  })

  /** Every write durable and every message delivered, until nothing is left in flight. */
  const quiesce = Effect.gen(function* () {
    for (let round = 0; round < 100; round++) {
      yield* durableAll
      if (network.inFlight.length === 0) return
      for (let n = network.inFlight.length; n > 0; n--) deliver(0)
    }
  })

  const program = Effect.gen(function* () {
    yield* TestClock.setTime(EPOCH)
    const drivers: Array<Driver> = []
    for (let i = 0; i < NODES; i++) {
      const context = yield* Layer.build(
        Runtime.layerMemory(configs[i]!, network, { store: storeLayer(i), clock: clockLayer(i) }),
      )
      const node = yield* Runtime.startNode({
        log: quietLog,
        onFatal: (reason) => violate(`${ids[i]} stopped: ${reason}`),
        onRemoved: () => violate(`${ids[i]} was removed`),
      }).pipe(Effect.provide(context))
      drivers.push(node.driver)
    }
    const clock = yield* Effect.clock
    const submit = (i: number, op: ClientOp, onResult: (r: ClientResult) => void) => {
      const submitted = clock.unsafeCurrentTimeMillis()
      stepIn(i, () =>
        drivers[i]!.submit(op, (result) => {
          release(i, `Reply ${result._tag}`, () =>
            op._tag === "Put" ? checkPutOk(result, op.key) : undefined,
          )
          if (result._tag === "Failed") {
            counts.clientFailures++
            // (c) A deadline fires when TestClock passes it, not before.
            if (
              result.error._tag === "QuorumNotMet" &&
              result.error.withinMs === REQUEST_TIMEOUT_MS
            ) {
              counts.deadlinesHit++
              const waited = clock.unsafeCurrentTimeMillis() - submitted
              if (waited < REQUEST_TIMEOUT_MS) {
                violate(`${ids[i]} failed a ${op._tag} by its deadline after only ${waited} ms`)
              }
            }
          }
          onResult(result)
        }),
      )
    }

    for (const [index, step] of steps.entries()) {
      switch (step._tag) {
        case "Set":
        case "Del": {
          const key = KEYS[step.key]!
          const value = step._tag === "Set" ? `v${index}` : null
          submit(step.node, { _tag: "Put", key, value, context: null }, (result) => {
            if (result._tag !== "PutOk") return
            counts.ackedWrites++
            acked.push({ key, dot: [result.dot] })
          })
          break
        }
        case "Get":
          submit(step.node, { _tag: "Get", key: KEYS[step.key]! }, () => {})
          break
        case "Deliver":
        case "Drop":
          if (network.inFlight.length === 0) break
          if (step._tag === "Deliver") deliver(step.pick % network.inFlight.length)
          else {
            counts.dropped++
            network.drop(step.pick % network.inFlight.length)
          }
          break
        case "DeliverAll":
          for (let n = network.inFlight.length; n > 0; n--) deliver(0)
          break
        case "Durable":
          yield* durable(step.node, step.count)
          break
        case "Advance": {
          yield* TestClock.adjust(step.ms)
          const now = yield* Clock.currentTimeMillis
          for (const view of views) {
            for (const timer of view.timers) {
              if (timer.at <= now)
                violate(`${view.id}: a timer due at ${timer.at} is overdue at ${now}`)
            }
          }
          break
        }
      }
      yield* settle
    }

    // Heal: every write durable, every message delivered, heartbeats flowing again.
    for (let round = 0; round < 2; round++) {
      yield* quiesce
      yield* TestClock.adjust(TICK_MS)
    }
    yield* quiesce
    // (b) A quorum GET of every key with an acknowledged write reads every such write.
    for (const key of new Set(acked.map((a) => a.key))) {
      let read: ClientResult | undefined
      const at = KEYS.indexOf(key) % NODES
      submit(at, { _tag: "Get", key }, (result) => {
        read = result
      })
      for (let round = 0; round < 10 && read === undefined; round++) {
        yield* quiesce
        if (read === undefined) yield* TestClock.adjust(TICK_MS)
      }
      for (const a of acked.filter((x) => x.key === key)) {
        if (read?._tag === "GetOk" && covers(read.obj, a.dot)) counts.ackedReadBack++
        else
          violate(
            `a GET of ${key} at ${ids[at]} after healing missed acknowledged ${a.dot}: ${JSON.stringify(read)}`,
          )
      }
    }
  })

  return withClockTrap(() =>
    Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(TestContext.TestContext))),
  )
    .then(async () => {
      // (b) The stores, closed and opened again from disk, hold every acknowledged write on W.
      const reopened = views.map((v) => Store.openLmdb(v.dataDir))
      for (const a of acked) {
        const copies = reopened.filter(({ store }) => {
          if (covers(store.get(a.key), a.dot)) return true
          return store.hintsFor(a.key).some((h) => covers(h.obj, a.dot))
        }).length
        if (copies >= w) counts.ackedOnDisk++
        else
          violate(
            `acknowledged ${a.key} ${a.dot} is on ${copies} reopened store(s), fewer than W=${w}`,
          )
      }
      await Promise.all(reopened.map((r) => r.close()))
      return violations
    })
    .finally(() => rmSync(root, { recursive: true, force: true }))
}

// ---------------------------------------------------------------------------------------------

test("KV-1, DUR-1: the real driver over LMDB under TestClock releases nothing ahead of a write, and every acknowledged write is read back and found on W reopened stores", async () => {
  const counts = zero()
  await fc.assert(
    fc.asyncProperty(replicationArb, scheduleArb, async (replication, steps) => {
      clockReads.length = 0
      const violations = await runSchedule(steps, counts, { replication })
      assert.deepEqual(violations, [])
      assert.deepEqual(clockReads, [], "the driver read the process clock")
    }),
    params(30),
  )
  console.log(`driver-clock: ${JSON.stringify(counts)}`)
  assertFloors(counts, {
    ackedWrites: 40,
    ackedOnDisk: 40,
    ackedReadBack: 40,
    forwardedChecked: 5,
    heldReleases: 300,
    writeCausedChecked: 250,
    writesIssued: 150,
    timersFired: 250,
    deadlinesHit: 10,
  })
})

test("KV-1: the driver's source reads no clock and sets no timer but the NodeClock service's", () => {
  const source = readFileSync(new URL("../impl/node/driver.ts", import.meta.url), "utf8")
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "")
  for (const banned of ["Date.now", "new Date", "setTimeout", "setInterval", "performance.now"]) {
    assert.ok(!code.includes(banned), `impl/node/driver.ts uses ${banned}`)
  }
})

test("KV-1: negative control: the driver over a store that acknowledges writes as durable before they are (acknowledgedAtOnce) fails (a) at its first coordinated write", async () => {
  const steps: ReadonlyArray<Step> = [
    { _tag: "Set", node: 0, key: 0 },
    { _tag: "DeliverAll" },
    { _tag: "DeliverAll" },
  ]
  const violations = await runSchedule(steps, zero(), { acknowledgedAtOnce: true })
  assert.equal(
    violations[0],
    "n0 released Send WriteRequest to n1 inside a step while 1 earlier write(s) were not durable (put a)",
  )
  assert.ok(
    violations.includes(
      "n0 released Send WriteRequest to n1 for a before its own write of it was durable",
    ),
  )
  const safe = await runSchedule(steps, zero())
  assert.deepEqual(safe, [])
  // The property itself finds it too.
  const out = await fc.check(
    fc.asyncProperty(scheduleArb, async (s) => {
      const found = await runSchedule(s, zero(), { acknowledgedAtOnce: true })
      assert.deepEqual(found, [])
    }),
    { ...params(25), endOnFailure: true, reporter: undefined },
  )
  assert.ok(out.failed, "the property passed with sends released before durability")
  assert.match(
    String(out.errorInstance),
    /inside a step while \d+ earlier write\(s\) were not durable/,
  )
})
