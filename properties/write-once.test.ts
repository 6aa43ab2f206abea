/**
 * KV-9 in the simulator: a write takes effect at most once, and never after a write invoked
 * after it completed. The schedule is the one that lost acknowledged writes on a real cluster:
 * plain SETs through random nodes (non-replicas forward them to a replica), replicas paused
 * (SIGSTOP: what reached them waits and runs after the resume) and partitions that hold
 * messages instead of dropping them (TCP behind a cut link: the queue arrives after the heal,
 * however late), with crashes, restarts and waits in between. A forwarder that fails over from
 * a silent replica to the next must not leave a copy of the write behind that runs later as a
 * fresh plain write, superseding what was acknowledged after it.
 *
 * One sequential client per run. After a heal, a resume of every paused node, a restart of
 * every crashed one and quiescence, a quorum read of every key is checked as spec/invariants.md
 * states KV-9, from the client's side: every acknowledged write `a` is among the final siblings,
 * or some write that had not completed when `a` was invoked is (a later write, or an earlier one
 * the client stopped waiting for). At most once: no value is twice among the siblings, and an
 * acknowledged value carries the event its acknowledgement named. Reads during the run may be
 * stale (sloppy quorums) but never return a value nobody wrote.
 *
 * Not asserted, counted (`resolvedToEarlierFailure`): finals whose *resolved* value (what a plain
 * GET returns) is neither the last acknowledged write nor a later one (the stricter KvModel
 * reading). KV-9 allows it: a write that failed at its forwarder (deadline) may still run at the
 * replica it was granted to, after a pause, as a sibling with a later timestamp.
 *
 * A failing case prints its seed and path; replay with FC_SEED, FC_PATH (and FC_SHOW=1 for the
 * run's trace).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import type * as Node from "../impl/core/node.ts"
import * as Ring from "../impl/core/ring.ts"
import * as Version from "../impl/core/version.ts"
import { type Operation, Simulation } from "../impl/sim/sim.ts"
import { KvModel } from "../models/kv.ts"
import { assertFloors, deep, params } from "./helpers/fc.ts"
import { resolvedValue } from "./helpers/schedule.ts"

const NODES = 5
const N = 3
/** Few keys, so that a key is written again while an old copy of its write still waits. */
const KEYS = ["k0", "k1"]
/** How long the client waits for an answer before it gives up on an operation (virtual ms). */
const PATIENCE_MS = 15_000
/** At most this many nodes paused or down at once. */
const MAX_OUT = 2

/**
 * Nodes are named relative to a key: `rank` indexes the key's walk of the ring (0..N-1 its
 * replicas in preference order, N.. the nodes that must forward its writes), so a shrunk
 * counterexample reads "pause k0's first replica, write k0 through a non-replica".
 */
type Action =
  | {
      _tag: "Write"
      key: number
      rank: number
      /** Pause the key's replica of this rank this many ms into the write. */
      pauseDuring: { rank: number; ms: number } | undefined
    }
  | { _tag: "Read"; key: number; rank: number }
  | { _tag: "Pause"; key: number; rank: number }
  | { _tag: "Resume"; which: number }
  | { _tag: "Crash"; key: number; rank: number }
  | { _tag: "Restart" }
  /** Two-way partition that holds messages (bit i of mask: node i on one side). */
  | { _tag: "HoldPartition"; mask: number }
  /** One-way cut that holds messages, from one node of the key's walk to another. */
  | { _tag: "HoldOneWay"; key: number; from: number; to: number }
  | { _tag: "Heal" }
  | { _tag: "Wait"; ms: number }

const key = fc.nat(KEYS.length - 1)
const rank = fc.nat(NODES - 1)

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      _tag: fc.constant("Write" as const),
      key,
      rank,
      pauseDuring: fc.oneof(
        { weight: 1, arbitrary: fc.constant(undefined) },
        {
          weight: 1,
          arbitrary: fc.record({ rank: fc.nat(N - 1), ms: fc.integer({ min: 0, max: 60 }) }),
        },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Read" as const), key, rank }) },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("Pause" as const), key, rank }) },
  {
    weight: 3,
    arbitrary: fc.record({ _tag: fc.constant("Resume" as const), which: fc.nat(MAX_OUT - 1) }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), key, rank }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("HoldPartition" as const),
      mask: fc.integer({ min: 1, max: 2 ** NODES - 2 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("HoldOneWay" as const), key, from: rank, to: rank }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Heal" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 100, max: 12_000 }),
    }),
  },
)

const LENGTH = 40
/**
 * size "max": lengths spread over the whole range up to LENGTH (fast-check's default size would
 * keep them near 10); shrinking may still drop the actions a failure does not need.
 */
const scheduleArb = fc.array(actionArb, { minLength: 1, maxLength: LENGTH, size: "max" })

/** What one run checked, summed over the runs for the floors below. */
interface Coverage {
  /** Acknowledged writes, each checked against the final siblings of its key. */
  acknowledged: number
  /** Writes invoked at a node that is not one of the key's replicas (forwarded). */
  forwarded: number
  /** Forwarded writes that were acknowledged while a replica was paused or cut off. */
  forwardedAckedAroundFault: number
  pauses: number
  /** Messages delivered late: held behind a cut until the heal, or queued at a paused node. */
  heldDelivered: number
  deferredMessages: number
  finalReads: number
  /** Finals whose resolved value is a write that failed before the last acknowledged one. */
  resolvedToEarlierFailure: number
  actions: number
  /** Runs whose schedule had at least 3/4 of LENGTH actions. */
  longRuns: number
  virtualMs: number
}

const newCoverage = (): Coverage => ({
  acknowledged: 0,
  forwarded: 0,
  forwardedAckedAroundFault: 0,
  pauses: 0,
  heldDelivered: 0,
  deferredMessages: 0,
  finalReads: 0,
  resolvedToEarlierFailure: 0,
  actions: 0,
  longRuns: 0,
  virtualMs: 0,
})

/** KV-9's violation: an acknowledged write, and everything that may supersede it, is gone. */
class LostWrite extends Error {
  constructor(
    readonly key: string,
    readonly acknowledged: string,
    readonly siblings: ReadonlyArray<string | null>,
  ) {
    super(
      `KV-9: the acknowledged ${acknowledged} of ${key} is missing from the final read ` +
        `(siblings: ${siblings.join(", ") || "none"}), and so is every write that had not ` +
        "completed when it was invoked",
    )
  }
}

/** A write that took effect twice: its value twice among the siblings, or under another event. */
class TwiceWrite extends Error {}

/** One invoked write, as the client saw it. */
interface WriteRecord {
  readonly key: string
  readonly value: string
  readonly op: Operation
  /** Values of this key's earlier writes that had no answer when this one was invoked. */
  readonly pendingAtInvoke: ReadonlySet<string>
  /** What the client saw when it stopped waiting (undefined: no answer). */
  seen?: Operation["result"]
}

const show = process.env.FC_SHOW === "1"

/** Which of the final checks run (the negative controls isolate one). */
interface Checks {
  /** Every acknowledged write, or something that may supersede it, is among the siblings. */
  readonly lost: boolean
  /** No write took effect twice. */
  readonly twice: boolean
}

const ALL: Checks = { lost: true, twice: true }

/** Run one schedule on a fresh 5-node cluster; throws on a violation. */
const runSchedule = (
  seed: number,
  schedule: ReadonlyArray<Action>,
  node: Partial<Node.Config>,
  coverage: Coverage,
  checks: Checks = ALL,
): void => {
  const sim = new Simulation({
    seed,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 20, lossRate: 0, duplicateRate: 0 },
    node: { ...node, handoffIntervalMs: 200 },
    // A machine exception crash-stops its node and the run goes on; asserted 0 below.
    onMachineError: "crash-stop",
  })
  const ring = Ring.make(
    sim.ids.map((id) => ({ id, weight: 1 })),
    sim.stateOf(sim.ids[0]!)!.config.tokensPerNode,
  )
  /** Each key's walk of the ring: its replicas first, then the nodes that forward its writes. */
  const walks = KEYS.map((k) => Ring.preferenceList(ring, k, NODES))
  /** The stricter reading, counted only: the last acknowledged value or a later failed one. */
  const model = new KvModel()
  /** Values the client may see per key: everything invoked so far (null: absent). */
  const ever = new Map<string, Set<string | null>>(KEYS.map((k) => [k, new Set([null])]))
  const writes: Array<WriteRecord> = []
  const trace: Array<string> = []
  let values = 0

  const out = (): ReadonlyArray<NodeId> => sim.ids.filter((id) => !sim.isUp(id) || sim.isPaused(id))
  /** The node of `rank` in the key's walk, or the next one after it that can take a request. */
  const serving = (k: number, r: number): NodeId | undefined => {
    const walk = walks[k]!
    for (let i = 0; i < walk.length; i++) {
      const id = walk[(r + i) % walk.length]!
      if (sim.isUp(id) && !sim.isPaused(id)) return id
    }
    return undefined
  }
  const pausable = (id: NodeId): boolean =>
    sim.isUp(id) && !sim.isPaused(id) && out().length < MAX_OUT
  const faultNearKey = (k: string): boolean =>
    sim.replicasOf(k).some((id) => sim.isPaused(id) || !sim.isUp(id)) || sim.heldCount() > 0
  const wait = (op: Operation): void => {
    sim.runUntil(() => op.result !== undefined, PATIENCE_MS)
  }

  for (const action of schedule) {
    switch (action._tag) {
      case "Write": {
        const k = KEYS[action.key]!
        const at = serving(action.key, action.rank)
        if (at === undefined) break
        const value = `v${values++}`
        ever.get(k)!.add(value)
        const forwarded = !sim.replicasOf(k).includes(at)
        if (forwarded) coverage.forwarded++
        const pendingAtInvoke = new Set(
          writes.filter((w) => w.key === k && w.op.result === undefined).map((w) => w.value),
        )
        const op = sim.invoke(at, { _tag: "Put", key: k, value, context: null })
        const record: WriteRecord = { key: k, value, op, pendingAtInvoke }
        writes.push(record)
        if (action.pauseDuring !== undefined) {
          sim.runUntil(() => op.result !== undefined, action.pauseDuring.ms)
          const victim = walks[action.key]![action.pauseDuring.rank]!
          if (op.result === undefined && pausable(victim)) {
            sim.pause(victim)
            trace.push(`${sim.now}: pause ${victim} during the write of ${value}`)
          }
        }
        wait(op)
        const result = op.result
        record.seen = result
        trace.push(`${sim.now}: SET ${k} ${value} at ${at} -> ${result?._tag ?? "no answer"}`)
        if (result?._tag === "PutOk") {
          model.written(k, value)
          if (forwarded && faultNearKey(k)) coverage.forwardedAckedAroundFault++
        } else model.indeterminate(k, value)
        break
      }
      case "Read": {
        const k = KEYS[action.key]!
        const at = serving(action.key, action.rank)
        if (at === undefined) break
        const op = sim.invoke(at, { _tag: "Get", key: k })
        wait(op)
        if (op.result?._tag !== "GetOk") break
        for (const v of Version.values(op.result.obj)) {
          assert.ok(ever.get(k)!.has(v), `read of ${k} at ${at} returned ${v}, never written`)
        }
        break
      }
      case "Pause": {
        const id = walks[action.key]![action.rank]!
        if (!pausable(id)) break
        sim.pause(id)
        trace.push(`${sim.now}: pause ${id}`)
        break
      }
      case "Resume": {
        const paused = sim.ids.filter((id) => sim.isPaused(id))
        if (paused.length === 0) break
        const id = paused[action.which % paused.length]!
        sim.resume(id)
        trace.push(`${sim.now}: resume ${id}`)
        break
      }
      case "Crash": {
        const id = walks[action.key]![action.rank]!
        if (!sim.isUp(id) || out().filter((o) => o !== id).length >= MAX_OUT) break
        sim.stop(id)
        trace.push(`${sim.now}: crash ${id}`)
        break
      }
      case "Restart":
        for (const id of sim.ids) {
          if (sim.isUp(id)) continue
          sim.restart(id)
          trace.push(`${sim.now}: restart ${id}`)
        }
        break
      case "HoldPartition": {
        const side = sim.ids.filter((_, i) => (action.mask >> i) & 1)
        const other = sim.ids.filter((_, i) => !((action.mask >> i) & 1))
        sim.partition([side, other], { hold: true })
        trace.push(`${sim.now}: hold partition ${side.join(",")} | ${other.join(",")}`)
        break
      }
      case "HoldOneWay": {
        const walk = walks[action.key]!
        const [from, to] = [walk[action.from]!, walk[action.to]!]
        if (from === to) break
        sim.block(from, to, { hold: true })
        trace.push(`${sim.now}: hold ${from} -> ${to}`)
        break
      }
      case "Heal":
        sim.heal()
        trace.push(`${sim.now}: heal`)
        break
      case "Wait":
        sim.runFor(action.ms)
        break
    }
  }

  // Heal, resume, restart; let the late copies arrive and run, and the replicas converge.
  sim.heal()
  for (const id of sim.ids) sim.resume(id)
  for (const id of sim.ids) sim.restart(id)
  trace.push(`${sim.now}: heal, resume and restart everything`)
  sim.runFor(20_000)
  coverage.actions += schedule.length
  if (schedule.length >= (LENGTH * 3) / 4) coverage.longRuns++
  coverage.virtualMs += sim.now
  coverage.pauses += sim.counters.pauses
  coverage.heldDelivered += sim.counters.heldDelivered
  coverage.deferredMessages += sim.counters.deferredMessages
  assert.equal(sim.counters.stepErrors, 0, `machine exceptions: ${sim.stepErrors.join("\n")}`)

  for (const [i, k] of KEYS.entries()) {
    const op = sim.invoke(walks[i]![0]!, { _tag: "Get", key: k, r: N })
    wait(op)
    assert.equal(op.result?._tag, "GetOk", `final read of ${k}: ${JSON.stringify(op.result)}`)
    if (op.result?._tag !== "GetOk") continue
    coverage.finalReads++
    const siblings = Version.siblings(op.result.obj)
    const values = siblings.map((d) => d.sibling.value)
    const fail = (error: Error): never => {
      if (show) console.log(trace.join("\n"))
      throw error
    }
    for (const v of values) {
      if (!ever.get(k)!.has(v)) fail(new Error(`final read of ${k} returned ${v}, never written`))
    }
    const ofKey = writes.filter((w) => w.key === k)
    // Never after a write invoked after it completed: every acknowledged write is there, or
    // something that may supersede it (a later write, or one not answered when it was invoked).
    ofKey.forEach((a, i) => {
      if (a.seen?._tag !== "PutOk") return
      coverage.acknowledged++
      const mayStand = new Set([
        a.value,
        ...ofKey.slice(i + 1).map((w) => w.value),
        ...a.pendingAtInvoke,
      ])
      if (checks.lost && !values.some((v) => v !== null && mayStand.has(v))) {
        fail(new LostWrite(k, a.value, values))
      }
    })
    // At most once.
    if (checks.twice && new Set(values).size !== values.length) {
      fail(new TwiceWrite(`KV-9: a value is twice among the final siblings of ${k}: ${values}`))
    }
    for (const w of ofKey) {
      if (!checks.twice || w.seen?._tag !== "PutOk") continue
      const { dot } = w.seen
      const sibling = siblings.find((d) => d.sibling.value === w.value)
      if (sibling !== undefined && (sibling.actor !== dot[0] || sibling.counter !== dot[1])) {
        fail(
          new TwiceWrite(
            `KV-9: ${w.value} of ${k} was acknowledged as event ${dot} but is held as ` +
              `${sibling.actor},${sibling.counter}: it took effect twice`,
          ),
        )
      }
    }
    // The stricter reading, counted: unanswered writes may land any time, so they stay allowed.
    const unanswered = ofKey.filter((w) => w.seen === undefined).map((w) => w.value)
    const resolved = resolvedValue(op.result.obj)
    if (!model.allowed(k).has(resolved) && !unanswered.includes(resolved ?? "")) {
      coverage.resolvedToEarlierFailure++
    }
  }
}

const RUNS = 600
/** Floors per default batch (DHT_DEEP=1 runs 10x the cases; the floors stay). */
/**
 * Acknowledged writes checked, forwarded writes, forwarded writes acknowledged around a pause or
 * cut, pauses, held messages delivered late, messages to paused nodes processed late, and
 * schedules near full length.
 */
const assertCoverage = (c: Coverage): void =>
  assertFloors(c, {
    acknowledged: 3 * RUNS,
    forwarded: 2 * RUNS,
    forwardedAckedAroundFault: RUNS,
    pauses: RUNS,
    heldDelivered: 50 * RUNS,
    deferredMessages: 50 * RUNS,
    longRuns: RUNS / 10,
  })

test("KV-9: a plain SET takes effect at most once and never after a write invoked after it completed: forwarded writes through pauses, held partitions, crashes and restarts", () => {
  const coverage = newCoverage()
  fc.assert(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      runSchedule(seed, schedule, {}, coverage)
    }),
    params(RUNS),
  )
  if (show || deep) console.log(JSON.stringify(coverage))
  assertCoverage(coverage)
})

/**
 * Negative controls: the old failover (unsafeFailover: a coordinator runs a forwarded write
 * without the forwarder's grant) on the same schedules. Each check is run alone, so that the
 * violation reported is the one it names; the run stops at the first failure.
 */
const negative = (checks: Checks, expected: new (...args: Array<never>) => Error): void => {
  const coverage = newCoverage()
  const outcome = fc.check(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      runSchedule(seed, schedule, { unsafeFailover: true }, coverage, checks)
    }),
    params(RUNS, { endOnFailure: true }),
  )
  assert.ok(outcome.failed, "the old failover passed: the check has no teeth")
  assert.ok(
    outcome.errorInstance instanceof expected,
    `expected ${expected.name}, got ${String(outcome.errorInstance)}`,
  )
}

test("KV-9: negative control: with the old failover (unsafeFailover) an acknowledged write goes missing from the final read", () => {
  negative({ lost: true, twice: false }, LostWrite)
})

test("KV-9: negative control: with the old failover (unsafeFailover) a forwarded write takes effect twice", () => {
  negative({ lost: false, twice: true }, TwiceWrite)
})
