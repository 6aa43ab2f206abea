/**
 * The GET coordinator as a machine of its own, one per request (Riak's get FSM): ask the key's
 * replicas, answer at R with the merge of what came back, keep listening until all N answered or
 * the deadline, then read-repair the replicas that answered with less, or purge a tombstone that
 * every replica holds and that is past its grace (KV-7).
 *
 *   step(request, input, view) → { outputs, done }
 *
 * `input` is one replica's answer or the deadline; `view` is what the request reads of its node
 * (the time, the key's policy, the grace period), read-only. The outputs say what the node is to
 * do: reply, repair a replica (possibly itself), purge. node-get.ts applies them: it owns the
 * node's state, its store and its messages; this machine owns only its request.
 *
 * Owns: a `GetRequest` (changed in place, like every machine here). Must not: touch the node's
 * state or store, mint events (only a write's coordinator does), or repair a sloppy substitute
 * (it holds hints, not the key).
 */
import type { ClientResult } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import { quorumNotMet } from "./failure.ts"
import * as Hlc from "./hlc.ts"
import * as Quorum from "./quorum.ts"
import * as Version from "./version.ts"

export interface GetRequest {
  readonly key: string
  tally: Quorum.Tally
  readonly responses: Map<NodeId, Version.Obj>
  replied: boolean
  /** Sloppy substitutes asked: they answer from their hints and are never read-repaired. */
  readonly substitutes: ReadonlySet<NodeId>
  /** When the read began (its read repairs carry it as their age, RECLAIM-1). */
  readonly since: number
}

export type GetInput =
  /** A replica's answer (this node's own read included). */
  | { readonly _tag: "Read"; readonly from: NodeId; readonly obj: Version.Obj }
  | { readonly _tag: "Deadline" }

export interface GetView {
  readonly now: number
  /** The request's timeout, for the failure's facts. */
  readonly timeoutMs: number
  readonly tombstoneGraceMs: number
  /** The key's policy applied to an object (last-write-wins keeps the latest sibling). */
  readonly reconcile: (obj: Version.Obj) => Version.Obj
}

export type GetOutput =
  /** Answer the client: the merged object at R, or a failure. */
  | { readonly _tag: "Reply"; readonly result: ClientResult }
  /** `node` answered with less than the merge: bring it up to `obj` (stamped `at`). */
  | {
      readonly _tag: "Repair"
      readonly node: NodeId
      readonly obj: Version.Obj
      readonly at: number
    }
  /** Every replica holds the tombstone `obj`, past its grace: they may drop its value. */
  | { readonly _tag: "Purge"; readonly nodes: ReadonlyArray<NodeId>; readonly obj: Version.Obj }

export interface GetResult {
  readonly outputs: ReadonlyArray<GetOutput>
  /** The request is over: the node forgets it. */
  readonly done: boolean
}

export const make = (
  key: string,
  asked: ReadonlyArray<NodeId>,
  need: number,
  substitutes: ReadonlySet<NodeId>,
  since: number,
): GetRequest => ({
  key,
  tally: Quorum.make(need, asked),
  responses: new Map(),
  replied: false,
  substitutes,
  since,
})

const waiting: GetResult = { outputs: [], done: false }

export const step = (p: GetRequest, input: GetInput, view: GetView): GetResult => {
  switch (input._tag) {
    case "Read":
      return onRead(p, input.from, input.obj, view)
    case "Deadline": {
      const outputs: Array<GetOutput> = []
      // A read that has not met R by now fails; the answers in still repair who answered.
      if (!p.replied) {
        p.replied = true
        outputs.push(failed(p, view))
      }
      return finish(p, view, outputs)
    }
    default:
      return input satisfies never
  }
}

/** One replica's answer: reply at R, repair once all N answered. */
const onRead = (p: GetRequest, from: NodeId, obj: Version.Obj, view: GetView): GetResult => {
  if (p.responses.has(from) || !p.tally.asked.includes(from)) return waiting
  p.responses.set(from, obj)
  p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
  const outputs: Array<GetOutput> = []
  if (!p.replied && Quorum.enough(p.tally)) {
    p.replied = true
    outputs.push({ _tag: "Reply", result: { _tag: "GetOk", obj: merged(p, view) } })
  }
  if (!Quorum.complete(p.tally)) return outputs.length === 0 ? waiting : { outputs, done: false }
  if (!p.replied) {
    // Everyone answered, yet too few answers count (empty substitutes): fail now, not later.
    p.replied = true
    outputs.push(failed(p, view))
  }
  return finish(p, view, outputs)
}

/** A substitute that holds nothing for the key knows nothing about it: not a quorum member. */
export const counts = (substitutes: ReadonlySet<NodeId>, from: NodeId, obj: Version.Obj): boolean =>
  !substitutes.has(from) || obj.entries.length > 0

const failed = (p: GetRequest, view: GetView): GetOutput => ({
  _tag: "Reply",
  result: { _tag: "Failed", error: quorumNotMet("R", p.tally, view.timeoutMs) },
})

export const merged = (p: GetRequest, view: GetView): Version.Obj => {
  let all = Version.empty
  for (const obj of p.responses.values()) all = Version.sync(all, obj)
  return view.reconcile(all)
}

/**
 * Read repair: every replica that answered with less than the merged object gets it. When every
 * replica answered with the same tombstone older than the grace period, purge it instead (KV-7).
 */
const finish = (p: GetRequest, view: GetView, outputs: Array<GetOutput>): GetResult => {
  const all = merged(p, view)
  if (Quorum.complete(p.tally) && purgeable(p, all, view)) {
    outputs.push({ _tag: "Purge", nodes: [...p.responses.keys()], obj: all })
    return { outputs, done: true }
  }
  for (const [node, obj] of p.responses) {
    if (Version.equals(obj, all) || p.substitutes.has(node)) continue
    // Stamped with the read's start: the answers it merged were held no earlier (RECLAIM-1).
    outputs.push({ _tag: "Repair", node, obj: all, at: p.since })
  }
  return { outputs, done: true }
}

/**
 * A tombstone every replica holds identically and that is older than the grace period. The
 * purge drops its value and keeps its version vector (node-replica.ts `purged`), so that a stale
 * copy arriving later is still dominated (no zombie, CAUSAL-3).
 */
const purgeable = (p: GetRequest, all: Version.Obj, view: GetView): boolean => {
  // An expired value is a tombstone from its expiry on (EXP-3): purged by the same rule.
  if (!Version.isDeletedAt(all, view.now) || p.substitutes.size > 0) return false
  for (const obj of p.responses.values()) if (!Version.equals(obj, all)) return false
  const died = Math.max(...Version.siblings(all).map((d) => Version.diedAt(d.sibling, Hlc.wallMs)))
  return died + view.tombstoneGraceMs <= view.now
}
