/**
 * The reaper of one storage node (impl/core/node-reap.ts), stepped directly through `Node.step`
 * against a small model of its rules (RECLAIM-1, spec/invariants.md):
 *
 *  - every `reapIntervalMs` a pass examines the next `reapBatch` stored keys (wrapping around),
 *    and starts a round for each dead key past its grace that this node drives (it is the key's
 *    first replica believed up), unless `reapBatch` rounds are in flight, the key is a candidate
 *    already, or the candidates are full; then each candidate whose local object is unchanged
 *    gets its second round (one that changed, or that this node no longer drives, is dropped);
 *  - a round asks the other replicas (ReadRequest, at once), reads its own copy, sets one
 *    deadline; a deadline ends it with no verdict; answers from nodes never asked and second
 *    answers change nothing;
 *  - once every replica answered: an object not dead past its grace drops the candidate; a
 *    replica that lags is repaired (the join, never a loss: merged here, or sent after the
 *    writes) and the candidate dropped; a first round (or one whose object changed) makes the
 *    key a candidate since now; a second round that finds the candidate's object everywhere
 *    reclaims it: `Reap` to every other replica after the writes, and the key dropped here;
 *  - a replica told to reap drops the key only if it holds exactly the object named, and drops
 *    (and counts) a `Reap` stamped longer ago than the message age bound plus the clock skew.
 *
 * The calm condition (every member calm, and heard saying so late enough) is RECLAIM-1's
 * simulated and real-cluster business (properties/reclaim.test.ts, reclaim-machines.test.ts):
 * here it is switched off (`unsafeReclaim: "no-calm"`), so that second rounds reclaim at once.
 * Every step's read requests, deadlines, reaper writes and reaper messages, the candidates, the
 * rounds in flight, the pass cursor and the reclaimed count are compared exactly.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Hlc from "../impl/core/hlc.ts"
import type { NodeId } from "../impl/core/ids.ts"
import type { Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { calmAfter, updateCalm } from "../impl/core/node-reap.ts"
import { believedUp, reconcile } from "../impl/core/node-state.ts"
import * as Ring from "../impl/core/ring.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import {
  config as base,
  ids,
  type Land,
  landArb,
  landing,
  ring,
  self,
  tombstoneOf,
  heartbeat,
  stepAndApply,
} from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/**
 * The reaper's batch varies (1 to 3). The bound on candidates (8 per batch) is never reached at
 * this scale; reclaim.test.ts's runs are larger.
 */
const configOf = (batch: number): Node.Config => ({
  ...base,
  tombstoneGraceMs: 5000,
  requestTimeoutMs: 2000,
  reapIntervalMs: 1000,
  reapBatch: batch,
  maxMessageAgeMs: 5000,
  maxClockSkewMs: 500,
  unsafeReclaim: "no-calm",
})
/** An object-carrying message stamped this long ago is still taken; one ms more, it is stale. */
const BOUND = 5000 + 500
/** Keys this node replicates: some it is the first replica of, some not. */
const keys = Array.from({ length: 400 }, (_, i) => `reap${i}`)
  .filter((k) => Ring.preferenceList(ring, k, 3).includes(self))
  .slice(0, 12)
const peers = ids.filter((id) => id !== self)

const historyArb = causalHistory({
  actors: ["n1", "n2", "n3"],
  values: fc.constantFrom("a", "b"),
  maxWrites: 5,
})

type Move =
  | { _tag: "Tick"; dt: number }
  | { _tag: "Beat"; from: number }
  | {
      _tag: "Answer"
      round: number
      from: number
      source: "own" | "held" | "point"
      point: number
    }
  | { _tag: "Deadline"; round: number }
  | Land
  | { _tag: "Reap"; key: number; held: boolean; point: number; age: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 400, 1000, 1000, 3000),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Beat" as const), from: fc.nat(2) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      round: fc.nat(3),
      // Index into the round's other replicas, or past them: a stranger.
      from: fc.nat(2),
      // What this node answered itself (so that rounds agree), what the asked node would
      // hold if it were this node, or any point of the history (a lagging or newer replica).
      source: fc.constantFrom("own" as const, "own" as const, "held" as const, "point" as const),
      point: fc.nat(20),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), round: fc.nat(3) }) },
  {
    weight: 2,
    arbitrary: landArb(keys.length),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Reap" as const),
      key: fc.nat(keys.length - 1),
      held: fc.boolean(),
      point: fc.nat(20),
      // How old its stamp is: fresh, exactly at the bound (taken), or just past it (stale).
      age: fc.constantFrom(0, 0, BOUND, BOUND + 1),
    }),
  },
)

interface Round {
  rid: number
  readonly key: string
  readonly asked: ReadonlyArray<NodeId>
  readonly answers: Map<NodeId, Version.Obj>
  readonly confirm: boolean
  /** What this node answered itself. */
  readonly own: Version.Obj
}

/** Reaper commands in a step's output (the rest of the node ticks beside it). */
const reaperSends = (commands: ReadonlyArray<Command>) =>
  commands.filter(
    (c) => c._tag === "Send" && (c.message._tag === "Repair" || c.message._tag === "Reap"),
  )

test("RECLAIM-1: the reaper examines the store in paced batches, rounds ask every replica and decide only on all their answers, lagging replicas are repaired, and a key is reclaimed only on a second round that finds the first round's dead object everywhere", () => {
  const seen = {
    steps: 0,
    passes: 0,
    wraps: 0,
    rounds: 0,
    secondRounds: 0,
    roundsBusy: 0,
    notDriven: 0,
    young: 0,
    staleReaps: 0,
    decided: 0,
    notDead: 0,
    repairsLocal: 0,
    repairsSent: 0,
    candidates: 0,
    candidatesDropped: 0,
    reclaimed: 0,
    deadlines: 0,
    strangers: 0,
    reapsHeld: 0,
    reapsRefused: 0,
  }
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 3 }),
      historyArb,
      fc.array(fc.tuple(fc.nat(keys.length - 1), fc.nat(20), fc.boolean()), {
        minLength: 1,
        maxLength: 12,
      }),
      fc.array(moveArb, { minLength: 1, maxLength: 60 }),
      (batch, points, preload, moves) => {
        const config = configOf(batch)
        const state = Node.init(config, 0)
        const store = new MemoryStore()
        const objAt = (point: number) => points[point % points.length]!
        for (const [k, point, tomb] of preload) {
          const obj = tomb ? tombstoneOf(objAt(point)) : objAt(point)
          store.apply({ _tag: "Persist", key: keys[k]!, obj })
        }
        let now = 10_000
        // The model.
        let nextAt = 0
        let cursor: string | undefined
        const candidates = new Map<string, { obj: Version.Obj; since: number }>()
        const rounds: Array<Round> = []
        let reaped = 0
        let stale = 0

        const driven = (key: string): ReadonlyArray<NodeId> | undefined => {
          const replicas = Ring.preferenceList(ring, key, config.n)
          return replicas.find((m) => believedUp(state, m, now)) === self ? replicas : undefined
        }

        /** What a step must do, filled by the model before the step runs. */
        interface Want {
          reads: Array<{ to: NodeId; key: string }>
          deadlines: number
          persist: Array<Command>
          sends: Array<Command>
        }
        const open = (key: string, replicas: ReadonlyArray<NodeId>, confirm: boolean, w: Want) => {
          seen.rounds++
          if (confirm) seen.secondRounds++
          const round: Round = {
            rid: -1,
            key,
            asked: replicas,
            answers: new Map(),
            confirm,
            own: store.get(key) ?? Version.empty,
          }
          rounds.push(round)
          w.deadlines++
          for (const to of replicas) if (to !== self) w.reads.push({ to, key })
          answer(round, self, round.own, w)
        }
        const close = (round: Round) => rounds.splice(rounds.indexOf(round), 1)
        const answer = (round: Round, from: NodeId, obj: Version.Obj, w: Want) => {
          if (!round.asked.includes(from) || round.answers.has(from)) return
          round.answers.set(from, obj)
          if (round.answers.size < round.asked.length) return
          close(round)
          seen.decided++
          let merged = Version.empty
          for (const o of round.answers.values()) merged = Version.sync(merged, o)
          merged = reconcile(state, round.key, merged)
          const died = Version.deadSince(merged, now, Hlc.wallMs)
          if (died === undefined || died + config.tombstoneGraceMs > now) {
            seen.notDead++
            candidates.delete(round.key)
            return
          }
          if (![...round.answers.values()].every((o) => Version.equals(o, merged))) {
            candidates.delete(round.key)
            for (const [node, o] of round.answers) {
              if (Version.equals(o, merged)) continue
              if (node === self) {
                seen.repairsLocal++
                const local = store.get(round.key) ?? Version.empty
                const next = reconcile(state, round.key, Version.sync(local, merged))
                if (!Version.equals(next, local)) {
                  w.persist.push({ _tag: "Persist", key: round.key, obj: next })
                }
              } else {
                seen.repairsSent++
                const message: PeerMessage = {
                  _tag: "Repair",
                  key: round.key,
                  obj: merged,
                  at: now,
                }
                w.sends.push({ _tag: "Send", to: node, message })
              }
            }
            return
          }
          const c = candidates.get(round.key)
          if (!round.confirm || c === undefined || !Version.equals(c.obj, merged)) {
            seen.candidates++
            candidates.set(round.key, { obj: merged, since: now })
            return
          }
          candidates.delete(round.key)
          reaped++
          seen.reclaimed++
          for (const node of round.asked) {
            if (node === self) w.persist.push({ _tag: "Drop", key: round.key, obj: merged })
            else {
              const message: PeerMessage = { _tag: "Reap", key: round.key, obj: merged, at: now }
              w.sends.push({ _tag: "Send", to: node, message })
            }
          }
        }
        /** A move that names a round when none is open: a plain tick instead. */
        const idle = (w: Want): Event => {
          pass(w)
          return { _tag: "TickElapsed", now }
        }
        const pass = (w: Want) => {
          if (now < nextAt) return
          seen.passes++
          nextAt = now + config.reapIntervalMs
          const page = store.scan(cursor, batch)
          for (const [key, obj] of page) {
            const died = Version.deadSince(obj, now, Hlc.wallMs)
            if (died === undefined) continue
            if (died + config.tombstoneGraceMs > now) {
              seen.young++
              continue
            }
            if (rounds.length >= batch) {
              seen.roundsBusy++
              continue
            }
            if (candidates.has(key) || candidates.size >= batch * 8) continue
            const replicas = driven(key)
            if (replicas === undefined) seen.notDriven++
            else open(key, replicas, false, w)
          }
          if (page.length < batch) {
            seen.wraps++
            cursor = undefined
          } else cursor = page[page.length - 1]![0]
          for (const [key, c] of candidates) {
            if (rounds.length >= batch) break
            const local = store.get(key)
            if (local === undefined || !Version.equals(local, c.obj)) {
              seen.candidatesDropped++
              candidates.delete(key)
              continue
            }
            const replicas = driven(key)
            if (replicas === undefined) {
              seen.candidatesDropped++
              candidates.delete(key)
            } else open(key, replicas, true, w)
          }
        }

        for (const [i, m] of moves.entries()) {
          const what = `move ${i} (${m._tag})`
          const w: Want = { reads: [], deadlines: 0, persist: [], sends: [] }
          let checked = true
          let event: Event
          const pick = (n: number): Round | undefined =>
            rounds.length === 0 ? undefined : rounds[n % rounds.length]
          switch (m._tag) {
            case "Tick":
              now += m.dt
              event = { _tag: "TickElapsed", now }
              pass(w)
              break
            case "Beat":
              // Liveness decides who drives a key; a heartbeat is not a tick.
              event = heartbeat(peers[m.from]!, now)
              break
            case "Answer": {
              const round = pick(m.round)
              if (round === undefined) {
                event = idle(w)
                break
              }
              const others = round.asked.filter((n) => n !== self)
              const from =
                m.from < others.length
                  ? others[m.from]!
                  : (peers.find((p) => !round.asked.includes(p)) ?? others[0]!)
              if (!round.asked.includes(from)) seen.strangers++
              const obj =
                m.source === "own"
                  ? round.own
                  : m.source === "held"
                    ? (store.get(round.key) ?? Version.empty)
                    : objAt(m.point)
              event = {
                _tag: "MessageReceived",
                now,
                from,
                message: { _tag: "ReadResponse", rid: round.rid, obj },
              }
              answer(round, from, obj, w)
              break
            }
            case "Deadline": {
              const round = pick(m.round)
              if (round === undefined) {
                event = idle(w)
                break
              }
              seen.deadlines++
              event = { _tag: "TimerFired", now, rid: round.rid, kind: "Deadline" }
              close(round)
              break
            }
            case "Land": {
              // A write lands (its merge is KV-10's business): the reaper's view of the key moves.
              // A delete that lands now is young: past its grace only five seconds later.
              const key = keys[m.key]!
              event = landing(m, key, store.get(key) ?? Version.empty, objAt(m.point), now, now)
              checked = false
              break
            }
            case "Reap": {
              const key = keys[m.key]!
              const local = store.get(key)
              const obj = (m.held ? local : undefined) ?? objAt(m.point)
              event = {
                _tag: "MessageReceived",
                now,
                from: peers[1]!,
                message: { _tag: "Reap", key, obj, at: now - m.age },
              }
              if (m.age > BOUND) {
                seen.staleReaps++
                stale++
              } else if (local !== undefined && Version.equals(local, obj)) {
                seen.reapsHeld++
                reaped++
                w.persist.push({ _tag: "Drop", key, obj })
              } else seen.reapsRefused++
              break
            }
          }
          const ready = stepAndApply(state, event, store)
          seen.steps++
          // The rounds opened by this step, in order: learn their rids from their reads.
          const reads = ready.send.filter(
            (c) => c._tag === "Send" && c.message._tag === "ReadRequest",
          )
          assert.deepEqual(
            reads.map((c) =>
              c._tag === "Send" && c.message._tag === "ReadRequest"
                ? { to: c.to, key: c.message.key }
                : undefined,
            ),
            w.reads,
            `${what}: read requests`,
          )
          const deadlines = ready.timers.filter((t) => t.kind === "Deadline")
          assert.equal(deadlines.length, w.deadlines, `${what}: deadlines set`)
          const fresh = rounds.filter((r) => r.rid === -1)
          for (const [k, r] of fresh.entries()) {
            const d = deadlines[k]!
            assert.equal(d.at, now + config.requestTimeoutMs, `${what}: deadline`)
            r.rid = d.rid
            const asked = reads.filter(
              (c) => c._tag === "Send" && "rid" in c.message && c.message.rid === d.rid,
            )
            assert.equal(asked.length, r.asked.length - 1, `${what}: round ${d.rid}'s reads`)
          }
          if (checked) {
            assert.deepEqual(ready.persist, w.persist, `${what}: store writes`)
            assert.deepEqual(reaperSends(ready.afterPersist), w.sends, `${what}: repairs, reaps`)
          }
          assert.deepEqual(
            [...state.reap.candidates],
            [...candidates],
            `${what}: candidates (key, object, since)`,
          )
          assert.equal(state.reap.rounds, rounds.length, `${what}: rounds in flight`)
          assert.equal(state.reap.cursor, cursor, `${what}: the pass's cursor`)
          assert.equal(state.stats.reaped, reaped, `${what}: keys reclaimed`)
          assert.equal(state.stats.stale, stale, `${what}: stale messages dropped`)
        }
      },
    ),
    params(1000),
  )
  console.log(`# reaper: ${JSON.stringify(seen)}`)
  // About half the smallest of six sampled runs (`npm run floors`).
  assertFloors(seen, {
    steps: 14_000,
    passes: 2400,
    wraps: 550,
    rounds: 1300,
    secondRounds: 200,
    roundsBusy: 450,
    notDriven: 25,
    young: 300,
    decided: 550,
    notDead: 70,
    repairsLocal: 12,
    repairsSent: 200,
    candidates: 250,
    candidatesDropped: 25,
    reclaimed: 30,
    deadlines: 350,
    strangers: 1000,
    reapsHeld: 150,
    reapsRefused: 430,
    staleReaps: 180,
  })
})

test("RECLAIM-1: a second round waits until every member not removed is calm and said so at a heartbeat stamped at or after H = max(first round, latest calm) + maxMessageAge + 3·maxClockSkew, and H has passed here", () => {
  const seen = { cases: 0, allowed: 0, notCalm: 0, early: 0, unheard: 0, removedIgnored: 0 }
  const margin = 5000 + 3 * 500
  const memberArb = fc.record({
    calm: fc.option(fc.nat(20_000), { nil: undefined }),
    // When it last said so: absolute, or 1 ms before, at or after H (the boundary).
    at: fc.option(fc.oneof(fc.nat(40_000), fc.constantFrom<Edge>("h-1", "h", "h+1")), {
      nil: undefined,
    }),
    removed: fc.boolean(),
  })
  type Edge = "h-1" | "h" | "h+1"
  const resolve = (t: number | Edge, h: number): number =>
    t === "h-1" ? h - 1 : t === "h" ? h : t === "h+1" ? h + 1 : t
  fc.assert(
    fc.property(
      fc.array(memberArb, { minLength: peers.length, maxLength: peers.length }),
      fc.option(fc.nat(20_000), { nil: undefined }),
      fc.nat(20_000),
      fc.oneof(fc.nat(40_000), fc.constantFrom("h-1" as const, "h" as const, "h+1" as const)),
      (members, selfCalm, since, nowAt) => {
        const state = Node.init({ ...configOf(1), unsafeReclaim: undefined }, 0)
        const entries = state.membership.entries
        // The rule, from spec/invariants.md RECLAIM-1 (2).
        const counted = peers.filter((_, i) => !members[i]!.removed)
        const latest = Math.max(
          since,
          ...[selfCalm, ...counted.map((p) => members[peers.indexOf(p)]!.calm)].map((c) => c ?? 0),
        )
        const now = resolve(nowAt, latest + margin)
        for (const [i, peer] of peers.entries()) {
          const m = members[i]!
          const e = entries.get(peer)!
          const at = m.at === undefined ? undefined : resolve(m.at, latest + margin)
          entries.set(peer, { ...e, status: m.removed ? "removed" : e.status, calm: m.calm, at })
        }
        state.calmSince = selfCalm
        if (counted.length < peers.length) seen.removedIgnored++
        const calms = [selfCalm, ...counted.map((p) => members[peers.indexOf(p)]!.calm)]
        let want: boolean
        if (calms.some((c) => c === undefined)) {
          want = false
          seen.notCalm++
        } else {
          const h = Math.max(since, ...(calms as Array<number>)) + margin
          if (now < h) {
            want = false
            seen.early++
          } else {
            want = counted.every((p) => {
              const at = members[peers.indexOf(p)]!.at
              return at !== undefined && resolve(at, h) >= h
            })
            if (!want) seen.unheard++
          }
        }
        if (want) seen.allowed++
        seen.cases++
        assert.equal(calmAfter(state, now, since), want)
      },
    ),
    params(2000),
  )
  console.log(`# calm: ${JSON.stringify(seen)}`)
  assertFloors(seen, { allowed: 20, notCalm: 200, early: 100, unheard: 100, removedIgnored: 200 })
})

test("RECLAIM-1: a node is calm from the first tick at which it holds no hint and has nothing to hand over, and says so in its gossip", () => {
  const seen = { ticks: 0, busy: 0, calm: 0, stayedCalm: 0 }
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          // Each cause of being busy in one tick of four, so that calm runs of ticks happen.
          hint: fc.constantFrom(false, false, false, true),
          push: fc.constantFrom(false, false, false, true),
          strays: fc.constantFrom(0, 0, 0, 1, 2),
          unsettled: fc.constantFrom(false, false, false, true),
          dt: fc.nat(3000),
        }),
        { minLength: 1, maxLength: 20 },
      ),
      (ticks) => {
        const state = Node.init(configOf(1), 0)
        const store = new MemoryStore()
        let now = 10_000
        let calmSince: number | undefined
        const key = keys[0]!
        for (const t of ticks) {
          now += t.dt
          if (t.hint)
            store.apply({ _tag: "PersistHint", owner: peers[0]!, key, obj: Version.empty })
          else if (store.hint(peers[0]!, key) !== undefined) {
            store.apply({ _tag: "DropHint", owner: peers[0]!, key, obj: Version.empty })
          }
          const r = state.rebalance
          r.pushes.clear()
          if (t.push) r.pushes.set(key, { to: peers[0]!, obj: Version.empty, at: now } as never)
          r.strays = t.strays
          r.settled = t.unsettled ? "elsewhere" : state.ringSignature
          const busy = t.hint || t.push || t.strays > 0 || t.unsettled
          if (busy) calmSince = undefined
          else if (calmSince === undefined) calmSince = now
          else seen.stayedCalm++
          updateCalm(state, now, store)
          seen.ticks++
          if (busy) seen.busy++
          else seen.calm++
          assert.equal(state.calmSince, calmSince, "calm since")
          assert.equal(state.membership.calmSince, calmSince, "gossiped calm since")
        }
      },
    ),
    params(300),
  )
  assertFloors(seen, { busy: 1000, calm: 350, stayedCalm: 90 })
})
