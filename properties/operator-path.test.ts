/**
 * Operator intents on one node (impl/core/node-membership.ts `onOperator`, `stepMembership`,
 * `refreshRing`, `maybeStop`), stepped through `Node.step` against a small model (MEM-6):
 *
 *  - JOIN on a member answers that it is one already; LEAVE needs this node up and N members
 *    left after it; REMOVE needs a known member, not the last one, and N members left after
 *    it (a removed one is answered as removed already); every refusal is a clear error that
 *    changes nothing;
 *  - an accepted intent changes exactly one entry, and the node tells every peer of it at once
 *    (GossipAck of that entry), before any gossip round;
 *  - the rings follow: the current ring holds the members up or leaving, the future ring the
 *    ones up or joining; the peers are the members not removed;
 *  - a node removed (by its own pass after leaving, or by an operator) tells the driver to stop
 *    (`Removed`, after the step's writes) once, four gossip intervals later.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { BadRequest } from "../impl/core/failure.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Membership from "../impl/core/membership.ts"
import type { ClientResult, Command, Event, OperatorOp } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { stepAndApply } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

const ids = ["n0", "n1", "n2", "n3", "n4"].map(NodeId)
const self = ids[0]!
const base: Node.Config = {
  ...Node.defaults,
  self,
  members: ids.map((id) => ({ id, weight: 1 })),
  tokensPerNode: 4,
}
const unknown = NodeId("n9")

type Move =
  | { _tag: "Op"; op: "join" | "leave" | "remove"; node: number }
  | { _tag: "Tick"; dt: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Op" as const),
      op: fc.constantFrom("join" as const, "leave" as const, "remove" as const, "remove" as const),
      // A member (this node included), or past them: a node never a member.
      node: fc.nat(ids.length),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 100, 500, 1000),
    }),
  },
)

test("MEM-6: operator intents on a node: join, leave and remove are accepted exactly when the rules allow, refused with a clear error otherwise, change one entry and tell every peer at once, move the rings, and a removed node asks to stop once, four gossip intervals later", () => {
  const seen = {
    joins: 0,
    leaves: 0,
    leavesRefused: 0,
    removals: 0,
    removalsRefused: 0,
    lastMember: 0,
    unknown: 0,
    alreadyRemoved: 0,
    selfRemoved: 0,
    leftAndRemoved: 0,
    stops: 0,
  }
  const property = fc.property(
    // N of 3, or 1 (so that removals can reach the last member).
    fc.constantFrom(3, 1),
    fc.array(moveArb, { minLength: 1, maxLength: 30 }),
    (n, moves) => {
      const config: Node.Config = { ...base, n, r: Math.min(base.r, n), w: Math.min(base.w, n) }
      const state = Node.init(config, 0)
      const store = new MemoryStore()
      let now = 1000
      let client = 0
      const status = new Map<NodeId, Membership.Status>(ids.map((id) => [id, "up"]))
      let removedAt: number | undefined
      /** When the node's next rebalancing pass may run (every stream interval, on a tick). */
      let nextPass: number | undefined
      let stopped = false

      for (const [i, m] of moves.entries()) {
        const what = `move ${i} (${m._tag}${m._tag === "Op" ? ` ${m.op}` : ""})`
        let event: Event
        let result: ClientResult | undefined
        let changed: NodeId | undefined
        let wantStop = false
        if (m._tag === "Tick") {
          now += m.dt
          event = { _tag: "TickElapsed", now }
          if (nextPass === undefined || now >= nextPass) {
            // The rebalancing pass (its store is empty, so a pass settles at once): a leaving
            // node that settled removes itself.
            nextPass = now + config.streamIntervalMs
            if (status.get(self) === "leaving") {
              seen.leftAndRemoved++
              status.set(self, "removed")
              removedAt = now
            }
          }
        } else {
          client++
          const target = ids[m.node] ?? unknown
          const op: OperatorOp =
            m.op === "join"
              ? { _tag: "Join" }
              : m.op === "leave"
                ? { _tag: "Leave" }
                : { _tag: "Remove", node: target }
          event = { _tag: "OperatorRequested", now, client, op }
          const active = [...status.values()].filter((s) => s === "up" || s === "joining").length
          const done = (message: string): ClientResult => ({ _tag: "Done", message })
          const refused = (detail: string): ClientResult => ({
            _tag: "Failed",
            error: new BadRequest({ detail }),
          })
          const own = status.get(self)!
          switch (op._tag) {
            case "Join":
              seen.joins++
              result = done(`already a member (${own})`)
              break
            case "Leave":
              if (own !== "up") {
                seen.leavesRefused++
                result = refused(`cannot leave: this node is ${own}`)
              } else if (active - 1 < config.n) {
                seen.leavesRefused++
                result = refused(
                  `cannot leave: ${active - 1} members would remain, fewer than N=${config.n}`,
                )
              } else {
                seen.leaves++
                status.set(self, "leaving")
                changed = self
                result = done("leaving: streaming this node's data to the new owners, then removed")
              }
              break
            case "Remove": {
              const s = status.get(op.node)
              if (s === undefined) {
                seen.unknown++
                result = refused(`no member ${op.node}`)
              } else if (s === "removed") {
                seen.alreadyRemoved++
                result = done(`${op.node} is already removed`)
              } else if (active <= 1) {
                seen.lastMember++
                result = refused("cannot remove the last member")
              } else if (active - 1 < config.n) {
                seen.removalsRefused++
                result = refused(
                  `cannot remove ${op.node}: ${active - 1} members would remain, fewer than N=${config.n}`,
                )
              } else {
                seen.removals++
                status.set(op.node, "removed")
                changed = op.node
                if (op.node === self) {
                  seen.selfRemoved++
                  removedAt = now
                }
                result = done(
                  `${op.node} removed; its ranges are re-replicated from the surviving replicas`,
                )
              }
              break
            }
          }
        }
        if (
          m._tag === "Tick" &&
          removedAt !== undefined &&
          !stopped &&
          now >= removedAt + 4 * config.gossipIntervalMs
        ) {
          wantStop = true
          stopped = true
          seen.stops++
        }
        const ready = stepAndApply(state, event, store)
        if (result !== undefined) {
          const replies = ready.afterPersist.filter((c) => c._tag === "Reply")
          assert.deepEqual(replies, [{ _tag: "Reply", client, result }], `${what}: the answer`)
        }
        const view = Membership.view(state.membership)
        for (const id of ids) {
          assert.equal(view.get(id)?.status, status.get(id), `${what}: ${id}'s status`)
        }
        const peers = ids.filter((id) => id !== self && status.get(id) !== "removed")
        assert.deepEqual(state.peers, peers, `${what}: peers`)
        const on = (ok: (s: Membership.Status) => boolean) =>
          ids.filter((id) => ok(status.get(id)!))
        assert.deepEqual(
          [...state.ring.nodes].sort(),
          on((s) => s === "up" || s === "leaving"),
          `${what}: the current ring`,
        )
        assert.deepEqual(
          [...state.futureRing.nodes].sort(),
          on((s) => s === "up" || s === "joining"),
          `${what}: the future ring`,
        )
        if (m._tag === "Op") {
          // An accepted intent is told to every peer at once, in this step; a refusal to none.
          const told = ready.send.flatMap((c) =>
            c._tag === "Send" &&
            c.message._tag === "Gossip" &&
            c.message.message._tag === "GossipAck" &&
            c.message.message.entries.length === 1 &&
            c.message.message.entries[0]!.id === changed
              ? [c.to]
              : [],
          )
          const want = changed === undefined ? [] : peers
          // A node that removed itself tells every peer twice (the intent, and its tombstone).
          assert.deepEqual(
            [...new Set(told)].sort(),
            [...want].sort(),
            `${what}: the peers told of the change`,
          )
        }
        if (m._tag === "Tick" && removedAt !== now) {
          // A gossip round tells what changed to one peer at a time, never the whole cluster.
          const broadcast = ready.send.filter(
            (c) =>
              c._tag === "Send" &&
              c.message._tag === "Gossip" &&
              c.message.message._tag === "GossipAck" &&
              c.message.message.entries.length === 1,
          )
          assert.ok(broadcast.length <= 1, `${what}: a tick told ${broadcast.length} peers at once`)
        }
        const stops = ready.afterPersist.filter((c: Command) => c._tag === "Removed").length
        assert.equal(stops, wantStop ? 1 : 0, `${what}: asked the driver to stop`)
      }
    },
  )
  fc.assert(property, params(800))
  console.log(`# operator path: ${JSON.stringify(seen)}`)
  // About half the smallest of three runs' draws, doubled for 800 runs (docs/verification.md,
  // "Floor margins").
  assertFloors(seen, {
    joins: 800,
    leaves: 200,
    leavesRefused: 550,
    removals: 600,
    removalsRefused: 280,
    lastMember: 19,
    unknown: 270,
    alreadyRemoved: 370,
    selfRemoved: 85,
    leftAndRemoved: 170,
    stops: 100,
  })
})
