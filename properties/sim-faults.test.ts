/**
 * The simulator's TCP-like faults (impl/sim/sim.ts), checked from outside through the events
 * each node steps: a paused node (SIGSTOP) steps nothing, keeps its state, and after the resume
 * works through what fell due, in order; a held cut queues messages per connection and delivers
 * them in order after the heal, however late; a dropping cut loses them; a crash drops what is
 * held for the crashed node but not what it sent; a machine exception crash-stops its node; and
 * all of it replays exactly from the seed.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientOp, Event } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { MachineError, Simulation, type SimConfig } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

interface Seen {
  readonly at: number
  readonly node: NodeId
  readonly event: Event
}

/** A 5-node cluster that records every event stepped, with the virtual time it was stepped. */
const cluster = (seed: number, extra: Partial<SimConfig> = {}) => {
  const seen: Array<Seen> = []
  const sim: Simulation = new Simulation({
    seed,
    nodes: 5,
    network: { latencyMinMs: 1, latencyMaxMs: 10, lossRate: 0, duplicateRate: 0 },
    onEvent: (node, event) => seen.push({ at: sim.now, node, event }),
    ...extra,
  })
  return { sim, seen }
}

/** Read requests `to` received from `from`, by request id, in the order it stepped them. */
const readsFrom = (seen: ReadonlyArray<Seen>, from: NodeId, to: NodeId): Array<number> =>
  seen.flatMap((s) =>
    s.node === to &&
    s.event._tag === "MessageReceived" &&
    s.event.from === from &&
    s.event.message._tag === "ReadRequest"
      ? [s.event.message.rid]
      : [],
  )

/** Keys whose replicas include `node` but not `coordinator` (so a GET there asks `node`). */
const keysAsking = (sim: Simulation, node: NodeId, coordinator: NodeId): Array<string> =>
  Array.from({ length: 200 }, (_, i) => `key${i}`).filter((k) => {
    const replicas = sim.replicasOf(k)
    return replicas.includes(node) && !replicas.includes(coordinator)
  })

/** `count` GETs at `at`, 30 ms apart (more than the latency spread, so they arrive in order). */
const reads = (sim: Simulation, at: NodeId, keys: ReadonlyArray<string>, count: number) => {
  const ops = keys.slice(0, count).map((key) => {
    const op = sim.invoke(at, { _tag: "Get", key })
    sim.runFor(30)
    return op
  })
  return ops
}

test("simulator: a paused node steps nothing, keeps its state, and after the resume steps what fell due in order; its peers suspect it meanwhile", () => {
  let deferred = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.nat(4),
      fc.integer({ min: 10_000, max: 20_000 }),
      (seed, p, ms) => {
        const { sim, seen } = cluster(seed)
        sim.runFor(2_000)
        const victim = sim.ids[p]!
        const other = sim.ids[(p + 1) % 5]!
        const before = sim.stateOf(victim)
        sim.pause(victim)
        const pausedAt = sim.now
        const steppedBefore = seen.length
        // A client request and peers' read requests reach it while it is paused.
        const client = sim.invoke(victim, { _tag: "Get", key: "x" })
        const asked = reads(sim, other, keysAsking(sim, victim, other), 5)
        sim.runFor(ms)
        assert.ok(
          seen.slice(steppedBefore).every((s) => s.node !== victim),
          "a paused node stepped an event",
        )
        assert.equal(sim.stateOf(victim), before, "a paused node lost its state")
        assert.ok(sim.isUp(victim) && sim.isPaused(victim))
        assert.equal(client.result, undefined, "a paused node answered a client")
        for (const id of sim.ids) {
          if (id === victim) continue
          assert.ok(
            !Node.believedUp(sim.stateOf(id)!, victim, sim.now),
            `${id} still believes the paused ${victim} up after ${ms} ms`,
          )
        }
        const rids = asked.length > 0 ? readsFrom(seen, other, victim) : []
        assert.equal(rids.length, 0)
        sim.resume(victim)
        const resumedAt = sim.now
        sim.runFor(0)
        // Everything that fell due was stepped at the resume, in order, before anything newer.
        const backlog = seen.slice(steppedBefore).filter((s) => s.node === victim)
        assert.ok(backlog.length > 0)
        assert.ok(backlog.every((s) => s.at === resumedAt))
        assert.equal(backlog[0]!.event._tag, "ClientRequested", "the client came first")
        const got = readsFrom(seen, other, victim)
        assert.equal(got.length, asked.length, "a read request to the paused node was lost")
        assert.deepEqual(
          got,
          [...got].sort((a, b) => a - b),
          "one connection reordered",
        )
        sim.runFor(3_000)
        assert.notEqual(client.result, undefined, "the client's request never ran")
        for (const id of sim.ids) {
          if (id !== victim) assert.ok(Node.believedUp(sim.stateOf(id)!, victim, sim.now))
        }
        assert.ok(pausedAt < resumedAt)
        deferred += sim.counters.deferredMessages
      },
    ),
    params(15),
  )
  assert.ok(deferred > 0)
})

test("simulator: a held cut queues messages per connection and delivers them in order after the heal, however late; a dropping cut loses them", () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.boolean(),
      fc.integer({ min: 1_000, max: 30_000 }),
      (seed, hold, ms) => {
        const { sim, seen } = cluster(seed)
        sim.runFor(1_000)
        const [a, b] = [sim.ids[1]!, sim.ids[0]!]
        sim.block(a, b, { hold })
        const keys = keysAsking(sim, b, a)
        const asked = reads(sim, a, keys, 5)
        sim.runFor(ms)
        assert.equal(asked.length, Math.min(5, keys.length))
        assert.equal(readsFrom(seen, a, b).length, 0, "a message crossed the cut")
        const held = sim.heldCount(a, b)
        if (hold) assert.ok(held > 0, "nothing was held")
        else assert.equal(held, 0)
        assert.equal(sim.counters.held, held)
        sim.heal()
        sim.runFor(0)
        const got = readsFrom(seen, a, b)
        if (hold) {
          assert.equal(got.length, asked.length, "a held message was lost")
          assert.deepEqual(
            got,
            [...got].sort((x, y) => x - y),
            "the held connection reordered",
          )
          assert.equal(sim.counters.heldDelivered, held)
          assert.equal(sim.heldCount(), 0)
        } else {
          assert.equal(got.length, 0, "a dropping cut delivered late")
          assert.equal(sim.counters.heldDelivered, 0)
        }
      },
    ),
    params(20),
  )
})

test("simulator: a crash drops the messages held for the crashed node, but not those it sent", () => {
  fc.assert(
    fc.property(fc.integer(), fc.boolean(), (seed, crashReceiver) => {
      const { sim, seen } = cluster(seed)
      sim.runFor(1_000)
      const [a, b] = [sim.ids[2]!, sim.ids[3]!]
      sim.block(a, b, { hold: true })
      sim.runFor(3_000)
      const held = sim.heldCount(a, b)
      assert.ok(held > 0)
      const dropped = sim.counters.dropped
      const crashedAt = sim.now
      sim.stop(crashReceiver ? b : a)
      sim.runFor(500)
      sim.restart(crashReceiver ? b : a)
      sim.heal()
      sim.runFor(0)
      const late = seen.filter(
        (s) =>
          s.node === b &&
          s.at >= crashedAt &&
          s.event._tag === "MessageReceived" &&
          s.event.from === a,
      )
      if (crashReceiver) {
        assert.equal(sim.counters.heldDelivered, 0, "a crashed receiver got its held messages")
        assert.ok(sim.counters.dropped >= dropped + held)
      } else {
        // The dead sender's bytes were in the kernel's buffer: they still arrive (with any that
        // were in flight when it died and reached the cut after).
        assert.ok(sim.counters.heldDelivered >= held)
        assert.ok(late.length >= held)
      }
    }),
    params(10),
  )
})

test("simulator: a machine exception crash-stops its node and is counted; by default it also fails the run", () => {
  // A key that is not a string makes the machine throw while hashing it.
  const bad = { _tag: "Put", key: undefined, value: "x", context: null } as unknown as ClientOp
  const thrown = cluster(1).sim
  thrown.runFor(500)
  assert.throws(() => thrown.invoke(thrown.ids[0]!, bad), MachineError)
  assert.equal(thrown.counters.stepErrors, 1)
  assert.ok(!thrown.isUp(thrown.ids[0]!), "the node survived its exception")

  const { sim } = cluster(1, { onMachineError: "crash-stop" })
  sim.runFor(500)
  sim.invoke(sim.ids[0]!, bad)
  assert.equal(sim.counters.stepErrors, 1)
  assert.match(sim.stepErrors[0]!, /n0 at \d+ ms, step\(ClientRequested\) threw/)
  assert.ok(!sim.isUp(sim.ids[0]!), "the node survived its exception")
  // The others carry on without it.
  const op = sim.call(sim.ids[1]!, { _tag: "Put", key: "k", value: "v", context: null })
  assert.equal(op.result?._tag, "PutOk")
})

test("simulator: runs with pauses, held cuts, crashes and persist latency replay exactly from their seed", () => {
  fc.assert(
    fc.property(fc.integer(), (seed) => {
      const trace = () => {
        const { sim, seen } = cluster(seed, { persistDelayMs: 3 })
        const ids = sim.ids
        sim.runFor(500)
        sim.pause(ids[0]!)
        sim.partition([[ids[1]!], [ids[2]!, ids[3]!, ids[4]!]], { hold: true })
        for (let i = 0; i < 5; i++) {
          sim.invoke(ids[2 + (i % 3)]!, {
            _tag: "Put",
            key: `k${i}`,
            value: `v${i}`,
            context: null,
          })
          sim.runFor(700)
        }
        sim.stop(ids[3]!)
        sim.resume(ids[0]!)
        sim.heal()
        sim.runFor(3_000)
        sim.restart(ids[3]!)
        sim.runFor(2_000)
        return JSON.stringify([seen, sim.counters, sim.history])
      }
      assert.equal(trace(), trace())
    }),
    params(5),
  )
})
