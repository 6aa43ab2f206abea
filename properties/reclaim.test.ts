/**
 * Reclamation of dead keys in the simulator (RECLAIM-*): SETs (some expiring), DELs and reads on
 * a 5-node cluster under crashes (a replica down for longer than the grace), SIGSTOP pauses with
 * a backlog worked through late, partitions that drop or hold messages and deliver them late,
 * loss, duplication and one-way cuts, with a grace short enough that keys are reclaimed during
 * the run. After the heal and a quiet period:
 *  - RECLAIM-1: no value an acknowledged delete superseded is held anywhere or read back;
 *  - no acknowledged write is lost: an acknowledged SET that no later write superseded (every
 *    later write acknowledged, none covering its dot) is live in what the cluster holds;
 *  - RECLAIM-2: no two acknowledged writes of a key share a dot, reclamations in between;
 *  - RECLAIM-3: every object every node stores is live, and no hint is left.
 * Each run counts what it checked; the suite fails below its floors (skipped on a replay).
 *
 * A failing case prints its seed and path; replay with FC_SEED and FC_PATH (and
 * --test-name-pattern to pick the mode).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, PutOp } from "../impl/core/messages.ts"
import type * as Node from "../impl/core/node.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { type Operation, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, Lengths, params, scheduleMax } from "./helpers/fc.ts"
import { deadOrHinted, replicasAgree } from "./helpers/machines.ts"

const KEYS = ["k0", "k1", "k2", "k3"]
const NODES = 5

const GRACE_MS = 300
const MAX_AGE_MS = 2500
const SKEW_MS = 50

type Action =
  | { _tag: "Set"; node: number; key: number; ttlMs: number }
  | { _tag: "Del"; node: number; key: number }
  | { _tag: "Read"; node: number; key: number }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart"; node: number }
  | { _tag: "Pause"; node: number }
  | { _tag: "Resume"; node: number }
  | { _tag: "Partition"; mask: number; hold: boolean }
  | { _tag: "Heal" }
  | { _tag: "OneWay"; from: number; to: number }
  | { _tag: "Network"; loss: number; dup: number }
  | { _tag: "Wait"; ms: number }
  /** Heal everything for a while mid-run, so that keys are reclaimed between faults. */
  | { _tag: "Quiet" }
  /** Copy a node's data directory (its durable store, saved view and generation counter). */
  | { _tag: "Backup"; node: number }
  /**
   * Put a node back on its copy, if it has been restarted since the copy was taken and ran long
   * enough for its peers to learn that run (the documented assumption: a copy taken since the
   * last restart is not detected). The node must stop (StaleStore) instead of serving it.
   */
  | { _tag: "Restore"; node: number }

const node = fc.nat(NODES - 1)
const key = fc.nat(KEYS.length - 1)

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Set" as const),
      node,
      key,
      // 0: no expiry.
      ttlMs: fc.constantFrom(0, 0, 0, 100, 600),
    }),
  },
  { weight: 5, arbitrary: fc.record({ _tag: fc.constant("Del" as const), node, key }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Read" as const), node, key }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const), node }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Pause" as const), node }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Resume" as const), node }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Partition" as const),
      mask: fc.integer({ min: 1, max: 30 }),
      hold: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Heal" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("OneWay" as const), from: node, to: node }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Network" as const),
      loss: fc.constantFrom(0, 0.05, 0.2),
      dup: fc.constantFrom(0, 0.1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Quiet" as const) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Backup" as const), node }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restore" as const), node }) },
  {
    weight: 3,
    // Long waits let keys die, pass their grace and be reclaimed inside the run, and keep a
    // crashed replica down for longer than the grace.
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.constantFrom(50, 400, 3000),
    }),
  },
)

const scheduleArb = fc.array(actionArb, { minLength: 10, maxLength: scheduleMax(80) })

interface Write {
  readonly key: string
  readonly value: string | null
  readonly ttlMs: number
  readonly op: Operation
}

interface Seen {
  runs: number
  writesAcked: number
  deletesAcked: number
  /** Acknowledged SETs nothing superseded, each checked live in the final state. */
  mustSurvive: number
  /** Stored and read objects searched for a sibling an acknowledged delete superseded. */
  zombieChecks: number
  /** Keys reclaimed (Reap messages sent) during the runs, before the final quiet period. */
  reapsDuringRun: number
  reaps: number
  staleDropped: number
  /** Nodes put back on an old copy of their store that stopped (StaleStore). */
  restoresCaught: number
}

const newSeen = (): Seen => ({
  runs: 0,
  writesAcked: 0,
  deletesAcked: 0,
  mustSurvive: 0,
  zombieChecks: 0,
  reapsDuringRun: 0,
  reaps: 0,
  staleDropped: 0,
  restoresCaught: 0,
})

const isAck = (r: ClientResult | undefined): r is Extract<ClientResult, { _tag: "PutOk" }> =>
  r?._tag === "PutOk"

/** Live siblings of `obj` that an acknowledged delete of the key superseded. */
const zombies = (obj: Version.Obj, deletes: ReadonlyArray<Write>, now: number): Array<string> =>
  Version.siblings(obj)
    .filter((d) => !Version.dead(d.sibling, now))
    .filter((d) =>
      deletes.some((w) => {
        const r = w.op.result
        return isAck(r) && Version.descends(r.context, [[d.actor, d.counter]])
      }),
    )
    .map((d) => `${d.sibling.value} (${d.actor}:${d.counter})`)

const run = (
  seed: number,
  schedule: ReadonlyArray<Action>,
  mode: Partial<Node.Config>,
  seen: Seen,
): void => {
  let reapMessages = 0
  const sim = new Simulation({
    seed,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    node: {
      ...mode,
      tombstoneGraceMs: GRACE_MS,
      maxMessageAgeMs: MAX_AGE_MS,
      maxClockSkewMs: SKEW_MS,
      reapIntervalMs: 200,
    },
    onMachineError: "crash-stop",
    onCommands: (_id, _event, commands) => {
      for (const c of commands) if (c._tag === "Send" && c.message._tag === "Reap") reapMessages++
    },
  })
  /** Per node: the copy of its data directory, the incarnation it was taken in. */
  const backups = new Map<NodeId, ReturnType<Simulation["snapshot"]>>()
  /** Per node: when its current run started (its peers learn a run within a few gossips). */
  const upSince = new Map<NodeId, number>(sim.ids.map((id) => [id, 0]))
  const restored = new Set<NodeId>()
  const restart = (id: NodeId) => {
    if (sim.isUp(id)) return
    sim.restart(id)
    upSince.set(id, sim.now)
  }
  const ids = sim.ids
  const writes: Array<Write> = []
  const reads: Array<Operation> = []
  let n = 0
  const up = (i: number): NodeId | undefined => {
    for (let k = 0; k < NODES; k++) {
      const id = ids[(i + k) % NODES]!
      if (sim.isUp(id)) return id
    }
    return undefined
  }
  const quiet = (): void => {
    sim.heal()
    sim.network = { ...sim.network, lossRate: 0, duplicateRate: 0 }
    // A node put back on an old copy has stopped (or stops as soon as it hears a peer): its
    // operator empties its data directory and starts it again, and it refills from replicas.
    sim.runFor(2000)
    for (const id of restored) {
      if (sim.isUp(id)) continue
      seen.restoresCaught++
      sim.restoreFrom(id, { store: new MemoryStore(), savedMembers: undefined, incarnation: -1 })
      restored.delete(id)
    }
    for (const id of ids) {
      sim.resume(id)
      restart(id)
    }
  }
  for (const action of schedule) {
    switch (action._tag) {
      case "Set":
      case "Del": {
        const at = up(action.node)
        if (at === undefined) break
        const k = KEYS[action.key]!
        const ttlMs = action._tag === "Set" ? action.ttlMs : 0
        const value = action._tag === "Set" ? `v${n++}` : null
        const now = sim.now
        const op: PutOp = {
          _tag: "Put",
          key: k,
          value,
          context: null,
          ...(ttlMs > 0 ? { exp: now + ttlMs } : {}),
        }
        writes.push({ key: k, value, ttlMs, op: sim.call(at, op, 5000) })
        break
      }
      case "Read": {
        const at = up(action.node)
        if (at !== undefined)
          reads.push(sim.call(at, { _tag: "Get", key: KEYS[action.key]! }, 5000))
        break
      }
      case "Crash":
        // Keep a majority of nodes running, so that quorums remain possible.
        if (ids.filter((id) => sim.isUp(id)).length > 3) sim.stop(ids[action.node]!)
        break
      case "Restart":
        restart(ids[action.node]!)
        break
      case "Backup":
        backups.set(ids[action.node]!, sim.snapshot(ids[action.node]!))
        break
      case "Restore": {
        const id = ids[action.node]!
        const copy = backups.get(id)
        const since = upSince.get(id)!
        // Restarted since the copy (stop and restart add two to the incarnation), and up long
        // enough since for its peers to know that run.
        if (copy === undefined || !sim.isUp(id) || sim.incarnationOf(id) < copy.incarnation + 2) {
          break
        }
        if (sim.now - since < 3000 || ids.filter((x) => sim.isUp(x)).length <= 3) break
        sim.stop(id)
        sim.restoreFrom(id, copy)
        restart(id)
        restored.add(id)
        backups.delete(id)
        break
      }
      case "Pause":
        if (ids.filter((id) => sim.isUp(id) && !sim.isPaused(id)).length > 3) {
          sim.pause(ids[action.node]!)
        }
        break
      case "Resume":
        sim.resume(ids[action.node]!)
        break
      case "Partition": {
        const a = ids.filter((_, i) => (action.mask >> i) & 1)
        const b = ids.filter((_, i) => !((action.mask >> i) & 1))
        if (a.length > 0 && b.length > 0) sim.partition([a, b], { hold: action.hold })
        break
      }
      case "Heal":
        sim.heal()
        break
      case "OneWay":
        if (action.from !== action.to) {
          sim.block(ids[action.from]!, ids[action.to]!, { hold: true })
        }
        break
      case "Network":
        sim.network = { ...sim.network, lossRate: action.loss, duplicateRate: action.dup }
        break
      case "Wait":
        sim.runFor(action.ms)
        break
      case "Quiet":
        quiet()
        sim.runFor(6000)
        break
    }
  }
  seen.reapsDuringRun += reapMessages
  // Heal everything and let the cluster go quiet: every dead key must then be reclaimed.
  quiet()
  const deadLeft = (): number => deadOrHinted(sim)
  // Converged: every key's replicas hold the same object (a replica that was down may hold a
  // superseded value until anti-entropy brings it the rest: stale, not a resurrection).
  const converged = (): boolean => replicasAgree(sim, KEYS)
  const reclaimed = sim.runUntil(() => deadLeft() === 0 && converged(), 120_000)
  sim.runFor(2000)
  seen.reaps += reapMessages
  for (const id of ids) seen.staleDropped += sim.stateOf(id)?.stats.stale ?? 0
  seen.runs++

  for (const e of sim.stepErrors) {
    assert.match(e, /restored from a copy/, `a machine error other than StaleStore: ${e}`)
  }
  // RECLAIM-3: nothing dead and no hint is left anywhere.
  assert.ok(
    reclaimed,
    `RECLAIM-3: ${deadLeft()} dead objects or hints still stored, or replicas diverge ` +
      `(converged: ${converged()}), after 120 s quiet`,
  )

  const deletes = writes.filter((w) => w.value === null && isAck(w.op.result))
  seen.deletesAcked += deletes.length
  const acked = writes.filter((w) => isAck(w.op.result))
  seen.writesAcked += acked.length

  // RECLAIM-2: no two acknowledged writes of a key share a dot.
  const dots = new Map<string, Write>()
  for (const w of acked) {
    const r = w.op.result as Extract<ClientResult, { _tag: "PutOk" }>
    const id = `${w.key}\u0000${r.dot[0]}\u0000${r.dot[1]}`
    const other = dots.get(id)
    assert.ok(
      other === undefined,
      `RECLAIM-2: ${w.key}: writes ${other?.value} and ${w.value} share the dot ${r.dot}`,
    )
    dots.set(id, w)
  }

  for (const k of KEYS) {
    const mine = writes.filter((w) => w.key === k)
    const dels = deletes.filter((w) => w.key === k)
    let merged = Version.empty
    // RECLAIM-1: no node holds a value an acknowledged delete superseded.
    for (const id of ids) {
      const obj = sim.stored(id, k) ?? Version.empty
      merged = Version.sync(merged, obj)
      const z = zombies(obj, dels, sim.now)
      seen.zombieChecks++
      assert.deepEqual(z, [], `RECLAIM-1: ${id} holds ${k} = ${z.join(", ")} after a delete`)
    }
    // … nor does any read return one, once its delete was acknowledged.
    for (const read of reads) {
      if (read.op._tag !== "Get" || read.op.key !== k || read.result?._tag !== "GetOk") continue
      const before = dels.filter((d) => d.op.completedAt! <= read.invokedAt)
      if (before.length === 0) continue
      seen.zombieChecks++
      const z = zombies(read.result.obj, before, read.completedAt!)
      // AP reads may be stale while faults last; a value once reclaimed never comes back.
      if (mode.mode === "cp") {
        assert.deepEqual(z, [], `RECLAIM-1: a read of ${k} at ${read.invokedAt} returned ${z}`)
      }
    }
    // No acknowledged write is lost (the must set of CAUSAL-1): an acknowledged SET with no
    // expiry, when every write that may have been minted after it was acknowledged and none of
    // them superseded it (their contexts do not cover its dot), is live in what the cluster
    // holds.
    const live = Version.siblings(merged).filter((d) => !Version.dead(d.sibling, sim.now))
    for (const w of mine) {
      const r = w.op.result
      if (!isAck(r) || w.value === null || w.ttlMs > 0) continue
      // Any write that had not completed when w was invoked may have been minted after it.
      const later = mine.filter(
        (x) => x !== w && !(x.op.completedAt !== undefined && x.op.completedAt <= w.op.invokedAt),
      )
      const superseded = later.some((x) => {
        const rx = x.op.result
        return !isAck(rx) || Version.descends(rx.context, [r.dot])
      })
      if (superseded) continue
      seen.mustSurvive++
      assert.ok(
        live.some((d) => d.actor === r.dot[0] && d.counter === r.dot[1]),
        `${k}: the acknowledged write ${w.value} (${r.dot}) that nothing superseded is lost`,
      )
    }
  }
}

const lengths = new Lengths("RECLAIM schedules", scheduleMax(80))

for (const [name, mode] of [
  ["CP (strict quorums)", { mode: "cp" }],
  ["AP (sloppy quorums, hints)", { mode: "ap" }],
] as const) {
  test(`RECLAIM-1, RECLAIM-2, RECLAIM-3: ${name}: reclaimed keys never come back, no acknowledged write is lost, and only live keys remain`, () => {
    const seen = newSeen()
    fc.assert(
      fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
        lengths.add(schedule.length)
        run(seed, schedule, mode, seen)
      }),
      params(30),
    )
    console.log(`# RECLAIM ${name}: ${JSON.stringify(seen)}`)
    lengths.print()
    assertFloors(seen, {
      writesAcked: 100,
      deletesAcked: 30,
      mustSurvive: 3,
      zombieChecks: 100,
      reapsDuringRun: 20,
      reaps: 50,
    })
  })
}

// ---------------------------------------------------------------------------------------------
// The two ways an old copy could come back, each forced by a fixed schedule, with the negative
// control (the rule switched off) asserting the resurrection it then lets through.

const scenarioConfig = (
  mode: "ap" | "cp",
  unsafe?: Node.Config["unsafeReclaim"],
): Partial<Node.Config> => ({
  mode,
  tombstoneGraceMs: GRACE_MS,
  maxMessageAgeMs: MAX_AGE_MS,
  maxClockSkewMs: SKEW_MS,
  reapIntervalMs: 200,
  ...(unsafe === undefined ? {} : { unsafeReclaim: unsafe }),
})

/** Nodes holding a live `value` for `key`, and whether every copy of the key is gone. */
const holders = (sim: Simulation, key: string, value: string) => ({
  live: sim.ids.filter((id) =>
    Version.valuesAt(sim.stored(id, key) ?? Version.empty, sim.now).includes(value),
  ),
  gone: sim.ids.every((id) => sim.stored(id, key) === undefined),
})

/**
 * A replication message held on a cut link (b → c) is delivered after the key was deleted and
 * reclaimed: the age rule drops it; without it, c stores the deleted value again.
 */
const lateWrite = (unsafe?: "no-message-age") => {
  const sim = new Simulation({
    seed: 7,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    node: scenarioConfig("cp", unsafe),
  })
  const key = "late"
  const [a, b, c] = sim.replicasOf(key) as [NodeId, NodeId, NodeId]
  sim.block(b, c, { hold: true })
  const set = sim.call(b, { _tag: "Put", key, value: "zombie", context: null })
  assert.equal(set.result?._tag, "PutOk", "the SET through b is acknowledged (b and a)")
  const del = sim.call(a, { _tag: "Put", key, value: null, context: null })
  assert.equal(del.result?._tag, "PutOk", "the DEL through a is acknowledged")
  sim.runFor(10_000)
  const reclaimed = holders(sim, key, "zombie").gone
  assert.ok(sim.heldCount(b, c) > 0, "the SET's copy to c is still held on the cut link")
  sim.heal()
  sim.runFor(5000)
  return { reclaimed, after: holders(sim, key, "zombie"), stale: sim.stateOf(c)!.stats.stale }
}

test("RECLAIM-1: a copy held on a cut link and delivered after the key was reclaimed is dropped as too old (negative control: kept, it brings the deleted value back)", () => {
  const safe = lateWrite()
  assert.ok(safe.reclaimed, "the deleted key was reclaimed on every node while the link was cut")
  assert.ok(safe.stale > 0, "c dropped the late copy as stale")
  assert.deepEqual(safe.after.live, [], "no node holds the deleted value after the heal")
  const unsafe = lateWrite("no-message-age")
  assert.ok(unsafe.reclaimed, "negative control: the key was reclaimed as before")
  assert.ok(
    unsafe.after.live.length > 0,
    "negative control: without the age rule the late copy resurrects the deleted value",
  )
})

/**
 * A hint for c (down when the value was written) sits on a substitute that cannot reach c when
 * the value is deleted: the substitute is not calm, so the key waits; without that rule it is
 * reclaimed, and the hint handed off later brings the value back.
 */
const lateHint = (unsafe?: "no-calm") => {
  const sim = new Simulation({
    seed: 11,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    node: scenarioConfig("ap", unsafe),
  })
  const key = "hinted"
  const [a, , c] = sim.replicasOf(key) as [NodeId, NodeId, NodeId]
  sim.stop(c)
  sim.runFor(5000)
  const set = sim.call(a, { _tag: "Put", key, value: "zombie", context: null })
  assert.equal(set.result?._tag, "PutOk", "the SET is acknowledged with c down")
  const holder = sim.ids.find((id) => sim.isUp(id) && sim.storeOf(id).hintsFor(key).length > 0)
  assert.ok(holder !== undefined, "a substitute holds a hint for c")
  sim.block(holder, c)
  sim.restart(c)
  sim.runFor(3000)
  const del = sim.call(a, { _tag: "Put", key, value: null, context: null })
  assert.equal(del.result?._tag, "PutOk", "the DEL is acknowledged by the three replicas")
  sim.runFor(10_000)
  const early = holders(sim, key, "zombie").gone
  sim.heal()
  sim.runFor(15_000)
  return { early, after: holders(sim, key, "zombie") }
}

test("RECLAIM-1: a key is not reclaimed while a substitute still holds a hint for it (negative control: reclaimed, the hint brings the deleted value back)", () => {
  const safe = lateHint()
  assert.ok(!safe.early, "the key waits while the hint holder is not calm")
  assert.deepEqual(safe.after.live, [], "no node holds the deleted value after the handoff")
  assert.ok(safe.after.gone, "once the hint was handed off, the key was reclaimed everywhere")
  const unsafe = lateHint("no-calm")
  assert.ok(unsafe.early, "negative control: the key was reclaimed at once")
  assert.ok(
    unsafe.after.live.length > 0,
    "negative control: the hint handed off after the reclamation resurrects the deleted value",
  )
})

/**
 * A node's data directory is put back to a copy taken before a key was deleted and reclaimed
 * (with a restart of the node in between, as any backup older than the last restart): the node
 * notices its generation went back and stops; without that check, anti-entropy spreads the
 * deleted value from the old copy.
 */
const restoredStore = (unsafe?: "no-stale-store") => {
  const sim = new Simulation({
    seed: 13,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    node: scenarioConfig("cp", unsafe),
    onMachineError: "crash-stop",
  })
  const key = "restored"
  const [a, , c] = sim.replicasOf(key) as [NodeId, NodeId, NodeId]
  const set = sim.call(a, { _tag: "Put", key, value: "zombie", context: null })
  assert.equal(set.result?._tag, "PutOk", "the SET is acknowledged")
  sim.runFor(2000)
  assert.ok(holders(sim, key, "zombie").live.includes(c), "c holds the value")
  const copy = sim.snapshot(c)
  sim.stop(c)
  sim.restart(c)
  sim.runFor(3000)
  const del = sim.call(a, { _tag: "Put", key, value: null, context: null })
  assert.equal(del.result?._tag, "PutOk", "the DEL is acknowledged")
  sim.runFor(10_000)
  const reclaimed = holders(sim, key, "zombie").gone
  sim.stop(c)
  sim.restoreFrom(c, copy)
  sim.restart(c)
  sim.runFor(15_000)
  const running = sim.ids.filter((id) => sim.isUp(id))
  return {
    reclaimed,
    cRunning: sim.isUp(c),
    errors: sim.stepErrors,
    live: holders(sim, key, "zombie").live.filter((id) => running.includes(id)),
  }
}

test("RECLAIM-1: a node whose store was restored from a copy older than its last run stops instead of serving it (negative control: served, it brings a reclaimed value back)", () => {
  const safe = restoredStore()
  assert.ok(safe.reclaimed, "the key was reclaimed before the restore")
  assert.ok(!safe.cRunning, "the restored node stopped")
  assert.ok(
    safe.errors.some((e) => e.includes("restored from a copy")),
    `it said why: ${safe.errors.join("; ")}`,
  )
  assert.deepEqual(safe.live, [], "no running node holds the deleted value")
  const unsafe = restoredStore("no-stale-store")
  assert.ok(unsafe.reclaimed, "negative control: the key was reclaimed as before")
  assert.ok(unsafe.cRunning, "negative control: the restored node keeps running")
  assert.ok(
    unsafe.live.length > 1,
    `negative control: the old copy spreads the deleted value (held by ${unsafe.live})`,
  )
})

test("KV-6: a node whose data directory was emptied starts again with a generation its peers have seen: it takes over that generation with request ids no earlier run used, and its next restart is no restored copy (no StaleStore)", () => {
  const rids = new Map<number, Set<number>>()
  let run = 0
  const sim = new Simulation({
    seed: 17,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    node: scenarioConfig("cp"),
    onMachineError: "crash-stop",
    onCommands: (id, _event, commands) => {
      if (id !== "n2") return
      for (const c of commands) {
        if (c._tag !== "Send" || !("rid" in c.message)) continue
        if (c.message._tag !== "ReadRequest" && c.message._tag !== "WriteRequest") continue
        const set = rids.get(run) ?? new Set<number>()
        set.add(c.message.rid as number)
        rids.set(run, set)
      }
    },
  })
  const c = NodeId("n2")
  const work = (tag: string) => {
    for (let i = 0; i < 20; i++) {
      const op = sim.call(c, { _tag: "Put", key: `wipe${i}`, value: `${tag}${i}`, context: null })
      assert.equal(op.result?._tag, "PutOk", `${tag}: write ${i} through ${c}`)
    }
  }
  work("a")
  // Several restarts: the generation the cluster knows runs ahead of what an emptied store's
  // counter will count to before its next restart.
  for (let i = 0; i < 4; i++) {
    sim.stop(c)
    sim.restart(c)
    sim.runFor(1000)
    work(`r${i}-`)
  }
  sim.runFor(2000)
  run = 1
  work("b")
  // The data directory is emptied: no store, no saved view, the generation counter from zero.
  sim.stop(c)
  // (The generation counter starts again: this run is generation 1, as the very first was.)
  sim.restoreFrom(c, { store: new MemoryStore(), savedMembers: undefined, incarnation: -1 })
  sim.restart(c)
  sim.runFor(3000)
  run = 2
  work("c")
  sim.stop(c)
  sim.restart(c)
  sim.runFor(3000)
  run = 3
  work("d")
  assert.deepEqual(sim.stepErrors, [], "no StaleStore after the emptied node restarted")
  const all = [...rids.values()]
  assert.equal(all.length, 4, "each run sent requests")
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const shared = [...all[i]!].filter((r) => all[j]!.has(r))
      assert.deepEqual(shared, [], `runs ${i} and ${j} share request ids`)
    }
  }
})
