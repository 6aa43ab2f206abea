/**
 * Causal properties in the simulator (CAUSAL-*): several concurrent client sessions against a
 * 5-node cluster (N=3, R=W=2) under loss, duplication, reordering, crashes, partitions and heals.
 * The fault schedule is generated as data (a list of actions), so shrinking drops the faults that
 * do not matter. The checker follows ec_eqc (riak_kv): a *must* set of acknowledged writes that
 * nothing superseded, and the final siblings must include all of them.
 *
 * A failing case prints its seed and path; replay with FC_SEED and FC_PATH.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientOp } from "../impl/core/messages.ts"
import type * as Node from "../impl/core/node.ts"
import * as Version from "../impl/core/version.ts"
import { type Operation, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, Lengths, params, scheduleMax } from "./helpers/fc.ts"

const KEYS = ["k0", "k1", "k2"]
const CLIENTS = 3
const NODES = 5

type Action =
  | {
      _tag: "Write"
      client: number
      node: number
      key: number
      /** read: the session's context; none: a new sibling; blind: a plain SET; del: delete. */
      mode: "read" | "none" | "blind" | "del"
    }
  | { _tag: "Read"; client: number; node: number; key: number }
  | { _tag: "Partition"; mask: number }
  | { _tag: "Heal" }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart"; node: number }
  | { _tag: "Network"; loss: number; dup: number }
  | { _tag: "Slow"; node: number; ms: number }
  | { _tag: "OneWay"; from: number; to: number }
  | { _tag: "Wait"; ms: number }

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Write" as const),
      client: fc.nat(CLIENTS - 1),
      node: fc.nat(NODES - 1),
      key: fc.nat(KEYS.length - 1),
      mode: fc.constantFrom(
        "read" as const,
        "read" as const,
        "none" as const,
        "blind" as const,
        "del" as const,
      ),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Read" as const),
      client: fc.nat(CLIENTS - 1),
      node: fc.nat(NODES - 1),
      key: fc.nat(KEYS.length - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Partition" as const),
      mask: fc.integer({ min: 1, max: 30 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Heal" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(NODES - 1) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Restart" as const), node: fc.nat(NODES - 1) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Network" as const),
      loss: fc.constantFrom(0, 0.05, 0.2),
      dup: fc.constantFrom(0, 0.1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Slow" as const),
      node: fc.nat(NODES - 1),
      ms: fc.constantFrom(0, 50, 300),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("OneWay" as const),
      from: fc.nat(NODES - 1),
      to: fc.nat(NODES - 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 1, max: 400 }),
    }),
  },
)

const scheduleArb = fc.array(actionArb, { minLength: 10, maxLength: scheduleMax(120) })
const causalLengths = new Lengths("CAUSAL schedules", scheduleMax(120))

/** What the checker knows of one invoked write. */
interface WriteRecord {
  readonly id: number
  readonly client: number
  readonly key: string
  readonly value: string | null
  /** The context sent with it; undefined for a blind write (chosen inside the cluster). */
  readonly context: Version.Clock | undefined
  readonly invokedAt: number
  readonly op: Operation
  /**
   * What the write superseded: its context, or for an acknowledged blind write the context it
   * was minted with (its result's context: a plain write supersedes everything its coordinator
   * knew, so the written object's clock is exactly that plus its own dot).
   */
  superseded?: Version.Clock
  /** The write's own event, once known (from its ack or from a read that saw it). */
  dot?: readonly [string, number]
}

export interface Coverage {
  /** CAUSAL-3 and CAUSAL-5 comparisons that used a blind write's minted context. */
  blindChecks: number
  siblings: number
  readRepairs: number
  ackedWithReplicaUnreachable: number
  ackedDuringPartition: number
  purges: number
}

const covers = (clock: Version.Clock, dot: readonly [string, number]): boolean =>
  Version.descends(clock, [dot])

interface RunResult {
  readonly sim: Simulation
  readonly writes: ReadonlyArray<WriteRecord>
  readonly finalReads: ReadonlyMap<string, Operation>
}

/** Run a schedule; assert the online checks (no value from nowhere, read-your-writes, …). */
const runSchedule = (
  seed: number,
  schedule: ReadonlyArray<Action>,
  node: Partial<Node.Config>,
  coverage: Coverage,
): RunResult => {
  // Sloppy quorums (AP) give up read-your-writes and read-after-ack during faults; those two
  // checks apply to strict quorums only. Everything else, and the final state, holds in both.
  const strict = node.mode === "cp"
  const sim = new Simulation({
    seed,
    nodes: NODES,
    network: { latencyMinMs: 1, latencyMaxMs: 20, lossRate: 0, duplicateRate: 0 },
    node: { ...node, forwardTimeoutMs: 300, requestTimeoutMs: 1500, handoffIntervalMs: 200 },
  })
  const writes: Array<WriteRecord> = []
  const byValue = new Map<string, WriteRecord>()
  const sessions = Array.from({ length: CLIENTS }, () => ({
    busy: undefined as Operation | undefined,
    contexts: new Map<string, Version.Clock>(),
    lastAcked: new Map<string, WriteRecord>(),
    onDone: undefined as (() => void) | undefined,
  }))
  let partitioned = false

  const settle = (): void => {
    for (const s of sessions) {
      if (s.busy?.result !== undefined) {
        s.onDone?.()
        s.busy = undefined
        s.onDone = undefined
      }
    }
  }
  /** A session issues one operation at a time: wait (bounded) for its previous one. */
  const ready = (client: number) => {
    const s = sessions[client]!
    if (s.busy !== undefined) sim.runUntil(() => s.busy!.result !== undefined, 10_000)
    settle()
    return s
  }
  const liveAt = (index: number): NodeId | undefined => {
    const live = sim.ids.filter((id) => sim.isUp(id))
    return live.length === 0 ? undefined : live[index % live.length]
  }

  let final = false
  const checkRead = (client: number, key: string, op: Operation): void => {
    const result = op.result!
    if (result._tag !== "GetOk") return
    const sibs = Version.siblings(result.obj)
    if (sibs.length > 1) coverage.siblings++
    const ctx = Version.context(result.obj)
    for (const d of sibs) {
      if (d.sibling.value === null) continue
      // CAUSAL-2: every value read was written by some invoked write of this key.
      const w = byValue.get(d.sibling.value)
      assert.ok(w !== undefined && w.key === key, `value from nowhere: ${d.sibling.value}`)
      w.dot ??= [d.actor, d.counter]
    }
    // CAUSAL-4: a session reads its own last acknowledged write or something that descends it.
    const own = sessions[client]!.lastAcked.get(key)
    // A purged tombstone leaves no context behind: reading nothing is reading one's own delete.
    const purgedOwnDelete = own?.value === null && sibs.length === 0
    const after = (w: WriteRecord) => strict || final || w.op.completedAt! <= 0
    if (
      own?.dot !== undefined &&
      own.op.completedAt! <= op.invokedAt &&
      !purgedOwnDelete &&
      after(own)
    ) {
      assert.ok(covers(ctx, own.dot), `client ${client} did not read its own write ${own.value}`)
    }
    const same = (w: WriteRecord, d: Version.Dotted) =>
      w.dot !== undefined && w.dot[0] === d.actor && w.dot[1] === d.counter
    // CAUSAL-5: siblings are truly concurrent writes (neither write's context saw the other).
    for (const a of sibs) {
      for (const b of sibs) {
        const wa = a.sibling.value === null ? undefined : byValue.get(a.sibling.value)
        if (a === b || wa?.superseded === undefined || same(wa, b)) continue
        if (wa.context === undefined) coverage.blindChecks++
        assert.ok(!covers(wa.superseded, [b.actor, b.counter]), "a sibling superseded by another")
      }
    }
    // CAUSAL-3: a value superseded by a write acknowledged before this read began never returns.
    for (const d of sibs) {
      for (const w of writes) {
        if (w.key !== key || w.superseded === undefined || w.op.result?._tag !== "PutOk") continue
        if (w.op.completedAt! > op.invokedAt || !after(w) || same(w, d)) continue
        if (w.context === undefined) coverage.blindChecks++
        assert.ok(
          !covers(w.superseded, [d.actor, d.counter]),
          `superseded value resurfaced in ${key}`,
        )
      }
    }
    sessions[client]!.contexts.set(key, ctx)
  }

  for (const action of schedule) {
    settle()
    switch (action._tag) {
      case "Write": {
        const s = ready(action.client)
        const at = liveAt(action.node)
        if (at === undefined) break
        const key = KEYS[action.key]!
        const value = action.mode === "del" ? null : `w${writes.length}`
        const context =
          action.mode === "blind"
            ? undefined
            : action.mode === "none"
              ? Version.emptyClock
              : (s.contexts.get(key) ?? Version.emptyClock)
        const put: ClientOp = { _tag: "Put", key, value, context: context ?? null }
        const op = sim.invoke(at, put)
        const w: WriteRecord = {
          id: writes.length,
          client: action.client,
          key,
          value,
          context,
          invokedAt: sim.now,
          op,
          ...(context === undefined ? {} : { superseded: context }),
        }
        writes.push(w)
        if (value !== null) byValue.set(value, w)
        const unreachable = sim.replicasOf(key).some((id) => !sim.isUp(id))
        s.busy = op
        s.onDone = () => {
          if (op.result?._tag !== "PutOk") return
          w.dot = op.result.dot
          if (w.context === undefined) w.superseded = op.result.context
          s.lastAcked.set(key, w)
          s.contexts.set(key, op.result.context)
          if (unreachable) coverage.ackedWithReplicaUnreachable++
          if (partitioned) coverage.ackedDuringPartition++
        }
        break
      }
      case "Read": {
        const s = ready(action.client)
        const at = liveAt(action.node)
        if (at === undefined) break
        const key = KEYS[action.key]!
        const op = sim.invoke(at, { _tag: "Get", key })
        s.busy = op
        s.onDone = () => checkRead(action.client, key, op)
        break
      }
      case "Partition": {
        const groups = [
          sim.ids.filter((_, i) => (action.mask >> i) & 1),
          sim.ids.filter((_, i) => !((action.mask >> i) & 1)),
        ]
        sim.heal()
        sim.partition(groups)
        partitioned = true
        break
      }
      case "Heal":
        sim.heal()
        partitioned = false
        break
      case "Crash": {
        const at = liveAt(action.node)
        if (at !== undefined && sim.ids.filter((id) => sim.isUp(id)).length > 1) sim.stop(at)
        break
      }
      case "Restart":
        for (const id of sim.ids) if (!sim.isUp(id)) sim.restart(id)
        break
      case "Network":
        sim.network = { ...sim.network, lossRate: action.loss, duplicateRate: action.dup }
        break
      case "Slow":
        sim.slow(sim.ids[action.node]!, action.ms)
        break
      case "OneWay":
        // An asymmetric partition: `from` cannot reach `to`, but `to` still reaches `from`.
        if (action.from !== action.to) {
          sim.block(sim.ids[action.from]!, sim.ids[action.to]!)
          partitioned = true
        }
        break
      case "Wait":
        sim.runFor(action.ms)
        break
    }
  }

  // Heal everything, let in-flight work finish, then read every key from every replica.
  sim.heal()
  for (const id of sim.ids) sim.slow(id, 0)
  sim.network = { ...sim.network, lossRate: 0, duplicateRate: 0 }
  for (const id of sim.ids) sim.restart(id)
  sim.runFor(5_000)
  settle()
  for (let c = 0; c < CLIENTS; c++) ready(c)
  const finalReads = new Map<string, Operation>()
  final = true
  for (const key of KEYS) {
    const op = sim.call(sim.ids[0]!, { _tag: "Get", key, r: 3 })
    assert.equal(op.result?._tag, "GetOk", `final read of ${key} after heal`)
    checkRead(0, key, op)
    finalReads.set(key, op)
  }
  sim.runFor(2_000)
  for (const n of sim.ids) coverage.readRepairs += sim.stateOf(n)!.stats.readRepairs
  for (const n of sim.ids) coverage.purges += sim.stateOf(n)!.stats.purges
  return { sim, writes, finalReads }
}

/** CAUSAL-1: every acknowledged write nothing superseded is among the final siblings. */
const checkNoLostWrite = (run: RunResult): void => {
  for (const w of run.writes) {
    if (w.op.result?._tag !== "PutOk" || w.value === null) continue
    const superseded = run.writes.some(
      (y) =>
        y !== w &&
        y.key === w.key &&
        // A blind write supersedes what its read quorum saw: any write invoked before it ended.
        (y.context === undefined
          ? (y.op.completedAt ?? Number.POSITIVE_INFINITY) >= w.invokedAt
          : covers(y.context, w.dot!)),
    )
    if (superseded) continue
    const final = run.finalReads.get(w.key)!.result!
    assert.equal(final._tag, "GetOk")
    const values = final._tag === "GetOk" ? Version.values(final.obj) : []
    assert.ok(values.includes(w.value), `acknowledged write ${w.value} of ${w.key} was lost`)
  }
}

/** CAUSAL-6: after heal and quiescence every replica of a key holds the same object. */
const checkConvergence = (run: RunResult): void => {
  for (const key of KEYS) {
    const replicas = run.sim.replicasOf(key)
    const objs = replicas.map((id) => run.sim.stored(id, key) ?? Version.empty)
    for (const obj of objs) {
      assert.ok(
        Version.equals(obj, objs[0]!),
        `replicas ${replicas.join(",")} of ${key} diverge after heal: ${JSON.stringify(objs)}`,
      )
    }
  }
}

const newCoverage = (): Coverage => ({
  blindChecks: 0,
  siblings: 0,
  readRepairs: 0,
  ackedWithReplicaUnreachable: 0,
  ackedDuringPartition: 0,
  purges: 0,
})

const CP: Partial<Node.Config> = { mode: "cp" }
const AP: Partial<Node.Config> = { mode: "ap" }

const assertCoverage = (coverage: Coverage): void => {
  // The checks have teeth only if the dangerous states were reached: reads that saw siblings,
  // read repairs, writes that met their quorum with a replica down or during a partition, and
  // blind writes whose superseded set was checked.
  assertFloors(coverage, {
    siblings: 1,
    readRepairs: 1,
    ackedWithReplicaUnreachable: 1,
    ackedDuringPartition: 1,
    blindChecks: 1,
  })
}

test("CAUSAL-1, CAUSAL-2, CAUSAL-3, CAUSAL-4, CAUSAL-5, CAUSAL-6: strict quorums: no lost write, no value from nowhere, no resurrection, read-your-writes, true siblings, convergence", () => {
  const coverage = newCoverage()
  fc.assert(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      causalLengths.add(schedule.length)
      const run = runSchedule(seed, schedule, CP, coverage)
      checkNoLostWrite(run)
      checkConvergence(run)
    }),
    params(40),
  )
  causalLengths.print()
  assertCoverage(coverage)
})

test("CAUSAL-1, CAUSAL-2, CAUSAL-5, CAUSAL-6: sloppy quorums (AP): no lost write, no value from nowhere, true siblings, convergence after handoff", () => {
  const coverage = newCoverage()
  fc.assert(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      const run = runSchedule(seed, schedule, AP, coverage)
      checkNoLostWrite(run)
      checkConvergence(run)
    }),
    params(40),
  )
  assertCoverage(coverage)
})

test("CAUSAL-7: negative control: a last-write-wins merge makes CAUSAL-1 fail", () => {
  const coverage = newCoverage()
  const lww: Partial<Node.Config> = { ...CP, namespaces: [{ prefix: "", policy: "lww" }] }
  const outcome = fc.check(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      checkNoLostWrite(runSchedule(seed, schedule, lww, coverage))
    }),
    params(40),
  )
  assert.ok(outcome.failed, "lww silently passed the no-lost-write check: the check has no teeth")
})

test("CAUSAL-8, CAUSAL-3: a deleted value never reappears through partitions, heals, repairs, handoffs and purges", () => {
  for (const mode of [CP, AP]) {
    const coverage = newCoverage()
    fc.assert(
      fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
        // A short grace period so that purges happen inside the run. CAUSAL-3 is the zombie
        // check: a value superseded by an acknowledged delete never returns (in AP: never
        // after recovery, which is when stale reads end).
        const run = runSchedule(seed, schedule, { ...mode, tombstoneGraceMs: 50 }, coverage)
        checkConvergence(run)
      }),
      params(25),
    )
    assert.ok(coverage.purges > 0, "no tombstone was ever purged")
  }
})
