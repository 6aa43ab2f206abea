/**
 * SCAN (SCAN-1): one page of a cluster-wide key listing, merged from every member's next keys.
 *
 * Owns: the Scan requests in `state.pending`. Must not: read more than `scanExamineMax` objects
 * in one step.
 */
import { BadRequest, ScanIncomplete, ScanMembersDown } from "./failure.ts"
import type { Out } from "./ready.ts"
import * as Version from "./version.ts"
import * as Glob from "./glob.ts"
import { SCAN_COUNT_MAX, type PeerMessage, type ScanOp, type StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  believedUp,
  fail,
  respond,
  type Origin,
  type ScanPending,
  type State,
} from "./node-state.ts"
import { scanMembers } from "./node-placement.ts"

/** A SCAN page's deadline, in request timeouts. */
export const SCAN_DEADLINE_REQUESTS = 3

/**
 * This node's answer to a page request: its next live keys after `after` matching `match`, up
 * to `count`, examining at most `examineMax` objects. `upTo` is the last key examined (the
 * node has nothing else up to it) or null when its store is exhausted.
 */
export const scanLocal = (
  examineMax: number,
  store: StoreView,
  op: {
    readonly after?: string | undefined
    readonly count: number
    readonly match?: string | undefined
  },
  now: number,
): { keys: Array<string>; upTo: string | null } => {
  const keys: Array<string> = []
  let cursor = op.after
  let examined = 0
  for (;;) {
    const batch = store.scan(cursor, Math.min(256, examineMax - examined))
    for (const [key, obj] of batch) {
      examined++
      cursor = key
      if (Version.readAt(obj, now) === undefined) continue
      if (op.match !== undefined && !Glob.matches(op.match, key)) continue
      keys.push(key)
      if (keys.length >= op.count) return { keys, upTo: key }
    }
    if (batch.length === 0) return { keys, upTo: null }
    if (examined >= examineMax) return { keys, upTo: cursor ?? null }
  }
}

/**
 * A page of a cluster-wide SCAN: every member (joining and leaving ones included) lists its
 * next live keys after the cursor; the page is the first `count` keys of the union that every
 * answer covers. Keys come in byte order and the cursor is the last key returned, so a key
 * present for the whole scan is returned exactly once, whatever joins, leaves or handoffs move
 * it between nodes. Members believed down are not waited for while fewer than N are down:
 * every key keeps a replica among the others.
 */
export const startScan = (
  state: State,
  now: number,
  origin: Origin,
  op: ScanOp,
  store: StoreView,
  out: Out,
): void => {
  const members = scanMembers(state)
  if (members === undefined) {
    const detail = "SCAN needs ring routing (Chord nodes keep no member list)"
    return fail(state, origin, new BadRequest({ detail }), out)
  }
  const count = Math.max(1, Math.min(op.count, SCAN_COUNT_MAX))
  const down = members.filter((m) => m !== state.config.self && !believedUp(state, m, now))
  if (down.length >= state.config.n) {
    return fail(state, origin, new ScanMembersDown({ down, n: state.config.n }), out)
  }
  const rid = state.nextRid++
  const asked = members.filter((m) => !down.includes(m))
  const p: ScanPending = { _tag: "Scan", origin, count, asked, answers: new Map() }
  state.pending.set(rid, p)
  // A page waits for every member asked, so its latency is the slowest member's (a quorum
  // read waits for the fastest R): it gets a longer deadline. It stores nothing, so the
  // message-age bound (RECLAIM-1) does not concern it.
  const deadline = now + SCAN_DEADLINE_REQUESTS * state.config.requestTimeoutMs
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: deadline })
  const request = { after: op.after, count, match: op.match }
  for (const m of asked) {
    if (m === state.config.self) continue
    const message: PeerMessage = {
      _tag: "ScanRequest",
      rid,
      count,
      ...(op.after === undefined ? {} : { after: op.after }),
      ...(op.match === undefined ? {} : { match: op.match }),
    }
    out.sendNow({ _tag: "Send", to: m, message })
  }
  const local = scanLocal(state.config.scanExamineMax, store, request, now)
  onScanResponse(state, rid, state.config.self, local, out)
}

export const onScanResponse = (
  state: State,
  rid: number,
  from: NodeId,
  answer: { readonly keys: ReadonlyArray<string>; readonly upTo: string | null },
  out: Out,
): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Scan" || !p.asked.includes(from) || p.answers.has(from)) return
  p.answers.set(from, answer)
  if (p.answers.size < p.asked.length) return
  state.pending.delete(rid)
  // Every answer covers the keys up to its `upTo`: the page may only hold keys up to the
  // smallest of them (null: that member has nothing more at all).
  let frontier: string | null = null
  for (const a of p.answers.values()) {
    if (a.upTo !== null && (frontier === null || a.upTo < frontier)) frontier = a.upTo
  }
  const union = new Set<string>()
  for (const a of p.answers.values()) {
    for (const k of a.keys) if (frontier === null || k <= frontier) union.add(k)
  }
  const keys = [...union].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).slice(0, p.count)
  const next = keys.length >= p.count ? keys[keys.length - 1]! : frontier
  respond(state, p.origin, { _tag: "ScanOk", keys, next }, out)
}

/**
 * A peer's page request. A node that is not serving yet has nothing to list: what it holds, its
 * replicas hold too (a SCAN tolerates N-1 members with nothing to say, as it tolerates N-1 down).
 */
export const onScanRequest = (
  state: State,
  now: number,
  from: NodeId,
  request: Extract<PeerMessage, { _tag: "ScanRequest" }>,
  serving: boolean,
  store: StoreView,
  out: Out,
): void => {
  const answer = serving
    ? scanLocal(state.config.scanExamineMax, store, request, now)
    : { keys: [], upTo: null }
  const reply: PeerMessage = { _tag: "ScanResponse", rid: request.rid, ...answer }
  out.sendAfterPersist({ _tag: "Send", to: from, message: reply })
}

/** A page whose deadline passed before every member asked answered fails. */
export const onScanDeadline = (state: State, rid: number, p: ScanPending, out: Out): void => {
  state.pending.delete(rid)
  const silent = p.asked.filter((m) => !p.answers.has(m))
  const failure = { answered: p.answers.size, asked: p.asked.length, silent }
  fail(state, p.origin, new ScanIncomplete(failure), out)
}
