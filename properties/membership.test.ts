/**
 * Properties of cluster membership (MEM-*) and failure detection (FD-*): the merge laws of the
 * gossiped state, convergence and tombstones under generated fault schedules in the gossip
 * simulator (impl/sim/gossip-sim.ts), and the phi-accrual detector both alone (exact bounds from
 * its formula) and inside the gossip machines.
 *
 * Fault schedules are generated as data (impl/sim/gossip-sim.ts `FaultStep`), so that shrinking
 * drops the faults that do not matter and prints the rest. Time is virtual; nothing here reads a
 * clock. Bounds are in gossip rounds (one round = one gossip interval, 1000 ms here).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import { NodeId } from "../impl/core/ids.ts"
import * as Membership from "../impl/core/membership.ts"
import * as Phi from "../impl/core/phi.ts"
import { applyStep, describeStep, type FaultStep, GossipSim } from "../impl/sim/gossip-sim.ts"
import { params } from "./helpers/fc.ts"

// ---------------------------------------------------------------------------------------------
// Bounds (spec/membership.md states and argues each)

const INTERVAL_MS = 1000
const THRESHOLD = Phi.DEFAULT_THRESHOLD
/** The detector the simulated nodes run: the defaults, bootstrapped with the interval. */
const PHI: Phi.Config = { ...Phi.defaults, firstHeartbeatEstimateMs: INTERVAL_MS }
/** Rounds a crashed node can stay unsuspected after its last heartbeat arrives (36.8 -> 37). */
const SUSPICION_ROUNDS = Math.ceil(Phi.worstSuspicionDelayMs(PHI, THRESHOLD) / INTERVAL_MS)
/** Rounds for one rumor to reach every running node once picks are not wasted on the dead. */
const epidemicRounds = (n: number): number => 3 * Math.ceil(Math.log2(n)) + 10

// ---------------------------------------------------------------------------------------------
// MEM-1: the merge laws

const entryArb: fc.Arbitrary<Membership.Entry> = fc.record({
  id: fc.constantFrom("a", "b", "c").map(NodeId),
  peerAddress: fc.constantFrom("p1", "p2"),
  clientAddress: fc.constantFrom("c1", "c2"),
  weight: fc.constantFrom(1, 2),
  status: fc.constantFrom("joining", "up", "leaving", "removed") as fc.Arbitrary<Membership.Status>,
  generation: fc.nat(2),
  version: fc.nat(3),
  heartbeat: fc.nat(3),
})

// Small domains, so that equal ids with equal and unequal (generation, version, heartbeat) and
// equal keys with different content (the tie-break) all occur.
const viewArb: fc.Arbitrary<Membership.View> = fc
  .uniqueArray(entryArb, { selector: (e) => e.id, maxLength: 3 })
  .map((es) => new Map(es.map((e) => [e.id, e])))

test("MEM-1: merge is commutative, associative and idempotent", () => {
  fc.assert(
    fc.property(viewArb, viewArb, viewArb, (a, b, c) => {
      const { merge } = Membership
      assert.deepEqual(merge(a, b), merge(b, a))
      assert.deepEqual(merge(merge(a, b), c), merge(a, merge(b, c)))
      assert.deepEqual(merge(a, a), new Map(a))
      // The least upper bound: no entry is invented, none is lost, a tombstone always wins.
      const ab = merge(a, b)
      for (const [id, e] of ab) {
        assert.ok(a.get(id) === e || b.get(id) === e, "merge only keeps given entries")
        for (const x of [a.get(id), b.get(id)]) {
          if (x === undefined) continue
          assert.ok(Membership.compare(e, x) >= 0, "merge keeps the larger entry")
          if (x.status === "removed") assert.equal(e.status, "removed")
        }
      }
      assert.equal(ab.size, new Set([...a.keys(), ...b.keys()]).size)
    }),
    params(1000),
  )
})

test("MEM-1: machines that receive the same entries in any order and multiplicity agree", () => {
  const self = NodeId("z")
  const fresh = (): Membership.State =>
    Membership.init(
      {
        self: { id: self, peerAddress: "z", clientAddress: "z", weight: 1 },
        seeds: [],
        generation: 1,
        randomSeed: 1,
      },
      0,
    )
  fc.assert(
    fc.property(
      fc.array(fc.array(entryArb, { maxLength: 4 }), { maxLength: 6 }),
      fc.func(fc.integer()),
      (batches, key) => {
        const a = fresh()
        const b = fresh()
        const ack = (entries: ReadonlyArray<Membership.Entry>, now: number) =>
          ({
            _tag: "MessageReceived",
            now,
            from: NodeId("a"),
            message: { _tag: "GossipAck", entries },
          }) as const
        for (const [i, batch] of batches.entries()) Membership.step(a, ack(batch, i))
        // The same batches, reordered by an arbitrary key, each delivered twice.
        const shuffled = batches.map((batch, i) => ({ batch, k: key(i) }))
        shuffled.sort((x, y) => x.k - y.k)
        shuffled.forEach(({ batch }, i) => {
          Membership.step(b, ack(batch, i))
          Membership.step(b, ack(batch, i))
        })
        assert.deepEqual(a.entries, b.entries)
      },
    ),
    params(300),
  )
})

// ---------------------------------------------------------------------------------------------
// Fault schedules

const position = fc.nat(31)

const stepArb = (removeWeight: number): fc.Arbitrary<FaultStep> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ _tag: fc.constant("Advance"), ms: fc.nat(20_000) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash"), node: position }) },
    {
      weight: 1,
      arbitrary: fc.record({
        _tag: fc.constant("Restart"),
        node: position,
        wipe: fc.constant(false),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        _tag: fc.constant("Partition"),
        groups: fc.array(fc.nat(2), { maxLength: 10 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Heal") }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Join"), node: position }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("MarkUp"), node: position }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Leave"), node: position }) },
    {
      weight: removeWeight,
      arbitrary: fc.record({ _tag: fc.constant("Remove"), issuer: position, target: position }),
    },
  ) as fc.Arbitrary<FaultStep>

/**
 * A removed node that loses its disk, boots with a larger generation and asks to join: the way
 * an id would come back if tombstones were not final.
 */
const resurrectArb: fc.Arbitrary<ReadonlyArray<FaultStep>> = fc.oneof(
  position.map(
    (node): ReadonlyArray<FaultStep> => [
      { _tag: "Crash", node },
      { _tag: "Restart", node, wipe: true },
      { _tag: "Join", node },
    ],
  ),
  // Or, without losing its disk: removed (by itself or another node), then asked to join.
  fc.tuple(position, position, fc.nat(5000)).map(
    ([issuer, node, ms]): ReadonlyArray<FaultStep> => [
      { _tag: "Remove", issuer, target: node },
      { _tag: "Advance", ms },
      { _tag: "Join", node },
    ],
  ),
)

interface Scenario {
  readonly nodes: number
  readonly members: number
  readonly seed: number
  readonly latencyMaxMs: number
  readonly lossRate: number
  readonly steps: ReadonlyArray<FaultStep>
}

const scenarioArb = (
  steps: fc.Arbitrary<ReadonlyArray<FaultStep>>,
  maxNodes: number,
): fc.Arbitrary<Scenario> =>
  fc.record({
    nodes: fc.integer({ min: 3, max: maxNodes }),
    members: fc.integer({ min: 2, max: maxNodes }),
    seed: fc.integer(),
    latencyMaxMs: fc.integer({ min: 1, max: 500 }),
    lossRate: fc.double({ min: 0, max: 0.2, noNaN: true }),
    steps,
  })

const describe = (s: Scenario): string =>
  `nodes ${s.nodes}, members ${Math.min(s.members, s.nodes)}, seed ${s.seed}, ` +
  `latency 1-${s.latencyMaxMs}ms, loss ${s.lossRate.toFixed(3)}: ` +
  s.steps.map(describeStep).join("; ")

const simulate = (s: Scenario): GossipSim =>
  new GossipSim({
    seed: s.seed,
    nodes: s.nodes,
    seedNodes: 2,
    start: "converged",
    members: Math.min(s.members, s.nodes),
    network: { latencyMinMs: 1, latencyMaxMs: s.latencyMaxMs, lossRate: s.lossRate },
    phi: PHI,
  })

/**
 * The heal: partitions gone, loss gone, and crashed nodes restarted: the seeds always (a node
 * that knows only the seeds has no other way in), every node when `all`.
 */
const heal = (sim: GossipSim, all: boolean): void => {
  sim.heal()
  sim.network = { ...sim.network, lossRate: 0 }
  for (const node of sim.nodes) {
    if (all || node.index < sim.seeds.length) sim.restart(node.index)
  }
}

/** Does every running node suspect every crashed node it holds as a member? */
const crashedSuspected = (sim: GossipSim): boolean => {
  const crashed = new Set(sim.nodes.filter((n) => n.state === undefined).map((n) => n.id))
  for (const node of sim.nodes) {
    const state = node.state
    if (state === undefined) continue
    for (const e of state.entries.values()) {
      if (e.status === "removed" || !crashed.has(e.id)) continue
      if (Membership.phiOf(state, e.id, sim.now) < THRESHOLD) return false
    }
  }
  return true
}

interface Convergence {
  /** Rounds from the heal until every crashed member was suspected everywhere. */
  readonly suspectedRounds: number | undefined
  /** Rounds from the heal until all running views agreed. */
  readonly agreedRounds: number | undefined
}

/** After the heal, run until the running views agree, or the total bound passes. */
const converge = (sim: GossipSim, limitRounds: number): Convergence => {
  const start = sim.now
  let suspectedAt: number | undefined
  const agreedAt = sim.runUntil(() => {
    if (suspectedAt === undefined && crashedSuspected(sim)) suspectedAt = sim.now
    return sim.agreed()
  }, limitRounds * INTERVAL_MS)
  const rounds = (t: number | undefined) => (t === undefined ? undefined : (t - start) / 1000)
  return { suspectedRounds: rounds(suspectedAt), agreedRounds: rounds(agreedAt) }
}

// ---------------------------------------------------------------------------------------------
// MEM-2: convergence after a heal

let mem2Runs = 0
let mem2Nontrivial = 0

test(
  "MEM-2: gossip converges: after any sequence of joins, leaves, removes, crashes and " +
    "partitions followed by a heal, every live node's view agrees within a bounded number " +
    "of rounds",
  () => {
    fc.assert(
      fc.property(scenarioArb(fc.array(stepArb(1), { maxLength: 24, size: "max" }), 10), (s) => {
        const sim = simulate(s)
        for (const step of s.steps) applyStep(sim, step)
        heal(sim, false)
        const n = s.nodes
        // Stale heartbeats of the crashed spread (one epidemic), the crashed are suspected
        // (at most the detector's worst delay), then the news spreads among the running.
        const total = 2 * epidemicRounds(n) + SUSPICION_ROUNDS
        const c = converge(sim, total)
        const why = `${describe(s)} -> ${JSON.stringify(c)}`
        assert.notEqual(c.agreedRounds, undefined, `no agreement in ${total} rounds: ${why}`)
        if (c.agreedRounds! > 0) mem2Nontrivial++
        mem2Runs++
        // Once no pick is wasted on a crashed node, agreement is one epidemic away.
        if (c.suspectedRounds !== undefined) {
          const bound = c.suspectedRounds + epidemicRounds(n)
          assert.ok(c.agreedRounds! <= bound, `slow epidemic: ${why}`)
        }
      }),
      params(200),
    )
    // Not vacuous: a fair share of the schedules leave views that still have to converge.
    if (process.env.FC_PATH === undefined) {
      assert.ok(mem2Nontrivial >= mem2Runs / 10, `${mem2Nontrivial} of ${mem2Runs} non-trivial`)
    }
  },
)

// ---------------------------------------------------------------------------------------------
// MEM-3: tombstones are final

test("MEM-3: a removed node never comes back into any view", () => {
  const steps = fc
    .array(
      fc.oneof(
        { weight: 4, arbitrary: stepArb(4).map((step) => [step]) },
        { weight: 1, arbitrary: resurrectArb },
      ),
      { maxLength: 16, size: "max" },
    )
    .map((groups) => groups.flat())
  fc.assert(
    fc.property(scenarioArb(steps, 8), (s) => {
      const sim = simulate(s)
      // Per node, the ids its view has held as removed since its disk was last wiped.
      const seen = sim.nodes.map(() => new Set<NodeId>())
      let violation: string | undefined
      sim.onStep = (node) => {
        const state = node.state!
        for (const id of seen[node.index]!) {
          if (state.entries.get(id)?.status !== "removed") {
            violation ??= `${id} came back into ${node.id}'s view at ${sim.now}`
          }
        }
        for (const e of state.entries.values()) {
          if (e.status === "removed") seen[node.index]!.add(e.id)
        }
        const listed = [
          ...Membership.liveMembers(state, sim.now).map((e) => e.id),
          ...Membership.ringMembers(state).map((m) => m.id),
          ...Membership.pendingMembers(state).map((m) => m.id),
        ]
        for (const id of listed) {
          if (seen[node.index]!.has(id)) violation ??= `${node.id} lists removed ${id}`
        }
      }
      for (const step of s.steps) {
        if (step._tag === "Restart" && step.wipe && !sim.isRunning(step.node % s.nodes)) {
          seen[step.node % s.nodes]!.clear()
        }
        applyStep(sim, step)
      }
      heal(sim, true)
      const total = 2 * epidemicRounds(s.nodes) + SUSPICION_ROUNDS
      const c = converge(sim, total)
      const why = describe(s)
      assert.equal(violation, undefined, `${violation}: ${why}`)
      assert.notEqual(c.agreedRounds, undefined, `no agreement: ${why}`)
      // Every tombstone held anywhere is now held everywhere, and a running removed node knows.
      for (const node of sim.nodes) {
        const state = node.state!
        for (const e of state.entries.values()) {
          if (e.status !== "removed") continue
          const removed = sim.node(sim.nodes.findIndex((x) => x.id === e.id))
          assert.ok(Membership.isRemoved(removed.state!), `${e.id} does not know: ${why}`)
        }
      }
    }),
    params(150),
  )
})

// ---------------------------------------------------------------------------------------------
// FD-1..3 on the detector alone: exact, from the formula

const phiConfigArb: fc.Arbitrary<Phi.Config> = fc.record({
  windowSize: fc.integer({ min: 1, max: 12 }),
  minStdDevMs: fc.integer({ min: 1, max: 2000 }),
  acceptablePauseMs: fc.integer({ min: 0, max: 5000 }),
  firstHeartbeatEstimateMs: fc.integer({ min: 1, max: 3000 }),
  maxSampleIntervalMs: fc.integer({ min: 1, max: 5000 }),
})

const peer = NodeId("p")

/** Heartbeats at the cumulative sums of `gaps`, starting at 0. */
const feed = (config: Phi.Config, gaps: ReadonlyArray<number>): [Phi.State, number] => {
  const state = Phi.make(config)
  let t = 0
  Phi.heartbeat(state, peer, t)
  for (const gap of gaps) {
    t += gap
    Phi.heartbeat(state, peer, t)
  }
  return [state, t]
}

test("FD-1: after its last heartbeat a peer is suspected within the worst suspicion delay", () => {
  fc.assert(
    fc.property(
      phiConfigArb,
      fc.array(fc.nat(10_000), { maxLength: 40 }),
      fc.nat(100_000),
      (config, gaps, extra) => {
        const [state, last] = feed(config, gaps)
        const worst = Phi.worstSuspicionDelayMs(config, THRESHOLD)
        const exact = Phi.suspicionDelayMs(config, Phi.meanIntervalMs(state, peer)!, THRESHOLD)
        assert.ok(exact <= worst + 1e-6, "the window mean never exceeds its bound")
        // Suspected from the exact delay on (1 ms past it, to stay clear of rounding), forever.
        assert.equal(Phi.isAvailable(state, peer, last + exact + 1, THRESHOLD), false)
        assert.equal(Phi.isAvailable(state, peer, last + worst + 1 + extra, THRESHOLD), false)
        // And not before it: the delay is the formula's, not a loose over-estimate.
        if (exact > 1) assert.ok(Phi.isAvailable(state, peer, last + exact - 1, THRESHOLD))
      },
    ),
    params(500),
  )
})

test("FD-2: silences shorter than the safe silence never cause a suspicion", () => {
  fc.assert(
    fc.property(
      phiConfigArb,
      fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(1000)), {
        maxLength: 40,
      }),
      (config, shape) => {
        const safe = Phi.safeSilenceMs(config, THRESHOLD)
        const state = Phi.make(config)
        let t = 0
        Phi.heartbeat(state, peer, t)
        for (const [fraction, probe] of shape) {
          // Every gap stays strictly inside the safe silence; probe phi anywhere within it.
          const gap = Math.floor(fraction * (safe - 1))
          const at = t + (gap === 0 ? 0 : probe % gap)
          assert.ok(Phi.isAvailable(state, peer, at, THRESHOLD), `phi ${Phi.phi(state, peer, at)}`)
          t += gap
          assert.ok(Phi.isAvailable(state, peer, t, THRESHOLD))
          Phi.heartbeat(state, peer, t)
        }
      },
    ),
    params(500),
  )
})

test("FD-3: one heartbeat after any silence clears suspicion at once", () => {
  fc.assert(
    fc.property(
      phiConfigArb,
      fc.array(fc.nat(10_000), { maxLength: 40 }),
      fc.integer({ min: 0, max: 10_000_000 }),
      (config, gaps, silence) => {
        const [state, last] = feed(config, gaps)
        const before = Phi.meanIntervalMs(state, peer)
        Phi.heartbeat(state, peer, last + silence)
        assert.equal(Phi.phi(state, peer, last + silence), 0)
        // An outage is not a sample: the long silence does not teach long silences.
        if (silence > config.maxSampleIntervalMs) {
          assert.equal(Phi.meanIntervalMs(state, peer), before)
        }
        const safe = Phi.safeSilenceMs(config, THRESHOLD)
        assert.ok(Phi.isAvailable(state, peer, last + silence + safe - 1, THRESHOLD))
      },
    ),
    params(500),
  )
})

// ---------------------------------------------------------------------------------------------
// FD-1..3 inside the gossip machines

const clusterArb = fc.record({
  nodes: fc.integer({ min: 4, max: 12 }),
  seed: fc.integer(),
  latencyMaxMs: fc.integer({ min: 1, max: 500 }),
  lossRate: fc.double({ min: 0, max: 0.05, noNaN: true }),
  warmupMs: fc.nat(30_000),
})

type Cluster = typeof clusterArb extends fc.Arbitrary<infer T> ? T : never

const cluster = (c: Cluster): GossipSim =>
  new GossipSim({
    seed: c.seed,
    nodes: c.nodes,
    seedNodes: 2,
    start: "converged",
    network: { latencyMinMs: 1, latencyMaxMs: c.latencyMaxMs, lossRate: c.lossRate },
    phi: PHI,
  })

const runningIds = (sim: GossipSim): Set<NodeId> =>
  new Set(sim.nodes.filter((n) => n.state !== undefined).map((n) => n.id))

test("FD-1: a crashed node is suspected by every live node within the stated bound", () => {
  fc.assert(
    fc.property(clusterArb, fc.array(position, { minLength: 1, maxLength: 6 }), (c, crashes) => {
      const sim = cluster(c)
      sim.runFor(c.warmupMs)
      // A minority crashes at once (a majority crash wastes most gossip picks on the dead).
      for (const p of crashes.slice(0, Math.floor((c.nodes - 1) / 2))) sim.crash(p % c.nodes)
      const crashed = sim.nodes.filter((n) => n.state === undefined).map((n) => n.id)
      const bound = epidemicRounds(c.nodes) + SUSPICION_ROUNDS
      sim.runFor(bound * INTERVAL_MS)
      // From the bound on, every crashed node stays suspected everywhere.
      for (let round = 0; round < 5; round++) {
        for (const node of sim.nodes) {
          if (node.state === undefined) continue
          const down = Membership.down(node.state, sim.now)
          for (const id of crashed) {
            assert.ok(down.includes(id), `${node.id} does not suspect ${id} at ${sim.now}`)
          }
          // Suspicion never takes a node off the ring.
          const ring = Membership.ringMembers(node.state).map((m) => m.id)
          for (const id of crashed) assert.ok(ring.includes(id), `${id} left the ring`)
        }
        sim.runFor(INTERVAL_MS)
      }
    }),
    params(100),
  )
})

test("FD-2: with message delays and loss inside the configured bound, no false suspicion", () => {
  fc.assert(
    fc.property(clusterArb, fc.boolean(), (c, cold) => {
      const sim = new GossipSim({
        seed: c.seed,
        nodes: c.nodes,
        seedNodes: 2,
        start: cold ? "seedOnly" : "converged",
        network: { latencyMinMs: 1, latencyMaxMs: c.latencyMaxMs, lossRate: c.lossRate },
        phi: PHI,
      })
      let falseSuspicion: string | undefined
      sim.onStep = (node) => {
        const down = Membership.down(node.state!, sim.now)
        if (down.length > 0) falseSuspicion ??= `${node.id} suspects ${down} at ${sim.now}`
      }
      sim.runFor(c.warmupMs + 60_000)
      assert.equal(falseSuspicion, undefined)
    }),
    params(100),
  )
})

test("FD-3: suspicion clears after a heal: heartbeats resume and phi falls below threshold", () => {
  fc.assert(
    fc.property(
      clusterArb,
      fc.array(fc.nat(1), { minLength: 12, maxLength: 12 }),
      fc.array(position, { maxLength: 3 }),
      fc.boolean(),
      (c, sides, crashes, seedsDown) => {
        const sim = cluster(c)
        sim.runFor(c.warmupMs)
        // Two sides, both non-empty; a few crashes during the partition besides. With both
        // seeds down, only the probing of unreachable members can find the other side.
        const groups = sides.slice(0, c.nodes).map((g, i) => (i === 2 ? 0 : i === 3 ? 1 : g))
        sim.partition(groups)
        if (seedsDown) for (const seed of [0, 1]) sim.crash(seed)
        // Nodes 2 and 3 stay up, one on each side.
        const few = c.nodes > 4 ? Math.floor((c.nodes - 1) / 3) : 0
        for (const p of crashes.slice(0, few)) sim.crash(4 + (p % (c.nodes - 4)))
        sim.runFor((epidemicRounds(c.nodes) + SUSPICION_ROUNDS) * INTERVAL_MS)
        const running = runningIds(sim)
        for (const node of sim.nodes) {
          if (node.state === undefined) continue
          const down = new Set(Membership.down(node.state, sim.now))
          for (const other of sim.nodes) {
            if (!running.has(other.id) || groups[other.index] === groups[node.index]) continue
            assert.ok(down.has(other.id), `precondition: ${node.id} suspects ${other.id}`)
          }
        }
        sim.heal()
        const start = sim.now
        const cleared = sim.runUntil(
          () =>
            sim.nodes.every(
              (node) =>
                node.state === undefined ||
                Membership.down(node.state, sim.now).every((id) => !running.has(id)),
            ),
          epidemicRounds(c.nodes) * INTERVAL_MS,
        )
        assert.notEqual(cleared, undefined, `suspicion did not clear by ${start}`)
      },
    ),
    params(100),
  )
})
