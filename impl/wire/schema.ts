/**
 * Schemas of everything a node sends to a peer: versioned objects, clocks, client operations and
 * results, membership gossip (impl/core/membership.ts), the peer messages of the storage machine
 * (impl/core/messages.ts) and the `Hello` handshake that opens every peer connection.
 *
 * The core types are plain TypeScript; these schemas must describe exactly them. The `_check*`
 * constants below fail to compile if a schema's Type drifts from its core type (Schema is
 * invariant in its Type), and `_encoded*` if a schema grows a transformation: the transport
 * relies on Encoded = Type to send a message with a bare `JSON.stringify`.
 *
 * Decoding is synchronous (`decodeUnknownEither`) and total: bad bytes, bad JSON and bad shapes
 * all come back as a `WireError` value, never as a throw. Frames (length prefixes) are
 * impl/wire/frame.ts's business; this module sees one frame's payload.
 *
 * Deliberately not here: range checks that need configuration (R <= N is the machine's
 * validation; the frame size limit is the transport's).
 */
import { Data, Either, Schema } from "effect"
import type { NodeId as NodeIdType } from "../core/ids.ts"
import type * as Chord from "../core/chord.ts"
import type * as Membership from "../core/membership.ts"
import {
  type ClientResult,
  type GetOp,
  type PeerMessage,
  type PutOp,
  SCAN_COUNT_MAX,
} from "../core/messages.ts"
import type { Clock, Entry, Obj, Sibling } from "../core/version.ts"
import { RequestErrorSchema } from "../core/failure.ts"

// ---------------------------------------------------------------------------------------------
// Identifiers and numbers

export const NodeId = Schema.String.pipe(Schema.minLength(1), Schema.brand("NodeId"))

/** Request ids, counters: non-negative integers that fit a double exactly. */
const Count = Schema.NonNegativeInt
/** A node's clock reading in ms (a simulated clock may start below zero when skewed). */
const Time = Schema.Number.pipe(Schema.finite())
/** Hybrid logical timestamps (impl/core/hlc.ts): non-negative integers. */
const Timestamp = Schema.NonNegativeInt

// ---------------------------------------------------------------------------------------------
// Versions (impl/core/version.ts)

/** A counter's decimal: an integer of any size, or a finite double as JavaScript prints it. */
const Decimal = Schema.String.pipe(Schema.pattern(/^-?(\d+(\.\d+)?)(e[+-]?\d+)?$/))
const CounterEntries = Schema.Array(Schema.Tuple(Schema.String, Decimal))

export const CounterSchema = Schema.Struct({
  base: Decimal,
  baseTs: Timestamp,
  p: CounterEntries,
  n: CounterEntries,
  float: Schema.Boolean,
})

export const SiblingSchema = Schema.Struct({
  value: Schema.NullOr(Schema.String),
  ts: Timestamp,
  exp: Schema.optional(Schema.NonNegativeInt),
  counter: Schema.optional(CounterSchema),
})

export const EntrySchema = Schema.Struct({
  actor: Schema.String,
  counter: Count,
  values: Schema.Array(SiblingSchema),
})

export const ObjSchema = Schema.Struct({ entries: Schema.Array(EntrySchema) })

export const ClockSchema = Schema.Array(Schema.Tuple(Schema.String, Count))

// ---------------------------------------------------------------------------------------------
// Client operations and results (impl/core/messages.ts)

export const GetOpSchema = Schema.Struct({
  _tag: Schema.Literal("Get"),
  key: Schema.String,
  r: Schema.optional(Schema.Int),
})

export const PutOpSchema = Schema.Struct({
  _tag: Schema.Literal("Put"),
  key: Schema.String,
  value: Schema.NullOr(Schema.String),
  context: Schema.NullOr(ClockSchema),
  w: Schema.optional(Schema.Int),
  exp: Schema.optional(Schema.NonNegativeInt),
  keep: Schema.optional(Schema.Literal("ttl", "value")),
  cond: Schema.optional(Schema.Literal("nx", "xx", "context")),
  incr: Schema.optional(Schema.Struct({ by: Decimal, float: Schema.Boolean })),
  append: Schema.optional(Schema.Boolean),
})

const PreviousSchema = Schema.Struct({
  value: Schema.String,
  exp: Schema.optional(Schema.NonNegativeInt),
})

export const ClientResultSchema = Schema.Union(
  Schema.Struct({ _tag: Schema.Literal("Done"), message: Schema.String }),
  Schema.Struct({ _tag: Schema.Literal("GetOk"), obj: ObjSchema }),
  Schema.Struct({
    _tag: Schema.Literal("PutOk"),
    context: ClockSchema,
    dot: Schema.Tuple(Schema.String, Count),
    existed: Schema.Boolean,
    previous: Schema.optional(PreviousSchema),
    total: Schema.optional(Schema.String),
  }),
  Schema.Struct({ _tag: Schema.Literal("PutSkipped"), previous: Schema.optional(PreviousSchema) }),
  Schema.Struct({
    _tag: Schema.Literal("ScanOk"),
    keys: Schema.Array(Schema.String),
    next: Schema.NullOr(Schema.String),
  }),
  // A failure decodes into its class (impl/core/failure.ts); it encodes as its fields and tag,
  // which is also what JSON.stringify writes of it.
  Schema.Struct({ _tag: Schema.Literal("Failed"), error: RequestErrorSchema }),
)

// ---------------------------------------------------------------------------------------------
// Membership gossip (impl/core/membership.ts)

export const MemberEntrySchema = Schema.Struct({
  id: NodeId,
  peerAddress: Schema.String,
  clientAddress: Schema.String,
  weight: Schema.Number.pipe(Schema.finite(), Schema.positive()),
  status: Schema.Literal("joining", "up", "leaving", "removed"),
  generation: Count,
  version: Count,
  heartbeat: Count,
  calm: Schema.optional(Time),
  at: Schema.optional(Time),
})

export const DigestSchema = Schema.Struct({
  id: NodeId,
  removed: Schema.Boolean,
  generation: Count,
  version: Count,
  heartbeat: Count,
})

export const GossipMessageSchema = Schema.Union(
  Schema.Struct({
    _tag: Schema.Literal("GossipDigest"),
    address: Schema.String,
    digests: Schema.Array(DigestSchema),
  }),
  Schema.Struct({
    _tag: Schema.Literal("GossipReply"),
    entries: Schema.Array(MemberEntrySchema),
    requests: Schema.Array(NodeId),
  }),
  Schema.Struct({ _tag: Schema.Literal("GossipAck"), entries: Schema.Array(MemberEntrySchema) }),
)

// ---------------------------------------------------------------------------------------------
// Anti-entropy (impl/core/anti-entropy.ts, impl/core/merkle.ts)

const Position = Schema.Number.pipe(Schema.int(), Schema.between(0, 2 ** 52 - 1))
const RangeSchema = Schema.Struct({ start: Position, end: Position })
const ShapeSchema = Schema.Struct({
  fanout: Schema.Number.pipe(Schema.int(), Schema.between(2, 256)),
  depth: Schema.Number.pipe(Schema.int(), Schema.between(0, 20)),
})
const Word = Schema.Number.pipe(Schema.int(), Schema.between(0, 2 ** 32 - 1))
const DigestSchema32 = Schema.Tuple(Word, Word)

export const AntiEntropyMessageSchema = Schema.Union(
  Schema.Struct({
    _tag: Schema.Literal("TreeLevelRequest"),
    rid: Count,
    range: RangeSchema,
    shape: ShapeSchema,
    level: Count,
    indices: Schema.Array(Count),
  }),
  Schema.Struct({
    _tag: Schema.Literal("TreeLevelResponse"),
    rid: Count,
    level: Count,
    indices: Schema.Array(Count),
    hashes: Schema.Array(DigestSchema32),
  }),
  Schema.Struct({
    _tag: Schema.Literal("KeysRequest"),
    rid: Count,
    range: RangeSchema,
    shape: ShapeSchema,
    buckets: Schema.Array(Count),
    digests: Schema.Array(Schema.Tuple(Schema.String, DigestSchema32)),
    limit: Count,
  }),
  Schema.Struct({
    _tag: Schema.Literal("KeysResponse"),
    rid: Count,
    entries: Schema.Array(Schema.Struct({ key: Schema.String, obj: Schema.NullOr(ObjSchema) })),
  }),
  Schema.Struct({
    _tag: Schema.Literal("KeysPush"),
    rid: Count,
    range: RangeSchema,
    entries: Schema.Array(Schema.Struct({ key: Schema.String, obj: ObjSchema })),
  }),
  Schema.Struct({
    _tag: Schema.Literal("ExchangeRefused"),
    rid: Count,
    reason: Schema.Literal("NoTree", "BadRequest", "Busy"),
    detail: Schema.String,
  }),
)

// ---------------------------------------------------------------------------------------------
// Chord routing (impl/core/chord.ts)

export const ChordPeerSchema = Schema.Struct({
  id: NodeId,
  pos: Position,
  address: Schema.optional(Schema.String),
  client: Schema.optional(Schema.String),
})
const Peers = Schema.Array(ChordPeerSchema)

export const ChordMessageSchema = Schema.Union(
  Schema.Struct({ _tag: Schema.Literal("FindSuccessor"), rid: Count, target: Position }),
  Schema.Struct({ _tag: Schema.Literal("FoundSuccessor"), rid: Count, successors: Peers }),
  Schema.Struct({
    _tag: Schema.Literal("NextHops"),
    rid: Count,
    candidates: Peers,
    successors: Peers,
  }),
  Schema.Struct({ _tag: Schema.Literal("GetPredecessor"), rid: Count }),
  Schema.Struct({
    _tag: Schema.Literal("PredecessorIs"),
    rid: Count,
    predecessor: Schema.NullOr(ChordPeerSchema),
    successors: Peers,
  }),
  Schema.Struct({ _tag: Schema.Literal("Notify"), peer: ChordPeerSchema }),
  Schema.Struct({ _tag: Schema.Literal("Ping"), rid: Count }),
  Schema.Struct({ _tag: Schema.Literal("Pong"), rid: Count }),
  Schema.Struct({ _tag: Schema.Literal("GetFingers"), rid: Count }),
  Schema.Struct({
    _tag: Schema.Literal("FingersAre"),
    rid: Count,
    fingers: Schema.Array(Schema.NullOr(ChordPeerSchema)),
  }),
  Schema.Struct({
    _tag: Schema.Literal("Leaving"),
    predecessor: Schema.NullOr(ChordPeerSchema),
    successors: Peers,
  }),
)

// ---------------------------------------------------------------------------------------------
// Peer messages

const Rid = Count

export const PeerMessageSchema = Schema.Union(
  Schema.Struct({ _tag: Schema.Literal("Heartbeat") }),
  Schema.Struct({ _tag: Schema.Literal("ReadRequest"), rid: Rid, key: Schema.String }),
  Schema.Struct({ _tag: Schema.Literal("ReadResponse"), rid: Rid, obj: ObjSchema }),
  Schema.Struct({
    _tag: Schema.Literal("WriteRequest"),
    rid: Rid,
    key: Schema.String,
    obj: ObjSchema,
    at: Schema.optional(Time),
  }),
  Schema.Struct({ _tag: Schema.Literal("WriteAck"), rid: Rid }),
  Schema.Struct({
    _tag: Schema.Literal("HintedWrite"),
    rid: Rid,
    key: Schema.String,
    obj: ObjSchema,
    owner: NodeId,
    at: Schema.optional(Time),
  }),
  Schema.Struct({
    _tag: Schema.Literal("Handoff"),
    key: Schema.String,
    obj: ObjSchema,
    at: Schema.optional(Time),
  }),
  Schema.Struct({ _tag: Schema.Literal("HandoffAck"), key: Schema.String, obj: ObjSchema }),
  Schema.Struct({ _tag: Schema.Literal("Gossip"), message: GossipMessageSchema }),
  Schema.Struct({
    _tag: Schema.Literal("AntiEntropy"),
    message: AntiEntropyMessageSchema,
    at: Schema.optional(Time),
  }),
  Schema.Struct({
    _tag: Schema.Literal("StreamPush"),
    key: Schema.String,
    obj: ObjSchema,
    at: Schema.optional(Time),
  }),
  Schema.Struct({ _tag: Schema.Literal("StreamAck"), key: Schema.String }),
  Schema.Struct({ _tag: Schema.Literal("StreamDone"), signature: Schema.String }),
  Schema.Struct({
    _tag: Schema.Literal("Repair"),
    key: Schema.String,
    obj: ObjSchema,
    at: Schema.optional(Time),
  }),
  Schema.Struct({ _tag: Schema.Literal("Purge"), key: Schema.String, obj: ObjSchema }),
  Schema.Struct({ _tag: Schema.Literal("Reap"), key: Schema.String, obj: ObjSchema, at: Time }),
  Schema.Struct({ _tag: Schema.Literal("Chord"), message: ChordMessageSchema }),
  Schema.Struct({
    _tag: Schema.Literal("CoordinateRequest"),
    rid: Rid,
    op: PutOpSchema,
    replicas: Schema.optional(Peers),
  }),
  Schema.Struct({
    _tag: Schema.Literal("CoordinateResponse"),
    rid: Rid,
    result: ClientResultSchema,
  }),
  Schema.Struct({ _tag: Schema.Literal("CoordinateClaim"), rid: Rid, put: Rid }),
  Schema.Struct({ _tag: Schema.Literal("CoordinateGrant"), rid: Rid, granted: Schema.Boolean }),
  Schema.Struct({
    _tag: Schema.Literal("ScanRequest"),
    rid: Rid,
    after: Schema.optional(Schema.String),
    count: Schema.Int.pipe(Schema.between(1, SCAN_COUNT_MAX)),
    match: Schema.optional(Schema.String),
  }),
  Schema.Struct({
    _tag: Schema.Literal("ScanResponse"),
    rid: Rid,
    keys: Schema.Array(Schema.String).pipe(Schema.maxItems(SCAN_COUNT_MAX)),
    upTo: Schema.NullOr(Schema.String),
  }),
)

/**
 * The first frame on every peer connection: who is calling, for which cluster, and where the
 * caller listens (so that a node can answer a peer it never heard of, as Chord routing needs).
 */
export interface Hello {
  readonly _tag: "Hello"
  readonly from: NodeIdType
  readonly cluster: string
  readonly address?: string | undefined
}

export const HelloSchema = Schema.Struct({
  _tag: Schema.Literal("Hello"),
  from: NodeId,
  cluster: Schema.String,
  address: Schema.optional(Schema.String),
})

// ---------------------------------------------------------------------------------------------
// Compile-time checks: each schema's Type (and Encoded) is exactly the core type.

/**
 * True when every value of type A is already a valid encoded value B: the schema has no
 * transformation, only refinements (brands), so `JSON.stringify` of a Type value is its encoding.
 */
type EncodesAsItself<A, B> = [A] extends [B] ? true : false

const _checkSibling: Schema.Schema<Sibling, Sibling> = SiblingSchema
const _checkEntry: Schema.Schema<Entry, Entry> = EntrySchema
const _checkObj: Schema.Schema<Obj, Obj> = ObjSchema
const _checkClock: Schema.Schema<Clock, Clock> = ClockSchema
const _checkGetOp: Schema.Schema<GetOp, GetOp> = GetOpSchema
const _checkPutOp: Schema.Schema<PutOp, PutOp> = PutOpSchema
// A failure's Type is its class, its Encoded the class's fields and tag: every instance is one.
const _checkClientResult: Schema.Schema<ClientResult, any> = ClientResultSchema
const _encodedClientResult: EncodesAsItself<
  ClientResult,
  Schema.Schema.Encoded<typeof ClientResultSchema>
> = true
// NodeId is a brand, a refinement without a transformation: its Encoded is the plain string.
const _checkMemberEntry: Schema.Schema<Membership.Entry, any> = MemberEntrySchema
const _checkGossip: Schema.Schema<Membership.Message, any> = GossipMessageSchema
const _checkPeerMessage: Schema.Schema<PeerMessage, any> = PeerMessageSchema
const _checkHello: Schema.Schema<Hello, any> = HelloSchema
const _checkChord: Schema.Schema<Chord.ChordMessage, any> = ChordMessageSchema
const _encodedPeerMessage: EncodesAsItself<
  PeerMessage,
  Schema.Schema.Encoded<typeof PeerMessageSchema>
> = true
const _encodedHello: EncodesAsItself<Hello, Schema.Schema.Encoded<typeof HelloSchema>> = true

export type Checks = [
  typeof _checkSibling,
  typeof _checkEntry,
  typeof _checkObj,
  typeof _checkClock,
  typeof _checkGetOp,
  typeof _checkPutOp,
  typeof _checkClientResult,
  typeof _encodedClientResult,
  typeof _checkMemberEntry,
  typeof _checkGossip,
  typeof _checkPeerMessage,
  typeof _checkHello,
  typeof _checkChord,
  typeof _encodedPeerMessage,
  typeof _encodedHello,
]

// ---------------------------------------------------------------------------------------------
// Codecs for one frame's payload

/** A payload that could not be decoded. `reason` is one line, fit for a log. */
export class WireError extends Data.TaggedError("WireError")<{ readonly reason: string }> {}

const MAX_REASON_CHARS = 300

const jsonOf = (payload: Uint8Array | string): Either.Either<unknown, WireError> => {
  let text: string
  try {
    text =
      typeof payload === "string"
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8")
    return Either.right(JSON.parse(text) as unknown)
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e)
    return Either.left(
      new WireError({ reason: `malformed JSON: ${detail.slice(0, MAX_REASON_CHARS)}` }),
    )
  }
}

const decoderOf = <A, I>(schema: Schema.Schema<A, I, never>, what: string) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return (payload: Uint8Array | string): Either.Either<A, WireError> =>
    Either.flatMap(jsonOf(payload), (json) =>
      Either.mapLeft(decode(json), (e) => {
        const detail = e.message.replace(/\s+/g, " ").slice(0, MAX_REASON_CHARS)
        return new WireError({ reason: `not a ${what}: ${detail}` })
      }),
    )
}

/** Decode a frame payload (UTF-8 JSON) into a peer message. Never throws. */
export const decodePeerMessage: (
  payload: Uint8Array | string,
) => Either.Either<PeerMessage, WireError> = decoderOf(PeerMessageSchema, "peer message")

/** Decode a frame payload into the Hello handshake. Never throws. */
export const decodeHello: (payload: Uint8Array | string) => Either.Either<Hello, WireError> =
  decoderOf(HelloSchema, "Hello")

/**
 * Encode a peer message (or Hello) to its JSON payload. Encoded = Type for every schema here
 * (checked above), so JSON.stringify is the encoder; properties/wire-schema.test.ts checks it
 * against `Schema.encodeSync`.
 */
export const encodeJson = (message: PeerMessage | Hello): string => JSON.stringify(message)

/** The payload as the bytes of a frame. */
export const encodePayload = (message: PeerMessage | Hello): Buffer =>
  Buffer.from(encodeJson(message), "utf8")
