/**
 * The configuration of one real node, as an Effect service (`NodeConfig`) with a `layer`.
 *
 * `make` validates a partial configuration and fills in defaults; every error names the field
 * and the bad value, so the CLI can print it as it is. The storage machine's own knobs (n, r,
 * w, timeouts) keep the machine's defaults (impl/core/node.ts `defaults`) unless overridden.
 *
 * Deliberately not here: parsing flags (impl/cli/args.ts), membership changes (the member list
 * is static until a membership machine exists).
 */
import { Context, Data, Either, Layer } from "effect"
import { position } from "../core/hash.ts"
import { NodeId } from "../core/ids.ts"
import * as Node from "../core/node.ts"

export interface Address {
  readonly host: string
  readonly port: number
}

export interface MemberAddress {
  readonly id: NodeId
  /** Relative capacity on the ring (tokens); 1 unless given. */
  readonly weight: number
  /** Where peers connect to this member. */
  readonly peerAddress: Address
}

export type StoreKind = "lmdb" | "memory"

export interface Config {
  readonly id: NodeId
  /** Peers refuse connections whose Hello names another cluster. */
  readonly cluster: string
  /** RESP (Redis protocol) listener for clients. */
  readonly client: Address
  /** Listener for peer connections. */
  readonly peer: Address
  /** The peer address other nodes should use for this node (informational until gossip). */
  readonly advertise: Address
  /**
   * The members this node boots with (seeds and initial ring), this node included unless it is
   * `joining`. Membership then changes by gossip (impl/core/membership.ts).
   */
  readonly members: ReadonlyArray<MemberAddress>
  /** Start as a joining member: announce itself, stream data in, then become up. */
  readonly joining: boolean
  readonly n: number
  readonly r: number
  readonly w: number
  readonly tokensPerNode: number
  readonly requestTimeoutMs: number
  readonly forwardTimeoutMs: number
  readonly heartbeatMs: number
  readonly maxPending: number
  /** Conflict policy per key prefix (impl/core/node.ts); empty: siblings everywhere. */
  readonly namespaces: ReadonlyArray<Node.Namespace>
  /** "ap": sloppy quorum and hinted handoff; "cp": strict quorums, minority refuses writes. */
  readonly mode: "ap" | "cp"
  /**
   * "ring": one-hop routing on gossiped membership; `members` is the boot membership.
   * "chord": Chord routing (impl/core/node.ts); `members` are only seeds to join through, and
   * the first of them creates the ring on its first start.
   */
  readonly routing: Node.Routing
  /** Key of the MAC on causal context tokens; every node of a cluster must share it. */
  readonly secret: string
  /** A dead key is reclaimed on every replica no sooner than this after it died (RECLAIM-1). */
  readonly tombstoneGraceMs: number
  /** Object-carrying peer messages older than this are dropped (RECLAIM-1). */
  readonly maxMessageAgeMs: number
  /** Assumed bound on the clock difference between two nodes. */
  readonly maxClockSkewMs: number
  /** Budgets of background work: keys streamed, hints handed off, keys anti-entropy moves, per s. */
  readonly streamKeysPerSec: number
  readonly handoffHintsPerSec: number
  readonly aeKeysPerSec: number
  /** Largest value a client may SET; larger ones get a clear error. */
  readonly maxValueBytes: number
  /** Largest peer frame accepted or sent; derived from maxValueBytes unless given. */
  readonly maxFrameBytes: number
  readonly store: StoreKind
  /** Directory of the lmdb store (unused by the memory store). */
  readonly dataDir: string
  /** TickElapsed period. */
  readonly tickMs: number
  /** Messages queued per peer before the oldest is dropped. */
  readonly sendQueueMax: number
  /** A peer unreachable this long gets its queue dropped (and new messages dropped) until back. */
  readonly dropAfterDisconnectedMs: number
  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
}

export const KiB = 1024
export const MiB = 1024 * KiB
export const maxValueBytesMin = 512 * KiB
export const maxValueBytesMax = 8 * MiB

export const defaults = {
  cluster: "dht",
  host: "127.0.0.1",
  clientPortBase: 7001,
  peerPortBase: 8001,
  maxValueBytes: 1 * MiB,
  store: "lmdb" as StoreKind,
  tickMs: 100,
  sendQueueMax: 65_536,
  reconnectMinMs: 50,
  reconnectMaxMs: 2000,
  dropAfterDisconnectedMs: 2000,
} as const

/**
 * A frame carries at most a few objects of one key; each sibling's value is JSON-escaped (a byte
 * can take up to 6 characters), so leave room for a handful of maximal siblings.
 */
export const frameBytesFor = (maxValueBytes: number): number => 8 * maxValueBytes + 1 * MiB

export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly message: string }> {}

export type Input = Partial<Omit<Config, "id" | "members">> & {
  readonly id: string
  readonly members: ReadonlyArray<{
    readonly id: string
    readonly weight?: number
    readonly peerAddress: Address
  }>
}

const isPort = (p: number): boolean => Number.isInteger(p) && p >= 0 && p <= 65535

/** Validate and complete a configuration. */
export const make = (input: Input): Either.Either<Config, ConfigError> => {
  const fail = (message: string) => Either.left(new ConfigError({ message }))
  if (input.id.length === 0) return fail("node id must not be empty")
  const ids = new Set<string>()
  for (const m of input.members) {
    if (m.id.length === 0) return fail("member ids must not be empty")
    if (ids.has(m.id)) return fail(`member ${m.id} is listed twice`)
    ids.add(m.id)
    if (!isPort(m.peerAddress.port)) return fail(`member ${m.id}: bad port ${m.peerAddress.port}`)
    if (m.weight !== undefined && !(m.weight > 0)) {
      return fail(`member ${m.id}: weight must be positive, got ${m.weight}`)
    }
  }
  const joining = input.joining ?? false
  const routing = input.routing ?? Node.defaults.routing
  const chord = routing === "chord"
  const self = input.members.find((m) => m.id === input.id)
  if (chord && joining) {
    return fail("--join is for ring routing; under Chord routing every node joins through --peers")
  }
  if (chord && input.mode === "cp") {
    return fail("--mode cp needs ring routing: Chord routing keeps no membership to count")
  }
  if (self === undefined && !joining && !chord) {
    return fail(
      `this node (${input.id}) is not in the member list (${[...ids].join(", ")}); ` +
        "list it, or start it as a joining node",
    )
  }
  if (self !== undefined && joining) {
    return fail(`a joining node (${input.id}) must not be in the member list it joins`)
  }
  if (input.members.length === 0) return fail("the member list is empty: name at least one seed")
  const n = input.n ?? Node.defaults.n
  const r = input.r ?? Math.min(Node.defaults.r, n)
  const w = input.w ?? Math.min(Node.defaults.w, n)
  if (!Number.isInteger(n) || n < 1) return fail(`n must be a positive integer, got ${n}`)
  const memberCount = input.members.length + (joining ? 1 : 0)
  // Under Chord routing the members are only seeds: the ring may be larger.
  if (n > memberCount && !chord) {
    return fail(`n=${n} exceeds the number of members (${memberCount})`)
  }
  for (const [name, q] of [
    ["r", r],
    ["w", w],
  ] as const) {
    if (!Number.isInteger(q) || q < 1 || q > n) {
      return fail(`${name} must be an integer from 1 to n=${n}, got ${q}`)
    }
  }
  const maxValueBytes = input.maxValueBytes ?? defaults.maxValueBytes
  if (
    !Number.isInteger(maxValueBytes) ||
    maxValueBytes < maxValueBytesMin ||
    maxValueBytes > maxValueBytesMax
  ) {
    return fail(
      `max value size must be from ${maxValueBytesMin} to ${maxValueBytesMax} bytes, got ${maxValueBytes}`,
    )
  }
  const host = defaults.host
  const client = input.client ?? { host, port: defaults.clientPortBase }
  const peer = input.peer ?? { host, port: self?.peerAddress.port ?? defaults.peerPortBase }
  for (const [name, a] of [
    ["client", client],
    ["peer", peer],
  ] as const) {
    if (!isPort(a.port)) return fail(`${name} port must be from 0 to 65535, got ${a.port}`)
  }
  const store = input.store ?? defaults.store
  if (store === "lmdb" && (input.dataDir === undefined || input.dataDir.length === 0)) {
    return fail("the lmdb store needs a data directory (--data-dir)")
  }
  const positive: ReadonlyArray<readonly [string, number | undefined]> = [
    ["requestTimeoutMs", input.requestTimeoutMs],
    ["forwardTimeoutMs", input.forwardTimeoutMs],
    ["heartbeatMs", input.heartbeatMs],
    ["tickMs", input.tickMs],
    ["sendQueueMax", input.sendQueueMax],
    ["maxPending", input.maxPending],
    ["tokensPerNode", input.tokensPerNode],
  ]
  for (const [name, v] of positive) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) {
      return fail(`${name} must be positive, got ${v}`)
    }
  }
  const requestTimeoutMs = input.requestTimeoutMs ?? Node.defaults.requestTimeoutMs
  const maxMessageAgeMs = input.maxMessageAgeMs ?? Node.defaults.maxMessageAgeMs
  if (!(maxMessageAgeMs > requestTimeoutMs)) {
    return fail(
      `maxMessageAgeMs (${maxMessageAgeMs}) must exceed requestTimeoutMs (${requestTimeoutMs}): ` +
        "no request may outlive the age at which its messages are dropped",
    )
  }
  if (input.maxClockSkewMs !== undefined && !(input.maxClockSkewMs >= 0)) {
    return fail(`maxClockSkewMs must be 0 or more, got ${input.maxClockSkewMs}`)
  }
  return Either.right({
    id: NodeId(input.id),
    cluster: input.cluster ?? defaults.cluster,
    client,
    peer,
    advertise: input.advertise ?? self?.peerAddress ?? peer,
    joining,
    members: input.members.map((m) => ({
      id: NodeId(m.id),
      weight: m.weight ?? 1,
      peerAddress: m.peerAddress,
    })),
    n,
    r,
    w,
    tokensPerNode: input.tokensPerNode ?? Node.defaults.tokensPerNode,
    requestTimeoutMs: input.requestTimeoutMs ?? Node.defaults.requestTimeoutMs,
    forwardTimeoutMs: input.forwardTimeoutMs ?? Node.defaults.forwardTimeoutMs,
    heartbeatMs: input.heartbeatMs ?? Node.defaults.heartbeatMs,
    maxPending: input.maxPending ?? Node.defaults.maxPending,
    namespaces: input.namespaces ?? Node.defaults.namespaces,
    mode: input.mode ?? Node.defaults.mode,
    routing,
    // A default derived from the cluster name keeps tokens valid across nodes without setup;
    // set --secret in production so that clients cannot mint contexts.
    secret: input.secret ?? `dht-context:${input.cluster ?? defaults.cluster}`,
    tombstoneGraceMs: input.tombstoneGraceMs ?? Node.defaults.tombstoneGraceMs,
    maxMessageAgeMs,
    maxClockSkewMs: input.maxClockSkewMs ?? Node.defaults.maxClockSkewMs,
    streamKeysPerSec:
      input.streamKeysPerSec ?? (Node.defaults.streamBatch * 1000) / Node.defaults.streamIntervalMs,
    handoffHintsPerSec:
      input.handoffHintsPerSec ??
      (Node.defaults.handoffBatch * 1000) / Node.defaults.handoffIntervalMs,
    aeKeysPerSec: input.aeKeysPerSec ?? Node.defaults.aeRatePerSec,
    maxValueBytes,
    maxFrameBytes: input.maxFrameBytes ?? frameBytesFor(maxValueBytes),
    store,
    dataDir: input.dataDir ?? "",
    tickMs: input.tickMs ?? defaults.tickMs,
    sendQueueMax: input.sendQueueMax ?? defaults.sendQueueMax,
    dropAfterDisconnectedMs: input.dropAfterDisconnectedMs ?? defaults.dropAfterDisconnectedMs,
    reconnectMinMs: input.reconnectMinMs ?? defaults.reconnectMinMs,
    reconnectMaxMs: input.reconnectMaxMs ?? defaults.reconnectMaxMs,
  })
}

/**
 * The storage machine's configuration (impl/core/node.ts) of this node. `generation`: this
 * process's incarnation, strictly larger on every restart (the store keeps the counter).
 */
export const machineConfig = (config: Config, generation: number): Node.Config => ({
  // The machine's defaults first, so that knobs without a flag keep their documented values.
  ...Node.defaults,
  self: config.id,
  members: config.members.map((m) => ({ id: m.id, weight: m.weight })),
  joining: config.joining,
  generation,
  peerAddress: showAddress(config.advertise),
  clientAddress: showAddress({ host: config.advertise.host, port: config.client.port }),
  addresses: new Map(config.members.map((m) => [m.id, showAddress(m.peerAddress)])),
  tokensPerNode: config.tokensPerNode,
  n: config.n,
  r: config.r,
  w: config.w,
  requestTimeoutMs: config.requestTimeoutMs,
  forwardTimeoutMs: config.forwardTimeoutMs,
  heartbeatMs: config.heartbeatMs,
  maxPending: config.maxPending,
  namespaces: config.namespaces,
  mode: config.mode,
  tombstoneGraceMs: config.tombstoneGraceMs,
  maxMessageAgeMs: config.maxMessageAgeMs,
  maxClockSkewMs: config.maxClockSkewMs,
  // Budgets: a batch per interval, so that a join or a heal never floods a node.
  streamBatch: Math.max(
    1,
    Math.round((config.streamKeysPerSec * Node.defaults.streamIntervalMs) / 1000),
  ),
  handoffBatch: Math.max(
    1,
    Math.round((config.handoffHintsPerSec * Node.defaults.handoffIntervalMs) / 1000),
  ),
  aeRatePerSec: Math.max(1, config.aeKeysPerSec),
  aeMaxKeys: Math.max(1, Math.min(Node.defaults.aeMaxKeys, config.aeKeysPerSec)),
  ...(config.routing === "chord" ? chordMachineConfig(config) : {}),
})

/** Chord routing: the members become seeds, with their addresses (Chord peers carry them). */
const chordMachineConfig = (config: Config) => ({
  routing: "chord" as const,
  members: [],
  addresses: new Map<NodeId, string>(),
  chordSeeds: config.members.map((m) => ({
    id: m.id,
    pos: position(m.id),
    address: showAddress(m.peerAddress),
  })),
})

/** "host:port" (IPv6 hosts in brackets) → address; undefined if malformed. */
export const parseAddress = (text: string): Address | undefined => {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  return isPort(port) && port > 0 ? { host: m[1] ?? m[2]!, port } : undefined
}

export const showAddress = (a: Address): string =>
  a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`

/** The configuration of this node, as a service. */
export class NodeConfig extends Context.Tag("dht/NodeConfig")<NodeConfig, Config>() {}

export const layer = (config: Config): Layer.Layer<NodeConfig> => Layer.succeed(NodeConfig, config)
