/**
 * Membership changes under load (REBAL-*): joins, leaves, removals of dead nodes and crashes,
 * interleaved with writes and reads, in the simulator and on the machine layer (machines
 * stepped directly, fast-check choosing which message is delivered next:
 * properties/helpers/machines.ts). The schedule is generated data; it keeps at most one node
 * down at a time and never shrinks the cluster below N, so that every key keeps a quorum of
 * its replicas.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import type { OperatorOp } from "../impl/core/messages.ts"
import * as Membership from "../impl/core/membership.ts"
import { defaultNetwork, type Operation, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, Lengths, params, scheduleMax } from "./helpers/fc.ts"
import { type Cluster, choicesArb, Machines } from "./helpers/machines.ts"
import { type Action, actionArb, KEYS, resolvedValue, ScheduleRun } from "./helpers/schedule.ts"

const actions = actionArb({ removals: true })

/** What REBAL-* need of a cluster, in the simulator or as machines stepped directly. */
type Rebalancing = Cluster & {
  addNode(): NodeId
  operator(at: NodeId, op: OperatorOp): Operation
  runUntil(done: () => boolean, maxMs: number): boolean
}

/** Members as node `at` sees them. */
const statuses = (sim: Rebalancing, at: NodeId) =>
  new Map([...Membership.view(sim.stateOf(at)!.membership).values()].map((e) => [e.id, e.status]))

/** No live node sees a member joining or leaving any more. */
const settled = (sim: Rebalancing, run: ScheduleRun): boolean =>
  run
    .live()
    .every((id) => [...statuses(sim, id).values()].every((s) => s === "up" || s === "removed"))

/**
 * `who` leaves through the operator and is awaited until it has handed over and stopped; false
 * if it refused to begin (REBAL-1 then skips the action), an assertion if it never finished.
 */
const leave = (
  sim: Rebalancing,
  run: ScheduleRun,
  who: NodeId,
  withinMs: number,
  during = "",
): boolean => {
  if (sim.operator(who, { _tag: "Leave" }).result?._tag !== "Done") return false
  assert.ok(
    sim.runUntil(() => !sim.isUp(who), withinMs),
    `${who} never finished leaving${during}`,
  )
  run.gone.add(who)
  return true
}

/** Every membership change REBAL-1 must cover, in a schedule where each one can happen. */
const coveringSchedule: ReadonlyArray<Action> = [
  { _tag: "Write", key: 0, node: 0 },
  { _tag: "Join" },
  { _tag: "Wait", ms: 3000 },
  { _tag: "Write", key: 1, node: 1 },
  { _tag: "Leave", node: 0 },
  { _tag: "Write", key: 2, node: 2 },
  { _tag: "Crash", node: 1 },
  { _tag: "Wait", ms: 3000 },
  { _tag: "Write", key: 3, node: 0 },
  { _tag: "RemoveDead" },
  { _tag: "Write", key: 4, node: 1 },
  { _tag: "Read", key: 1, node: 2 },
]

const rebalLengths = new Lengths("REBAL-1", scheduleMax(60))

/** What a batch of REBAL-1 schedules did (so that it cannot pass vacuously). */
const newSeen = () => ({
  joins: 0,
  leaves: 0,
  removals: 0,
  streamed: 0,
  acked: 0,
  indeterminate: 0,
  readsChecked: 0,
  readsFailed: 0,
  finalChecked: 0,
  finalValues: 0,
  overtaking: 0,
})

/** One REBAL-1 schedule on `sim`: every read allowed by the model, every key's last value kept. */
const rebal1 = (
  sim: Rebalancing,
  schedule: ReadonlyArray<Action>,
  seen: ReturnType<typeof newSeen>,
): void => {
  rebalLengths.add(schedule.length)
  const run = new ScheduleRun(sim)
  for (const action of schedule) {
    switch (action._tag) {
      case "Write":
        run.write(action)
        break
      case "Read": {
        const obj = run.read(action)
        if (obj === undefined) break
        seen.readsChecked++
        const key = KEYS[action.key]!
        const v = resolvedValue(obj)
        assert.ok(
          run.model.allowed(key).has(v),
          `read ${key} = ${v}, allowed ${[...run.model.allowed(key)]}`,
        )
        break
      }
      case "Join":
        if (run.active().length >= 7 || run.down().length > 0) break
        sim.addNode()
        seen.joins++
        break
      case "Leave": {
        // Leave only from a settled, fully up cluster that keeps N members afterwards.
        const up = run.live().filter((id) => statuses(sim, id).get(id) === "up")
        if (run.down().length > 0 || up.length < 4 || up.length !== run.active().length) break
        if (!leave(sim, run, up[action.node % up.length]!, 120_000)) break
        seen.leaves++
        break
      }
      case "Crash":
        run.crash(action, 3)
        break
      case "Restart":
        run.restartAll()
        break
      case "RemoveDead": {
        const dead = run.down()[0]
        if (dead === undefined || run.active().length <= 3) break
        const op = sim.operator(run.live()[0]!, { _tag: "Remove", node: dead })
        // Refused (e.g. the dead node's join had not reached this node yet): still down.
        if (op.result?._tag !== "Done") break
        run.gone.add(dead)
        seen.removals++
        break
      }
      case "Wait":
        sim.runFor(action.ms)
        break
    }
  }
  // Let every change settle: restart the crashed, wait until no member is joining or leaving.
  run.restartAll()
  assert.ok(
    sim.runUntil(() => settled(sim, run), 300_000),
    "membership did not settle",
  )
  sim.runFor(10_000)
  run.checkFinal((op) => sim.call(run.live()[0]!, op))
  for (const id of sim.ids) seen.streamed += sim.stateOf(id)?.stats.streamed ?? 0
  seen.acked += run.counts.acked
  seen.indeterminate += run.counts.indeterminate
  seen.readsFailed += run.counts.readsFailed
  seen.finalChecked += run.counts.finalChecked
  seen.finalValues += run.counts.finalValues
}

const REBAL1_FLOORS = {
  joins: 1,
  leaves: 1,
  removals: 1,
  streamed: 1,
  acked: 100,
  readsChecked: 50,
  finalChecked: 100,
  finalValues: 50,
}

const scheduleArb = fc.array(actions, { minLength: 5, maxLength: scheduleMax(60) })

/** One REBAL-2 run: a join and a leave complete while a member is down and not removed. */
const rebal2 = (
  sim: Rebalancing,
  [writes, crashed, leaver]: [Array<[number, number]>, number, number],
  seen: { joined: number; left: number; finalChecked: number },
): void => {
  const run = new ScheduleRun(sim)
  for (const [key, node] of writes) run.write({ key, node })
  const dead = sim.ids[crashed]!
  sim.stop(dead)
  // The joiner must not wait forever for the dead member (it never acknowledges).
  const joiner = sim.addNode()
  for (const [key, node] of writes) run.write({ key, node: node + 1 })
  assert.ok(
    sim.runUntil(() => statuses(sim, joiner).get(joiner) === "up", 180_000),
    `${joiner} never finished joining while ${dead} was down`,
  )
  seen.joined++
  const who = run.live().filter((id) => id !== joiner)[leaver % 4]!
  assert.ok(leave(sim, run, who, 180_000, ` while ${dead} was down`), `${who} refused to leave`)
  seen.left++
  sim.restart(dead)
  assert.ok(
    sim.runUntil(() => settled(sim, run), 300_000),
    "membership did not settle",
  )
  sim.runFor(20_000)
  run.checkFinal((read) => sim.call(run.live()[0]!, read))
  seen.finalChecked += run.counts.finalChecked
}

const rebal2Arb = fc.tuple(
  fc.array(fc.tuple(fc.nat(KEYS.length - 1), fc.nat(9)), { minLength: 5, maxLength: 40 }),
  fc.nat(4),
  fc.nat(4),
)

test("REBAL-1: no acknowledged write is lost through joins, leaves, removals and crashes that leave a quorum of each key's replicas", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(fc.integer(), scheduleArb, (seed, schedule) => {
      const node = { streamBatch: 16 }
      rebal1(new Simulation({ seed, nodes: 4, network: defaultNetwork, node }), schedule, seen)
    }),
    // The example schedule always runs first: a join, a leave, a crash and the removal of the
    // dead node, so that the floors below hold on every run, not on the random draw (a draw of
    // 25 schedules had no removal in about 3 of 20 runs).
    params(25, { examples: [[7, coveringSchedule]] }),
  )
  rebalLengths.print()
  console.log(`# REBAL-1: ${JSON.stringify(seen)}`)
  assertFloors(seen, REBAL1_FLOORS)
})

test("REBAL-1: machines stepped directly, in any delivery order: no acknowledged write is lost through joins, leaves, removals and crashes that leave a quorum of each key's replicas", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(choicesArb, scheduleArb, (choices, schedule) => {
      const cluster = new Machines({ nodes: 4, choices, node: { streamBatch: 16 } })
      rebal1(cluster, schedule, seen)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(25, {
      examples: [[[0], [...coveringSchedule]] as [ReadonlyArray<number>, Array<Action>]],
    }),
  )
  console.log(`# REBAL-1, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { ...REBAL1_FLOORS, overtaking: 2000 })
})

test("REBAL-2: a join and a leave complete while a member is down and not removed, and lose no acknowledged write", () => {
  const seen = { joined: 0, left: 0, finalChecked: 0 }
  fc.assert(
    fc.property(fc.integer(), rebal2Arb, (seed, s) => {
      const node = { streamBatch: 16 }
      rebal2(new Simulation({ seed, nodes: 5, network: defaultNetwork, node }), s, seen)
    }),
    params(10),
  )
  assertFloors(seen, { joined: 10, left: 10, finalChecked: 100 })
})

test("REBAL-2: machines stepped directly, in any delivery order: a join and a leave complete while a member is down and not removed, and lose no acknowledged write", () => {
  const seen = { joined: 0, left: 0, finalChecked: 0, overtaking: 0 }
  fc.assert(
    fc.property(choicesArb, rebal2Arb, (choices, s) => {
      const cluster = new Machines({ nodes: 5, choices, node: { streamBatch: 16 } })
      rebal2(cluster, s, seen)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(10),
  )
  console.log(`# REBAL-2, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { joined: 10, left: 10, finalChecked: 100, overtaking: 2000 })
})

/**
 * The shrunk REBAL-1 counterexample of FC_SEED=-368021603 on the machine layer: n3 crashes just
 * as n4 joins, n4 becomes an owner of key11 while n3 is down, key11 is written to n2 and n4, n3
 * restarts on its saved view (which has no n4), n4 crashes, and a read at n3 asked n2, n3, n1 and
 * returned nil. A restarted node used to serve at once: learning its own boot entry counted as a
 * peer's confirmation, and nothing waited for its view to catch up.
 */
const restartedStale: [ReadonlyArray<number>, Array<Action>] = [
  [20633, 0, 0],
  [
    { _tag: "Leave", node: 0 },
    { _tag: "Join" },
    { _tag: "Crash", node: 6 },
    { _tag: "Wait", ms: 131 },
    { _tag: "Read", key: 0, node: 0 },
    { _tag: "Wait", ms: 707 },
    { _tag: "Wait", ms: 1498 },
    { _tag: "Write", key: 11, node: 3 },
    { _tag: "Restart" },
    { _tag: "Crash", node: 3 },
    { _tag: "Write", key: 8, node: 0 },
    { _tag: "Read", key: 11, node: 8 },
  ],
]

test("REBAL-1: machines stepped directly: the counterexample of a node restarted on a stale view (FC_SEED=-368021603) reads every acknowledged write", () => {
  const seen = newSeen()
  const [choices, schedule] = restartedStale
  rebal1(new Machines({ nodes: 4, choices, node: { streamBatch: 16 } }), schedule, seen)
  // It must still reach the read that failed: key11 acknowledged, and read back at n3.
  assert.ok(seen.acked >= 2 && seen.readsChecked >= 2, JSON.stringify(seen))
})

/** Ring and future ring of a node, as member ids. */
const rings = (cluster: Machines, id: NodeId) => {
  const s = cluster.stateOf(id)!
  return { ring: s.ring.nodes.join(), future: s.futureRing.nodes.join() }
}

test("REBAL-1, MEM-5: a node restarted after a membership change it missed serves nothing until its view caught up with a peer's: when it first serves, its rings are the cluster's", () => {
  const seen = { restarts: 0, refused: 0, joins: 0, leaves: 0 }
  fc.assert(
    fc.property(
      choicesArb,
      fc.nat(3),
      fc.constantFrom("join" as const, "leave" as const, "both" as const),
      (choices, down, change) => {
        const cluster = new Machines({ nodes: 4, choices, node: { streamBatch: 16 } })
        const run = new ScheduleRun(cluster)
        for (let k = 0; k < 6; k++) run.write({ key: k, node: k })
        const x = cluster.ids[down]!
        cluster.stop(x)
        if (change !== "leave") {
          const joiner = cluster.addNode()
          assert.ok(
            cluster.runUntil(() => statuses(cluster, joiner).get(joiner) === "up", 180_000),
            `${joiner} never finished joining while ${x} was down`,
          )
          seen.joins++
        }
        if (change !== "join") {
          const who = run.live().filter((id) => id !== x)[0]!
          assert.equal(cluster.operator(who, { _tag: "Leave" }).result?._tag, "Done")
          assert.ok(
            cluster.runUntil(() => !cluster.isUp(who), 180_000),
            `${who} never left`,
          )
          run.gone.add(who)
          seen.leaves++
        }
        const peers = run.live()
        assert.ok(
          cluster.runUntil(() => settled(cluster, run), 60_000),
          "membership did not settle",
        )
        const cluster0 = rings(cluster, peers[0]!)
        cluster.restart(x)
        seen.restarts++
        // Step by step until it serves: meanwhile every client request is refused as starting.
        for (let i = 0; ; i++) {
          assert.ok(i < 1000, `${x} never served`)
          const op = cluster.invoke(x, { _tag: "Get", key: KEYS[0]! })
          if (op.result?._tag !== "Failed") {
            cluster.runUntil(() => op.result !== undefined, 60_000)
            break
          }
          assert.equal(op.result.error._tag, "Starting", JSON.stringify(op.result))
          seen.refused++
          // One delivery or timer at a time (runUntil checks before each).
          let stepped = false
          cluster.runUntil(() => {
            const again = stepped
            stepped = true
            return again
          }, 1_000)
        }
        assert.deepEqual(
          rings(cluster, x),
          cluster0,
          `${x} served on a ring that is not the cluster's`,
        )
      },
    ),
    params(15),
  )
  console.log(`# REBAL-1, restart gate: ${JSON.stringify(seen)}`)
  // Of 15 runs, each a join, a leave or both (a third each): about 10 joins and 10 leaves.
  assertFloors(seen, { restarts: 15, refused: 15, joins: 3, leaves: 3 })
})
