/**
 * The request path's laws, checked in the simulator on every step of every node while a
 * generated schedule runs: concurrent plain writes, deletes and reads (quorums of 2 or 3)
 * through any node of 5 (N=3, R=W=2, strict or sloppy quorums), with loss, duplication,
 * partitions, pauses (SIGSTOP), crashes, slow nodes, persists that take time to become durable,
 * and a short tombstone grace so that reads purge and the reaper reclaims. The machine-level
 * properties (properties/node.test.ts, adversarial.test.ts) drive one machine with arbitrary
 * messages; here the same laws must hold for what a cluster of machines actually sends.
 *
 *  - KV-1: when a client hears a write acknowledged, at least W nodes hold it durably (their
 *    durable store, or a hint), checked at the very event at which the acknowledgement lands.
 *  - KV-7: a forwarder sends a write to the next replica only while it judges the previous one
 *    down and has granted the write to no one, and never twice to one replica; a Forward timer
 *    that fires while its replica is believed up, or suspected but granted, changes nothing
 *    (counted). The schedule includes the forward-pause case: a write through a node outside
 *    the key's replicas, its first replica paused a few ms in (before or after the grant), and
 *    requests outlive the failure detector's bound, so that a grantee can come to be suspected.
 *  - KV-10: every Persist a node issues descends the object it held (a join, never a
 *    regression); a Drop that deletes answers a Reap naming exactly that object (or is the
 *    reaper's own, sent with its Reaps); a hint goes only on its owner's acknowledgement of it.
 *  - KV-11: a GET is answered only after R distinct nodes it asked answered, a PUT only after W
 *    distinct acknowledgements (the coordinator counted once), whatever duplicates arrived.
 *  - KV-12: a read purges a tombstone only when every preferred replica answered with exactly
 *    that dead object and its grace has passed.
 *
 * Each law counts what it checked; the suite fails below its floors (skipped on a replay).
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Hlc from "../impl/core/hlc.ts"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientOp, Command, Event } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import * as Version from "../impl/core/version.ts"
import { type Operation, Simulation } from "../impl/sim/sim.ts"
import { assertFixedBatch, assertFloors, params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

const NODES = 5
const KEYS = ["a", "b", "c"]
const GRACE_MS = 300

type Action =
  | { _tag: "Put"; node: number; key: number; del: boolean; w: 2 | 3 | undefined }
  | { _tag: "Get"; node: number; key: number; r: 2 | 3 | undefined }
  | { _tag: "Partition"; mask: number; hold: boolean }
  | { _tag: "Heal" }
  | { _tag: "Pause"; node: number }
  /** A plain write through a node that forwards it, then its first replica paused `ms` in. */
  | { _tag: "ForwardPause"; key: number; ms: number }
  | { _tag: "Resume" }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }
  | { _tag: "Network"; loss: number; dup: number }
  | { _tag: "Slow"; node: number; ms: number }
  | { _tag: "Wait"; ms: number }

const quorum = fc.constantFrom(undefined, 2 as const, 3 as const)
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Put" as const),
      node: fc.nat(NODES - 1),
      key: fc.nat(KEYS.length - 1),
      del: fc.boolean(),
      w: quorum,
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Get" as const),
      node: fc.nat(NODES - 1),
      key: fc.nat(KEYS.length - 1),
      r: quorum,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Partition" as const),
      mask: fc.integer({ min: 1, max: 30 }),
      hold: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Heal" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Pause" as const), node: fc.nat(NODES - 1) }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Resume" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("ForwardPause" as const),
      key: fc.nat(KEYS.length - 1),
      ms: fc.constantFrom(5, 30, 45, 60),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(NODES - 1) }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Restart" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Network" as const),
      loss: fc.constantFrom(0, 0.05, 0.2),
      dup: fc.constantFrom(0, 0.2, 0.5),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Slow" as const),
      node: fc.nat(NODES - 1),
      ms: fc.constantFrom(0, 200, 700),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 1, max: 600 }),
    }),
  },
)

/** What the laws judged over a batch. */
interface Seen {
  /** KV-1: acknowledged writes whose durable copies were counted at the acknowledgement. */
  acked: number
  /**
   * KV-7: second sends of a forwarded write (each judged); Forward timers waited through with
   * the replica believed up, and with it suspected but holding the grant.
   */
  failovers: number
  waits: number
  grantHeld: number
  /** KV-10: Persists (each changes the object), Drops that deleted, hint drops. */
  grew: number
  drops: number
  hintDrops: number
  /** KV-11: answers judged, of which with a quorum of 3; duplicate answers delivered. */
  answers: number
  answersOf3: number
  duplicates: number
  /** KV-12: purges judged. */
  purges: number
}

const newSeen = (): Seen => ({
  acked: 0,
  failovers: 0,
  waits: 0,
  grantHeld: 0,
  grew: 0,
  drops: 0,
  hintDrops: 0,
  answers: 0,
  answersOf3: 0,
  duplicates: 0,
  purges: 0,
})

/** One coordinator request (node, rid): what it needs and what it has heard. */
interface Request {
  readonly kind: "Get" | "Put"
  readonly key: string
  readonly need: number
  /** The coordinator's own object when the request started (its own answer, for a GET). */
  readonly local: Version.Obj | undefined
  /** First answer per node (ReadResponse), and the nodes that acknowledged (WriteAck). */
  readonly reads: Map<NodeId, Version.Obj>
  readonly acks: Set<NodeId>
}

/** One forwarded write at its forwarder (node, rid). */
interface Forward {
  readonly sent: Array<NodeId>
  granted: boolean
}

const run = (
  seed: number,
  mode: "cp" | "ap",
  schedule: ReadonlyArray<Action>,
  seen: Seen,
): void => {
  const requests = new Map<string, Request>()
  const forwards = new Map<string, Forward>()
  /** The store a node had before the step being taken (for KV-12's own answer). */
  let before!: { node: NodeId; local: Map<string, Version.Obj | undefined> }
  const sim: Simulation = new Simulation({
    seed,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 20, lossRate: 0, duplicateRate: 0 },
    persistDelayMs: 5,
    node: {
      mode,
      tombstoneGraceMs: GRACE_MS,
      maxMessageAgeMs: 10_000,
      maxClockSkewMs: 50,
      reapIntervalMs: 200,
      forwardTimeoutMs: 300,
      requestTimeoutMs: 8000,
      handoffIntervalMs: 200,
    },
    onEvent: (node, event) => {
      const local = new Map(KEYS.map((k) => [k, sim.storeOf(node).get(k)] as const))
      before = { node, local }
      if (event._tag !== "MessageReceived") return
      const m = event.message
      if (m._tag !== "ReadResponse" && m._tag !== "WriteAck") return
      const req = requests.get(`${node}:${m.rid}`)
      if (req === undefined) return
      if (m._tag === "ReadResponse") {
        if (req.reads.has(event.from)) seen.duplicates++
        else req.reads.set(event.from, m.obj)
      } else {
        if (req.acks.has(event.from)) seen.duplicates++
        req.acks.add(event.from)
      }
    },
    onCommands: (node, event, commands) => {
      assert.equal(before.node, node)
      const state = sim.stateOf(node)!
      registerRequests(node, event, commands)
      checkForwards(node, state, event, commands)
      checkStoreWrites(node, event, commands)
      checkAnswers(node, event, commands)
      checkPurges(node, event, commands)
    },
  })
  const R = Node.defaults.r
  const W = Node.defaults.w

  /** A coordinator's new requests: the rids of the reads and writes a client op started. */
  const registerRequests = (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => {
    const op =
      event._tag === "ClientRequested"
        ? event.op
        : event._tag === "MessageReceived" && event.message._tag === "CoordinateRequest"
          ? event.message.op
          : undefined
    if (op === undefined || (op._tag !== "Get" && op._tag !== "Put")) return
    for (const c of commands) {
      if (c._tag !== "Send") continue
      const m = c.message
      if (m._tag !== "ReadRequest" && m._tag !== "WriteRequest" && m._tag !== "HintedWrite")
        continue
      const id = `${node}:${m.rid}`
      if (requests.has(id)) continue
      requests.set(id, {
        kind: op._tag,
        key: op.key,
        need: op._tag === "Get" ? (op.r ?? R) : (op.w ?? W),
        local: before.local.get(op.key),
        reads: new Map(),
        acks: new Set(),
      })
    }
  }

  /** KV-7. */
  const checkForwards = (
    node: NodeId,
    state: Node.State,
    event: Event,
    commands: ReadonlyArray<Command>,
  ) => {
    if (event._tag === "MessageReceived" && event.message._tag === "CoordinateClaim") {
      const granted = commands.some(
        (c) => c._tag === "Send" && c.message._tag === "CoordinateGrant" && c.message.granted,
      )
      const f = forwards.get(`${node}:${event.message.rid}`)
      if (granted && f !== undefined) f.granted = true
    }
    let resent = false
    for (const c of commands) {
      if (c._tag !== "Send" || c.message._tag !== "CoordinateRequest") continue
      const id = `${node}:${c.message.rid}`
      const f = forwards.get(id)
      if (f === undefined) {
        forwards.set(id, { sent: [c.to], granted: false })
        continue
      }
      resent = true
      const previous = f.sent[f.sent.length - 1]!
      assert.ok(!f.sent.includes(c.to), `${node} forwarded write ${id} to ${c.to} twice`)
      assert.ok(
        !Node.believedUp(state, previous, event.now),
        `${node} failed over from ${previous} to ${c.to} while it believed ${previous} up`,
      )
      assert.ok(!f.granted, `${node} failed over after it granted the write to a replica`)
      f.sent.push(c.to)
      seen.failovers++
    }
    if (event._tag === "TimerFired" && event.kind === "Forward" && !resent) {
      const f = forwards.get(`${node}:${event.rid}`)
      const last = f?.sent[f.sent.length - 1]
      if (last === undefined) return
      if (Node.believedUp(state, last, event.now)) seen.waits++
      else if (f!.granted) seen.grantHeld++
    }
  }

  /** KV-10. */
  const checkStoreWrites = (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => {
    const current = new Map(before.local)
    const message = event._tag === "MessageReceived" ? event.message : undefined
    for (const c of commands) {
      if (c._tag === "Persist") {
        const held = current.get(c.key) ?? Version.empty
        assert.ok(
          Version.equals(Version.sync(held, c.obj), c.obj),
          `${node} regressed ${c.key} on ${event._tag}${message ? ` ${message._tag}` : ""}`,
        )
        seen.grew++
        current.set(c.key, c.obj)
      } else if (c._tag === "Drop") {
        const held = current.get(c.key)
        if (held === undefined || !Version.equals(held, c.obj)) continue
        const reaped =
          (message?._tag === "Reap" && Version.equals(message.obj, c.obj)) ||
          commands.some(
            (x) =>
              x._tag === "Send" &&
              x.message._tag === "Reap" &&
              x.message.key === c.key &&
              Version.equals(x.message.obj, c.obj),
          )
        assert.ok(reaped, `${node} deleted ${c.key} on ${event._tag} with no Reap naming it`)
        seen.drops++
        current.set(c.key, undefined)
      } else if (c._tag === "DropHint") {
        assert.ok(
          message?._tag === "HandoffAck" &&
            event._tag === "MessageReceived" &&
            event.from === c.owner &&
            Version.equals(message.obj, c.obj),
          `${node} dropped its hint of ${c.key} for ${c.owner} on ${event._tag}`,
        )
        seen.hintDrops++
      }
    }
  }

  /** KV-11. */
  const checkAnswers = (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => {
    const ok = commands.some(
      (c) =>
        (c._tag === "Reply" && (c.result._tag === "GetOk" || c.result._tag === "PutOk")) ||
        (c._tag === "Send" &&
          c.message._tag === "CoordinateResponse" &&
          c.message.result._tag === "PutOk"),
    )
    if (!ok || event._tag !== "MessageReceived") return
    const m = event.message
    if (m._tag !== "ReadResponse" && m._tag !== "WriteAck") return
    const req = requests.get(`${node}:${m.rid}`)
    if (req === undefined) return
    // The coordinator counts itself at most once; every other count is a distinct node.
    const distinct = (req.kind === "Get" ? req.reads.size : req.acks.size) + 1
    assert.ok(
      distinct >= req.need,
      `${node} answered a ${req.kind} of ${req.key} needing ${req.need} after ${distinct - 1} distinct answers besides its own`,
    )
    seen.answers++
    if (req.need === 3) seen.answersOf3++
  }

  /** KV-12. */
  const checkPurges = (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => {
    const purge = commands.find((c) => c._tag === "Send" && c.message._tag === "Purge")
    if (purge === undefined || purge._tag !== "Send" || purge.message._tag !== "Purge") return
    const { key, obj } = purge.message
    assert.ok(event._tag === "MessageReceived" && event.message._tag === "ReadResponse")
    if (event._tag !== "MessageReceived" || event.message._tag !== "ReadResponse") return
    const req = requests.get(`${node}:${event.message.rid}`)!
    assert.equal(req.kind, "Get")
    for (const replica of sim.replicasOf(key)) {
      const answer = replica === node ? req.local : req.reads.get(replica)
      assert.ok(
        answer !== undefined && Version.equals(answer, obj),
        `${node} purged ${key} though ${replica} answered ${JSON.stringify(answer)}`,
      )
    }
    const died = Version.deadSince(obj, event.now, Hlc.wallMs)
    assert.ok(died !== undefined, `${node} purged a live object of ${key}`)
    assert.ok(died + GRACE_MS <= event.now, `${node} purged ${key} within its grace`)
    seen.purges++
  }

  /** KV-1: at the event an acknowledgement lands, W nodes hold the write durably. */
  const ops: Array<Operation> = []
  let checkedUpTo = 0
  const watch = (): boolean => {
    for (; checkedUpTo < ops.length; checkedUpTo++)
      if (ops[checkedUpTo]!.result === undefined) break
    for (let i = checkedUpTo; i < ops.length; i++) {
      const op = ops[i]!
      if (op.result?._tag !== "PutOk" || (op as { judged?: boolean }).judged) continue
      ;(op as { judged?: boolean }).judged = true
      const key = (op.op as Extract<ClientOp, { _tag: "Put" }>).key
      const dot: Version.Clock = [[op.result.dot[0], op.result.dot[1]]]
      let copies = 0
      for (const id of sim.ids) {
        const durable = sim.snapshot(id).store
        let obj = durable.get(key) ?? Version.empty
        for (const h of durable.hintsFor(key)) obj = Version.sync(obj, h.obj)
        if (Version.descends(Version.context(obj), dot)) copies++
      }
      const need = (op.op as Extract<ClientOp, { _tag: "Put" }>).w ?? W
      assert.ok(copies >= need, `${key} acknowledged with ${copies} durable copies, W=${need}`)
      seen.acked++
    }
    return false
  }
  const runFor = (ms: number) => sim.runUntil(watch, ms)

  const live = () => sim.ids.filter((id) => sim.isUp(id) && !sim.isPaused(id))
  let values = 0
  for (const a of schedule) {
    switch (a._tag) {
      case "Put":
      case "Get": {
        const at = live()[a.node % Math.max(1, live().length)]
        if (at === undefined) break
        const key = KEYS[a.key]!
        const op: ClientOp =
          a._tag === "Get"
            ? { _tag: "Get", key, ...(a.r === undefined ? {} : { r: a.r }) }
            : {
                _tag: "Put",
                key,
                value: a.del ? null : `v${values++}`,
                context: null,
                ...(a.w === undefined ? {} : { w: a.w }),
              }
        ops.push(sim.invoke(at, op))
        break
      }
      case "Partition": {
        const groups = [
          sim.ids.filter((_, i) => (a.mask >> i) & 1),
          sim.ids.filter((_, i) => !((a.mask >> i) & 1)),
        ]
        sim.heal()
        sim.partition(groups, { hold: a.hold })
        break
      }
      case "Heal":
        sim.heal()
        break
      case "Pause": {
        const at = live()[a.node % Math.max(1, live().length)]
        if (at !== undefined && live().length > 3) sim.pause(at)
        break
      }
      case "Resume":
        for (const id of sim.ids) sim.resume(id)
        break
      case "ForwardPause": {
        const key = KEYS[a.key]!
        const replicas = sim.replicasOf(key)
        const at = live().find((id) => !replicas.includes(id))
        if (at === undefined) break
        ops.push(sim.invoke(at, { _tag: "Put", key, value: `v${values++}`, context: null }))
        runFor(a.ms)
        if (sim.isUp(replicas[0]!) && live().length > 3) sim.pause(replicas[0]!)
        break
      }
      case "Crash": {
        const at = live()[a.node % Math.max(1, live().length)]
        if (at !== undefined && live().length > 3) sim.stop(at)
        break
      }
      case "Restart":
        for (const id of sim.ids) if (!sim.isUp(id)) sim.restart(id)
        break
      case "Network":
        sim.network = { ...sim.network, lossRate: a.loss, duplicateRate: a.dup }
        break
      case "Slow":
        sim.slow(sim.ids[a.node]!, a.ms)
        break
      case "Wait":
        runFor(a.ms)
        break
    }
  }
  // Heal, then read every key everywhere past the grace: reads purge, the reaper reclaims.
  sim.heal()
  sim.network = { ...sim.network, lossRate: 0, duplicateRate: 0.2 }
  for (const id of sim.ids) {
    sim.resume(id)
    sim.slow(id, 0)
    if (!sim.isUp(id)) sim.restart(id)
  }
  runFor(3_000)
  for (let round = 0; round < 3; round++) {
    for (const id of sim.ids) for (const key of KEYS) ops.push(sim.invoke(id, { _tag: "Get", key }))
    runFor(2_000)
  }
  runFor(25_000)
}

/** 20 runs from seed 2 hold 6 held grants, 15 hint drops and 26 failovers (seeds 1-10 tried). */
const FIXED_SEED = 2
const FIXED_RUNS = 20

test("KV-1, KV-7, KV-10, KV-11, KV-12: in the simulator, under loss, duplication, partitions, pauses, crashes, slow nodes and slow disks, acknowledged writes are durable on W nodes, forwards fail over only from a suspected ungranted replica, objects never regress, quorums count distinct nodes, and reads purge only fully replicated tombstones past their grace", () => {
  const seen = newSeen()
  const property = fc.property(
    fc.integer(),
    fc.constantFrom("cp" as const, "ap" as const),
    fc.array(actionArb, { minLength: 10, maxLength: 80 }),
    (seed, mode, schedule) => run(seed, mode, schedule, seen),
  )
  // Forwarded writes whose grant was held (grantHeld) and hints dropped (hintDrops) are rare and
  // clustered: 0-34 per 100 random runs over 26 runs of the suite, so no floor above zero holds
  // on random draws alone (one of 1 failed a clean run). A first batch from a fixed seed, known
  // to hold both, makes them certain on unchanged code; the random batch adds breadth. The
  // floors of grantHeld, hintDrops and failovers are met by the fixed batch alone: a change that
  // makes one of these events impossible fails them whatever the random draw.
  assertFixedBatch(property, FIXED_RUNS, FIXED_SEED)
  fc.assert(property, params(100))
  console.log(`# request path in the simulator: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    acked: 500,
    failovers: 20,
    waits: 2700,
    grantHeld: 3,
    grew: 2000,
    drops: 150,
    hintDrops: 5,
    answers: 4000,
    answersOf3: 170,
    duplicates: 4000,
    purges: 180,
  })
})
