/**
 * SCAN on one node (impl/core/node-scan.ts), stepped directly through `Node.step` against a
 * small model (SCAN-1):
 *
 *  - a page asks every member believed up (all of them but this node by ScanRequest, at once)
 *    and fails at once when N or more are believed down; its deadline is three request
 *    timeouts;
 *  - this node's own answer, and its answer to a peer's request, is its next live keys after
 *    the cursor matching the pattern, up to the count, examining at most `scanExamineMax`
 *    objects; `upTo` is the last key examined, or null when the store is exhausted;
 *  - an answer counts once, only from a member asked, only while the page is open; the page is
 *    the first `count` keys of the union of the answers up to the smallest `upTo`, and its
 *    cursor the last key returned when the page is full, else that smallest `upTo`;
 *  - the deadline fails a page with who answered and who stayed silent.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { ScanIncomplete, ScanMembersDown } from "../impl/core/failure.ts"
import * as Glob from "../impl/core/glob.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { scanMembers } from "../impl/core/node-placement.ts"
import { believedUp } from "../impl/core/node-state.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import {
  config as base,
  ids,
  self,
  tombstoneOf,
  heartbeat,
  stepAndApply,
} from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/** A small examination bound, so that pages stop at it as often as at their count. */
const config: Node.Config = { ...base, scanExamineMax: 4, requestTimeoutMs: 2000 }
const keys = Array.from({ length: 10 }, (_, i) => `k${i % 2 === 0 ? "a" : "b"}${i}`).sort()
const peers = ids.filter((id) => id !== self)
const stranger = NodeId("n9")
const patterns = [undefined, "ka*", "*[13579]", "k?5", "zz*"]

type Move =
  | { _tag: "Start"; count: number; after: number | null; match: number }
  | {
      _tag: "Answer"
      request: number
      from: number
      picks: ReadonlyArray<number>
      upTo: number | null
      twice: boolean
    }
  | { _tag: "Deadline"; request: number }
  | { _tag: "Request"; from: number; count: number; after: number | null; match: number }
  | { _tag: "Write"; key: number; dead: boolean }
  | { _tag: "Beat"; from: number }
  | { _tag: "Tick"; dt: number }

const afterArb = fc.option(fc.nat(keys.length - 1), { nil: null })
const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Start" as const),
      count: fc.integer({ min: 1, max: 5 }),
      after: afterArb,
      match: fc.nat(patterns.length - 1),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      request: fc.nat(3),
      // Index into the page's other members asked (modulo), or -1: a stranger.
      from: fc.oneof(fc.constant(-1), fc.nat(2), fc.nat(2), fc.nat(2)),
      picks: fc.uniqueArray(fc.nat(keys.length - 1), { maxLength: 4 }),
      upTo: fc.option(fc.nat(keys.length - 1), { nil: null }),
      twice: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), request: fc.nat(3) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Request" as const),
      from: fc.nat(peers.length - 1),
      count: fc.integer({ min: 1, max: 5 }),
      after: afterArb,
      match: fc.nat(patterns.length - 1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Write" as const),
      key: fc.nat(keys.length - 1),
      dead: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("Beat" as const), from: fc.nat(peers.length - 1) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 100, 1500, 6000),
    }),
  },
)

interface Page {
  readonly rid: number
  readonly client: number
  readonly count: number
  readonly asked: ReadonlyArray<NodeId>
  readonly answers: Map<NodeId, { keys: ReadonlyArray<string>; upTo: string | null }>
  done: boolean
}

test("SCAN-1: a node's SCAN page asks every member believed up, answers with its next live matching keys within the examination bound, counts each member asked once, merges the answers up to the smallest frontier, and fails at its deadline naming the silent", () => {
  const seen = {
    pages: 0,
    refusedDown: 0,
    answers: 0,
    strangers: 0,
    duplicates: 0,
    afterDone: 0,
    completed: 0,
    fullPages: 0,
    frontierCut: 0,
    exhausted: 0,
    deadlines: 0,
    requests: 0,
    boundReached: 0,
    countReached: 0,
    storeExhausted: 0,
  }
  const property = fc.property(
    fc.uniqueArray(fc.nat(keys.length - 1), { maxLength: keys.length }),
    fc.array(moveArb, { minLength: 1, maxLength: 40 }),
    (preload, moves) => {
      const state = Node.init(config, 0)
      const store = new MemoryStore()
      const live: Version.Obj = Version.update(Version.empty, [], { value: "v", ts: 1024 }, "n1")
      for (const k of preload) store.apply({ _tag: "Persist", key: keys[k]!, obj: live })
      let now = 10_000
      let client = 0
      let failures = 0
      const pages: Array<Page> = []

      /** The reference of a node's answer: its next live matching keys, examining at most max. */
      const local = (after: string | undefined, count: number, match: string | undefined) => {
        const found: Array<string> = []
        let examined = 0
        let last = after
        for (const [key, obj] of store.scan(undefined, Number.MAX_SAFE_INTEGER)) {
          if (after !== undefined && key <= after) continue
          if (examined === config.scanExamineMax) {
            seen.boundReached++
            return { keys: found, upTo: last ?? null }
          }
          examined++
          last = key
          if (Version.readAt(obj, now) === undefined) continue
          if (match !== undefined && !Glob.matches(match, key)) continue
          found.push(key)
          if (found.length >= count) {
            seen.countReached++
            return { keys: found, upTo: key }
          }
        }
        if (examined === config.scanExamineMax) {
          seen.boundReached++
          return { keys: found, upTo: last ?? null }
        }
        seen.storeExhausted++
        return { keys: found, upTo: null }
      }

      const reply = (p: Page, result: ClientResult, after: Array<Command>) => {
        if (result._tag === "Failed") failures++
        after.push({ _tag: "Reply", client: p.client, result })
      }

      /** A member's answer to an open page: complete it once every member asked answered. */
      const answer = (
        p: Page,
        from: NodeId,
        a: { keys: ReadonlyArray<string>; upTo: string | null },
        after: Array<Command>,
      ) => {
        if (p.done || !p.asked.includes(from) || p.answers.has(from)) return
        p.answers.set(from, a)
        if (p.answers.size < p.asked.length) return
        p.done = true
        seen.completed++
        const uptos = [...p.answers.values()].map((x) => x.upTo).filter((u) => u !== null)
        const frontier = uptos.length === 0 ? null : uptos.sort()[0]!
        const all = new Set([...p.answers.values()].flatMap((x) => x.keys))
        const union = [...all].filter((k) => frontier === null || k <= frontier)
        if (union.length < all.size) seen.frontierCut++
        const page = union.sort().slice(0, p.count)
        const full = page.length >= p.count
        if (full) seen.fullPages++
        else if (frontier === null) seen.exhausted++
        reply(
          p,
          { _tag: "ScanOk", keys: page, next: full ? page[page.length - 1]! : frontier },
          after,
        )
      }

      for (const [i, m] of moves.entries()) {
        const what = `move ${i} (${m._tag})`
        const send: Array<Command> = []
        const after: Array<Command> = []
        const timers: Array<Command> = []
        let checked = true
        let event: Event
        const pick = (n: number): Page | undefined =>
          pages.length === 0 ? undefined : pages[pages.length - 1 - (n % pages.length)]
        const idle = (): Event => {
          checked = false
          return { _tag: "TickElapsed", now }
        }
        switch (m._tag) {
          case "Start": {
            client++
            const after_ = m.after === null ? undefined : keys[m.after]!
            const match = patterns[m.match]
            event = {
              _tag: "ClientRequested",
              now,
              client,
              op: {
                _tag: "Scan",
                count: m.count,
                ...(after_ === undefined ? {} : { after: after_ }),
                ...(match === undefined ? {} : { match }),
              },
            }
            const members = scanMembers(state)!
            const down = members.filter((x) => x !== self && !believedUp(state, x, now))
            if (down.length >= config.n) {
              seen.refusedDown++
              failures++
              after.push({
                _tag: "Reply",
                client,
                result: { _tag: "Failed", error: new ScanMembersDown({ down, n: config.n }) },
              })
              break
            }
            seen.pages++
            const p: Page = {
              rid: state.nextRid,
              client,
              count: m.count,
              asked: members.filter((x) => !down.includes(x)),
              answers: new Map(),
              done: false,
            }
            timers.push({
              _tag: "SetTimer",
              rid: p.rid,
              kind: "Deadline",
              at: now + 3 * config.requestTimeoutMs,
            })
            for (const to of p.asked) {
              if (to === self) continue
              const message: PeerMessage = {
                _tag: "ScanRequest",
                rid: p.rid,
                count: m.count,
                ...(after_ === undefined ? {} : { after: after_ }),
                ...(match === undefined ? {} : { match }),
              }
              send.push({ _tag: "Send", to, message })
            }
            answer(p, self, local(after_, m.count, match), after)
            pages.push(p)
            break
          }
          case "Answer": {
            const p = pick(m.request)
            if (p === undefined) {
              event = idle()
              break
            }
            const others = p.asked.filter((x) => x !== self)
            const from =
              m.from >= 0 && others.length > 0 ? others[m.from % others.length]! : stranger
            const a = {
              keys: [...new Set(m.picks.map((k) => keys[k]!))].sort(),
              upTo: m.upTo === null ? null : keys[m.upTo]!,
            }
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: { _tag: "ScanResponse", rid: p.rid, ...a },
            }
            seen.answers++
            if (!p.asked.includes(from)) seen.strangers++
            else if (p.answers.has(from)) seen.duplicates++
            if (p.done) seen.afterDone++
            answer(p, from, a, after)
            break
          }
          case "Deadline": {
            const p = pick(m.request)
            if (p === undefined) {
              event = idle()
              break
            }
            event = { _tag: "TimerFired", now, rid: p.rid, kind: "Deadline" }
            if (p.done) {
              seen.afterDone++
              break
            }
            seen.deadlines++
            p.done = true
            const silent = p.asked.filter((x) => !p.answers.has(x))
            const error = new ScanIncomplete({
              answered: p.answers.size,
              asked: p.asked.length,
              silent,
            })
            reply(p, { _tag: "Failed", error }, after)
            break
          }
          case "Request": {
            const from = peers[m.from]!
            const after_ = m.after === null ? undefined : keys[m.after]!
            const match = patterns[m.match]
            const rid = 5000 + i
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: {
                _tag: "ScanRequest",
                rid,
                count: m.count,
                ...(after_ === undefined ? {} : { after: after_ }),
                ...(match === undefined ? {} : { match }),
              },
            }
            seen.requests++
            const message: PeerMessage = {
              _tag: "ScanResponse",
              rid,
              ...local(after_, m.count, match),
            }
            after.push({ _tag: "Send", to: from, message })
            break
          }
          case "Write": {
            // A key comes to life or dies (a tombstone long past: live for no one).
            const key = keys[m.key]!
            const held = store.get(key) ?? Version.empty
            const obj = m.dead
              ? tombstoneOf(held, 1)
              : Version.update(held, Version.context(held), { value: "w", ts: 2048 }, "n2")
            event = {
              _tag: "MessageReceived",
              now,
              from: peers[0]!,
              message: { _tag: "Repair", key, obj, at: now },
            }
            checked = false
            break
          }
          case "Beat":
            event = heartbeat(peers[m.from]!, now)
            checked = false
            break
          case "Tick":
            now += m.dt
            event = idle()
            break
        }
        const ready = stepAndApply(state, event, store)
        if (checked) {
          assert.deepEqual(ready.send, send, `${what}: sent at once`)
          assert.deepEqual(ready.afterPersist, after, `${what}: released after the writes`)
          assert.deepEqual(
            ready.timers.filter((t) => t.kind === "Deadline"),
            timers,
            `${what}: deadlines`,
          )
          if (m._tag === "Answer" && m.twice) {
            // The same answer again: never counted twice.
            const again = stepAndApply(state, event, store)
            assert.deepEqual(again.afterPersist, [], `${what}, again: released after the writes`)
            if (!pick(m.request)!.done) seen.duplicates++
          }
        }
        for (const p of pages) {
          assert.equal(state.pending.has(p.rid), !p.done, `${what}: page ${p.rid} open`)
        }
        if (checked) assert.equal(state.stats.failures, failures, `${what}: failures counted`)
        else failures = state.stats.failures
      }
    },
  )
  fc.assert(property, params(1000))
  console.log(`# SCAN path: ${JSON.stringify(seen)}`)
  // About half the smallest of three runs' draws (docs/verification.md, "Floor margins").
  assertFloors(seen, {
    pages: 700,
    refusedDown: 450,
    answers: 1350,
    strangers: 340,
    duplicates: 450,
    afterDone: 650,
    completed: 240,
    fullPages: 75,
    frontierCut: 150,
    exhausted: 10,
    deadlines: 120,
    requests: 1200,
    boundReached: 480,
    countReached: 320,
    storeExhausted: 1050,
  })
})
