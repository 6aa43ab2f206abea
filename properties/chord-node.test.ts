/**
 * Storage nodes under Chord routing (CHORD-7, CHORD-8), in the simulator: the node machine of
 * impl/core/node.ts with `routing: "chord"`, so that every request first looks its key up on
 * the Chord ring and replicates it on the owner's first N successors.
 *
 * The schedule is generated data: writes and reads at random nodes, joins, graceful leaves,
 * crashes and restarts, and waits. It keeps at most one node down at a time and at least N
 * nodes in the ring, so that every key keeps a majority of its replicas.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import { position } from "../impl/core/hash.ts"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientOp } from "../impl/core/messages.ts"
import * as Merkle from "../impl/core/merkle.ts"
import * as Node from "../impl/core/node.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, Lengths, params, scheduleMax } from "./helpers/fc.ts"
import { type Action, actionArb, KEYS, ScheduleRun } from "./helpers/schedule.ts"

/** Stabilization every second, anti-entropy every second per node, trees at most 5 s old. */
const SETTLE_MS = 40_000
const actions = actionArb({ removals: false })

/** Retry a client operation as a client would (a lookup can fail while the ring heals). */
const callRetrying = (sim: Simulation, nodes: () => ReadonlyArray<NodeId>, op: ClientOp) => {
  let last = sim.call(nodes()[0]!, op)
  for (let attempt = 1; attempt < 5 && last.result?._tag === "Failed"; attempt++) {
    sim.runFor(1000)
    last = sim.call(nodes()[attempt % nodes().length]!, op)
  }
  return last
}

/**
 * The first seed n0 (the ring's creator) crashes and restarts at once; two nodes join through
 * it. Found by CHORD-7 (FC_SEED=1345315663): the restarted n0 could not join while the ring
 * still listed it (its join lookup found its own id at its position and gave up), asked each
 * other seed once, then created a second ring; the joiners, introduced by n0, split between
 * the two rings for good, and n0 served key4 from the ring that never had it.
 */
const restartedCreator: [number, Array<Action>, { lossRate: number; duplicateRate: number }] = [
  0,
  [
    { _tag: "Crash", node: 0 },
    { _tag: "Restart" },
    { _tag: "Wait", ms: 1185 },
    { _tag: "Read", key: 0, node: 2 },
    { _tag: "Wait", ms: 260 },
    { _tag: "Write", key: 4, node: 1 },
    { _tag: "Read", key: 7, node: 3 },
    { _tag: "Join" },
    { _tag: "Join" },
  ],
  { lossRate: 0, duplicateRate: 0 },
]

/**
 * The cycles the live nodes lead into, following each one's first live successor (named by
 * their smallest member): one ring is one cycle. A node may hang off the cycle for a moment
 * (a lost reply made its predecessor suspect it; it is threaded back in once it speaks), but
 * two cycles are two rings, which nothing but the seed checks would ever merge.
 */
const cycles = (sim: Simulation, live: ReadonlyArray<NodeId>): Set<string> => {
  const next = (id: NodeId) =>
    sim.stateOf(id)?.chord?.ring.successors.find((p) => live.includes(p.id))?.id
  const found = new Set<string>()
  for (const start of live) {
    const path: Array<NodeId> = []
    let at: NodeId | undefined = start
    while (at !== undefined && !path.includes(at)) {
      path.push(at)
      at = next(at)
    }
    found.add(at === undefined ? "(none)" : [...path.slice(path.indexOf(at))].sort()[0]!)
  }
  return found
}

const chordLengths = new Lengths("CHORD-7", scheduleMax(50))

test("CHORD-7: under Chord routing no acknowledged write is lost through joins, leaves and crashes, and reads never return a value from nowhere", () => {
  const seen = { joins: 0, leaves: 0, crashes: 0, aeRepairs: 0, lookups: 0, forwarded: 0 }
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(actions, { minLength: 5, maxLength: scheduleMax(50) }),
      fc.record({
        lossRate: fc.constantFrom(0, 0, 0.01, 0.05),
        duplicateRate: fc.constantFrom(0, 0.02),
      }),
      (seed, schedule, faults) => {
        chordLengths.add(schedule.length)
        // What each leaving node handed over (its Repairs), to check it handed over every key.
        const handedOver = new Map<NodeId, Set<string>>()
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: { ...defaultNetwork, ...faults },
          // A hand-over sends 2 keys a tick, a tree is built 3 keys a step: both span steps.
          node: { routing: "chord", streamBatch: 2, aeBuildBatch: 3 },
          onCommands: (node, _event, commands) => {
            const sent = handedOver.get(node)
            if (sent === undefined) return
            for (const c of commands) {
              if (c._tag === "Send" && c.message._tag === "Repair") sent.add(c.message.key)
            }
          },
        })
        const joined = () =>
          sim.ids.every((id) => Node.chordReport(sim.stateOf(id)!)!.status === "Active")
        assert.ok(sim.runUntil(joined, 60_000), "the ring never formed")
        sim.runFor(5_000)
        const run = new ScheduleRun(sim)
        // Members of the ring: live and joined. Joiners still streaming in do not count, so
        // that leaves and crashes never take the ring below the N + 1 members the spec assumes
        // (a ring whose every member left cannot re-form without its first seed).
        const members = () =>
          run.live().filter((id) => Node.chordReport(sim.stateOf(id)!)!.status === "Active")
        for (const action of schedule) {
          switch (action._tag) {
            case "Write":
              run.write(action)
              break
            case "Read": {
              const obj = run.read(action)
              // While successor lists change, quorums need not intersect (a new replica is empty
              // until anti-entropy fills it): a read may be stale, but never invented.
              for (const d of obj === undefined ? [] : Version.siblings(obj)) {
                assert.ok(
                  run.ever.get(KEYS[action.key]!)!.has(d.sibling.value),
                  `read ${KEYS[action.key]} = ${d.sibling.value}, never written`,
                )
              }
              break
            }
            case "Join":
              if (run.active().length >= 8 || run.down().length > 0) break
              sim.addNode()
              seen.joins++
              break
            case "Leave": {
              const live = run.live()
              if (run.down().length > 0 || live.length <= 4 || members().length <= 4) break
              const who = live[action.node % live.length]!
              const ring = sim.stateOf(who)!.chord!.ring
              const pred = ring.predecessor
              const arc = { start: pred?.pos ?? ring.self.pos, end: ring.self.pos }
              const held = sim
                .storeOf(who)
                .scan(undefined, Number.MAX_SAFE_INTEGER)
                .map(([key]) => key)
                .filter((key) => pred === null || Merkle.contains(arc, key))
              handedOver.set(who, new Set())
              const op = sim.operator(who, { _tag: "Leave" })
              if (op.result?._tag !== "Done") break
              assert.ok(
                sim.runUntil(() => !sim.isUp(who), 30_000),
                `${who} never stopped`,
              )
              // CHORD-5 at the node: every key of its arc went to its successor before it stopped.
              const sent = handedOver.get(who)!
              const missing = held.filter((key) => !sent.has(key))
              assert.deepEqual(missing, [], `${who} stopped before handing over ${missing}`)
              run.gone.add(who)
              seen.leaves++
              break
            }
            case "Crash":
              if (members().length <= 4) break
              if (run.crash(action, 4)) seen.crashes++
              break
            case "Restart":
              run.restartAll()
              break
            case "Wait":
              sim.runFor(action.ms)
              break
            case "RemoveDead":
              break // not generated here: Chord routing has no membership to remove from
          }
        }
        run.restartAll()
        sim.runFor(SETTLE_MS)
        const rings = cycles(sim, run.live())
        assert.equal(rings.size, 1, `the live nodes lead into ${[...rings]}: not one ring`)
        run.checkFinal((op) => callRetrying(sim, () => run.live(), op))
        for (const id of run.live()) {
          const s = sim.stateOf(id)!
          seen.aeRepairs += s.stats.aeRepairs
          seen.forwarded += s.stats.forwarded
          seen.lookups += Node.chordReport(s)!.lookups
        }
      },
    ),
    params(15, { examples: [restartedCreator] }),
  )
  chordLengths.print()
  assertFloors(seen, { joins: 1, leaves: 1, crashes: 1, aeRepairs: 1, lookups: 1, forwarded: 1 })
})

test("CHORD-8: a Chord storage node keeps O(log N) routing state and no membership", () => {
  fc.assert(
    fc.property(fc.integer(), (seed) => {
      const sim = new Simulation({
        seed,
        nodes: 64,
        network: defaultNetwork,
        node: { routing: "chord" },
      })
      // 64 nodes joining at once through one introducer take a while to stabilize (CHORD-1).
      const sorted = [...sim.ids].sort((a, b) => position(a) - position(b))
      const trueSuccessor = (id: NodeId) => sorted[(sorted.indexOf(id) + 1) % sorted.length]
      const stable = () =>
        sim.ids.every((id) => sim.stateOf(id)!.chord!.ring.successors[0]?.id === trueSuccessor(id))
      assert.ok(sim.runUntil(stable, 300_000), "the ring did not stabilize within 300 s")
      sim.runFor(10_000)
      const r = Node.defaults.chord.successorListLength
      const bound = r + 1 + 2 * Math.ceil(Math.log2(sim.ids.length))
      for (const id of sim.ids) {
        const s = sim.stateOf(id)!
        const report = Node.chordReport(s)!
        assert.equal(report.status, "Active", `${id} is ${report.status}`)
        assert.ok(
          report.tablePeers <= bound,
          `${id} refers to ${report.tablePeers} peers, more than r + 1 + 2·log2 N = ${bound}`,
        )
        assert.deepEqual(
          Node.members(s).filter((m) => m.id !== id),
          [],
          `${id} keeps a membership view`,
        )
        assert.ok(s.peers.length <= r + 1, `${id} heartbeats ${s.peers.length} peers`)
      }
      // Every key is served, and its replicas are its first N successors.
      for (let i = 0; i < 20; i++) {
        const key = `probe${i}`
        const put = sim.call(sim.ids[i]!, { _tag: "Put", key, value: `v${i}`, context: null })
        assert.equal(put.result?._tag, "PutOk", JSON.stringify(put.result))
        sim.runFor(500) // the third copy may land after the W-th ack
        const holders = sim.ids.filter((id) => sim.stored(id, key) !== undefined).sort()
        assert.deepEqual(holders, [...sim.replicasOf(key)].sort(), `replicas of ${key}`)
      }
    }),
    params(2),
  )
})

test("CHORD-8: in rings smaller than N + 1, a key's replicas wrap around to every node and every node serves every key", () => {
  fc.assert(
    fc.property(fc.integer(), fc.constantFrom(2, 3), (seed, nodes) => {
      const sim = new Simulation({
        seed,
        nodes,
        network: defaultNetwork,
        node: { routing: "chord", r: Math.min(2, nodes), w: Math.min(2, nodes) },
      })
      const sorted = [...sim.ids].sort((a, b) => position(a) - position(b))
      // Stable: every successor list names all the other nodes, in ring order.
      const others = (id: NodeId) =>
        Array.from({ length: nodes - 1 }, (_, k) => sorted[(sorted.indexOf(id) + 1 + k) % nodes]!)
      const stable = () =>
        sim.ids.every(
          (id) =>
            sim
              .stateOf(id)!
              .chord!.ring.successors.map((p) => p.id)
              .join() === others(id).join(),
        )
      assert.ok(sim.runUntil(stable, 120_000), "the ring did not stabilize")
      for (let i = 0; i < 12; i++) {
        const key = `small${i}`
        const put = sim.call(sim.ids[i % nodes]!, {
          _tag: "Put",
          key,
          value: `v${i}`,
          context: null,
        })
        assert.equal(put.result?._tag, "PutOk", JSON.stringify(put.result))
        for (const id of sim.ids) {
          const get = sim.call(id, { _tag: "Get", key })
          assert.equal(get.result?._tag, "GetOk", `${id}: ${JSON.stringify(get.result)}`)
        }
        sim.runFor(500)
        const holders = sim.ids.filter((id) => sim.stored(id, key) !== undefined)
        assert.equal(holders.length, nodes, `${key} is on ${holders} only`)
      }
    }),
    params(6),
  )
})
