/**
 * DHT.STATUS: the one schema of the report a node serves (impl/core/node.ts `statusReport`,
 * plus the driver's key and hint counts) and that `dht status`, `dht ring` and `dht verify`
 * decode. A compile-time check below fails the build when the node's report no longer fits it.
 */
import { Either, ParseResult, Schema } from "effect"
import type * as Node from "../core/node.ts"

const Member = Schema.Struct({
  id: Schema.String,
  status: Schema.String,
  reachable: Schema.Boolean,
  peerAddress: Schema.String,
  clientAddress: Schema.String,
  weight: Schema.Number,
  tokens: Schema.Number,
  owned: Schema.Number,
  replicated: Schema.Number,
})

const Streaming = Schema.Struct({
  pass: Schema.Number,
  settled: Schema.Boolean,
  pending: Schema.Number,
  scanning: Schema.Boolean,
  streamed: Schema.Number,
  dropped: Schema.Number,
})

/** A node's Chord routing state (routing "chord"). */
const ChordView = Schema.Struct({
  status: Schema.String,
  position: Schema.Number,
  predecessor: Schema.NullOr(Schema.String),
  successors: Schema.Array(Schema.String),
  next: Schema.NullOr(Schema.String),
  distinctFingers: Schema.Number,
  tablePeers: Schema.Number,
  lookups: Schema.Number,
  lookupFailures: Schema.Number,
  meanHops: Schema.Number,
  maxHops: Schema.Number,
})

/**
 * Reclamation of dead keys (impl/core/node.ts `reclaimReport`): keys reclaimed here, the
 * reaper's last complete pass over the local store (keys seen, of which dead: tombstones and
 * expired values not yet reclaimed; null before the first pass), candidates awaiting their
 * second round, and whether this node is calm (no hint, nothing to hand over).
 */
const Reclaim = Schema.Struct({
  reaped: Schema.Number,
  lastPass: Schema.NullOr(
    Schema.Struct({ keys: Schema.Number, dead: Schema.Number, at: Schema.Number }),
  ),
  candidates: Schema.Number,
  calm: Schema.Boolean,
})

const Report = Schema.Struct({
  self: Schema.String,
  mode: Schema.optionalWith(Schema.String, { default: () => "ap" }),
  routing: Schema.optionalWith(Schema.String, { default: () => "ring" }),
  chord: Schema.optional(Schema.NullOr(ChordView)),
  n: Schema.Number,
  r: Schema.Number,
  w: Schema.Number,
  keys: Schema.Number,
  hints: Schema.Number,
  members: Schema.Array(Member),
  streaming: Streaming,
  /** Absent from nodes older than reclamation. */
  reclaim: Schema.optional(Reclaim),
  stats: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), {
    default: () => ({}),
  }),
})

export type MemberStatus = typeof Member.Type
export type StreamingStatus = typeof Streaming.Type
export type ReclaimStatus = typeof Reclaim.Type
export type StatusReport = typeof Report.Type
export type ChordStatus = typeof ChordView.Type

const decodeReport = Schema.decodeUnknownEither(Schema.parseJson(Report))

/** Decode the DHT.STATUS reply, or say what is wrong with it. */
export const parseStatus = (reply: unknown): Either.Either<StatusReport, string> => {
  const text = Buffer.isBuffer(reply) ? reply.toString("utf8") : reply
  if (typeof text !== "string") return Either.left("DHT.STATUS did not return a string")
  return Either.mapLeft(
    decodeReport(text),
    (e) => `DHT.STATUS returned unexpected JSON: ${ParseResult.TreeFormatter.formatErrorSync(e)}`,
  )
}

/** What a node serves (impl/node/driver.ts `status`). */
type Served = ReturnType<typeof Node.statusReport> & { keys: number; hints: number }
/** The node's report must encode as this schema's input: both sides change together. */
const _served: (report: Served) => typeof Report.Encoded = (report) => report
void _served
/** `reclaim` is optional only for older nodes: this version's node must serve it. */
const _reclaim: (report: Served["reclaim"]) => typeof Reclaim.Encoded = (report) => report
void _reclaim

/**
 * Tombstones among a node's `keys` stored objects, estimated from the reaper's last complete
 * pass: the pass's dead fraction applied to the objects stored now. (The raw `dead` count of a
 * pass that took several seconds also counts keys written and reclaimed during it, and can
 * exceed what is stored.) Undefined before the first pass.
 */
export const tombstoneEstimate = (
  keys: number,
  lastPass: { readonly keys: number; readonly dead: number } | null | undefined,
): number | undefined => {
  if (lastPass === null || lastPass === undefined) return undefined
  if (lastPass.keys === 0) return 0
  return Math.min(keys, Math.round((keys * lastPass.dead) / lastPass.keys))
}
